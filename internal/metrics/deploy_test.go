package metrics_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lullhq/lull/internal/metrics"
	"github.com/lullhq/lull/internal/store"
)

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/lull.json"
)

// exported is every series name the api and the worker serve, gathered
// from their real registries (the worker's with state reads that
// succeed, so its scrape-time gauges are there): a family's name, and for
// a histogram or summary the names of its series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	api := metrics.NewAPI(metrics.APIOptions{BrokerReady: func() bool { return true }})
	worker := metrics.NewWorker(metrics.WorkerOptions{
		Sinks:       []string{"http"},
		State:       func(context.Context) (store.State, error) { return store.State{}, nil },
		QueueDepth:  func(context.Context) (int, error) { return 0, nil },
		BrokerReady: func() bool { return true },
	})
	names := map[string]bool{}
	for _, fams := range []map[string]*dto.MetricFamily{gather(t, api.Gatherer()), gather(t, worker.Gatherer())} {
		for name, f := range fams {
			names[name] = true
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
			case dto.MetricType_SUMMARY:
				names[name+"_sum"], names[name+"_count"] = true, true
			}
		}
	}
	return names
}

var promql = parser.NewParser(parser.Options{})

// metricNames is every metric name expr selects, read by the PromQL parser.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	node, err := promql.ParseExpr(expr)
	require.NoError(t, err, "expression %q", expr)
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		require.NotEmpty(t, name, "%q selects no metric by name", expr)
		names = append(names, name)
		return nil
	})
	require.NotEmpty(t, names, "%q names no metric", expr)
	return names
}

func requireExported(t *testing.T, known map[string]bool, where, expr string) []string {
	t.Helper()
	names := metricNames(t, expr)
	for _, name := range names {
		require.True(t, known[name], "%s: %q names %s, which neither the api nor the worker exports", where, expr, name)
	}
	return names
}

// TestAlerts_NameOnlyExportedMetrics: alerts.yml is a valid rule file (the
// rule parser of Prometheus validates it, templates included), and every
// expression in it names only metrics lull exports.
func TestAlerts_NameOnlyExportedMetrics(t *testing.T) {
	known := exported(t)
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	require.Empty(t, errs)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "only alerting rules")
			require.NotEmpty(t, r.Annotations["summary"], "%s has a summary", r.Alert)
			requireExported(t, known, r.Alert, r.Expr)
			alerts = append(alerts, r.Alert)
		}
	}
	// What the issue asks for: stuck buffers, dead letters growing,
	// delivery failure rate, broker unreachable.
	for _, want := range []string{"LullStuckBuffers", "LullDeadLettersGrowing", "LullDeliveryFailureRate", "LullBrokerUnreachable"} {
		require.Contains(t, alerts, want)
	}
}

// grafanaVars are Grafana's interval variables, which PromQL does not know.
var grafanaVars = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)

// dashboard is what the test reads of a Grafana dashboard.
type dashboard struct {
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestDashboard_NamesOnlyExportedMetrics: every query of lull.json parses
// as PromQL (Grafana's interval variables aside) and names only exported
// metrics, and the dashboard shows what the issue asks for.
func TestDashboard_NamesOnlyExportedMetrics(t *testing.T) {
	known := exported(t)
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, target := range p.Targets {
				expr := grafanaVars.ReplaceAllString(target.Expr, "5m")
				for _, name := range requireExported(t, known, "panel "+p.Title, expr) {
					used[name] = true
				}
			}
		}
	}
	walk(d.Panels)
	// Rates, lateness quantiles, buffering conversations, deliveries by result.
	for _, want := range []string{
		"lull_webhook_requests_total", "lull_messages_accepted_total", "lull_flush_lateness_seconds_bucket",
		"lull_conversations_buffering", "lull_deliveries_total", "lull_due_overdue_seconds",
	} {
		require.True(t, used[want], "the dashboard shows %s", want)
	}
	var lull []string
	for name := range used {
		if len(name) > 5 && name[:5] == "lull_" {
			lull = append(lull, name)
		}
	}
	sort.Strings(lull)
	require.True(t, slices.IsSorted(lull))
	t.Logf("the dashboard uses %d lull series: %v", len(lull), lull)
}

// TestDeploy_ComposeAndPrometheusAgree: the compose profile's Prometheus
// scrapes the ports compose gives METRICS_ADDR, loads the alerts, and
// Grafana's provisioning finds the dashboard where compose mounts it.
func TestDeploy_ComposeAndPrometheusAgree(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Profiles    []string          `yaml:"profiles"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
	}
	readYAML(t, "../../docker-compose.yml", &compose)
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
			DNSSDConfigs  []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "../../deploy/prometheus/prometheus.yml", &prom)

	require.Equal(t, ":9090", compose.Services["api"].Environment["METRICS_ADDR"])
	require.Equal(t, ":9091", compose.Services["worker"].Environment["METRICS_ADDR"])
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		require.True(t, len(sc.JobName) > 5 && sc.JobName[:5] == "lull-", "the dashboard filters jobs by lull-.*: %s", sc.JobName)
		for _, s := range sc.StaticConfigs {
			targets = append(targets, s.Targets...)
		}
		for _, s := range sc.DNSSDConfigs {
			for _, n := range s.Names {
				targets = append(targets, n+":"+strconv.Itoa(s.Port))
			}
		}
	}
	require.ElementsMatch(t, []string{"api:9090", "worker:9091"}, targets)
	require.Equal(t, []string{"/etc/prometheus/alerts.yml"}, prom.RuleFiles)

	for _, name := range []string{"prometheus", "grafana"} {
		require.Equal(t, []string{"observability"}, compose.Services[name].Profiles, name)
	}
	require.Contains(t, compose.Services["prometheus"].Volumes, "./deploy/prometheus:/etc/prometheus:ro")
	require.Contains(t, compose.Services["grafana"].Volumes, "./deploy/grafana/lull.json:/etc/grafana/dashboards/lull.json:ro")
	var provider struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "../../deploy/grafana/provisioning/dashboards/lull.yml", &provider)
	require.Len(t, provider.Providers, 1)
	require.Equal(t, "/etc/grafana/dashboards", provider.Providers[0].Options.Path)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, v), path)
}
