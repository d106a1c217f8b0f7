package config_test

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
)

// readmeDefaults reads the README's "Configuration" tables: every variable
// they list, with its default cell ("" for a table without a default
// column). A row may list several variables; `_SUFFIX` continues the name
// before it ("`IMMEDIATE_FLUSH_GENERIC`, `_WHATSAPP`").
func readmeDefaults(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	require.NoError(t, err)
	defer f.Close()

	code := regexp.MustCompile("`([^`]*)`")
	out := map[string]string{}
	inSection, defaultCol := false, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inSection = line == "## Configuration"
			continue
		}
		if !inSection || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cells[0] == "variable": // a table's header
			defaultCol = -1
			for i, c := range cells {
				if c == "default" {
					defaultCol = i
				}
			}
			continue
		case strings.HasPrefix(cells[0], "---"):
			continue
		}
		def := ""
		if defaultCol >= 0 {
			def = cells[defaultCol]
			if m := code.FindStringSubmatch(def); m != nil && m[0] == def {
				def = m[1]
			}
		}
		first := ""
		for _, m := range code.FindAllStringSubmatch(cells[0], -1) {
			name := m[1]
			if i := strings.LastIndex(first, "_"); strings.HasPrefix(name, "_") && i > 0 {
				name = first[:i] + name
			} else {
				first = name
			}
			out[name] = def
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out, "no configuration table found in the README")
	return out
}

// envFields maps every environment variable of Config to its field.
func envFields(c *config.Config) map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	out := map[string]reflect.Value{}
	for i := range v.NumField() {
		if name := v.Type().Field(i).Tag.Get("env"); name != "" {
			out[name] = v.Field(i)
		}
	}
	return out
}

// perProcess is a README default that differs between the processes.
var perProcess = regexp.MustCompile("^`([^`]*)` \\(api\\), `([^`]*)` \\(worker\\)$")

// perProcessDefaults reads the variables whose default depends on the process.
var perProcessDefaults = map[string]func(config.Config, config.Process) string{
	"METRICS_ADDR": config.Config.MetricsListenAddr,
}

// TestDefaults_MatchTheREADME: the README documents every variable, and
// the default it shows is Defaults' (or Load's, for the defaults derived
// from other variables, or each process's, for those that differ).
func TestDefaults_MatchTheREADME(t *testing.T) {
	documented := readmeDefaults(t)
	loaded := load(t)
	defaults := config.Defaults()
	fields, loadedFields := envFields(&defaults), envFields(&loaded)

	for name := range fields {
		_, ok := documented[name]
		require.True(t, ok, "%s is not in the README's Configuration tables", name)
	}
	for name, doc := range documented {
		f, ok := fields[name]
		require.True(t, ok, "the README documents %s, which Config does not read", name)
		switch {
		case doc == "" || doc == "—":
			require.True(t, f.IsZero(), "%s: the README shows no default, Defaults has %v", name, f.Interface())
		case perProcess.MatchString(doc):
			m := perProcess.FindStringSubmatch(doc)
			read, ok := perProcessDefaults[name]
			require.True(t, ok, "%s: the README shows a default per process, but config has none", name)
			require.True(t, f.IsZero(), "%s: unset, each process takes its own default", name)
			require.Equal(t, m[1], read(defaults, config.ProcessAPI), "%s of the api", name)
			require.Equal(t, m[2], read(defaults, config.ProcessWorker), "%s of the worker", name)
		case strings.Contains(doc, "<NAMESPACE>"):
			require.True(t, f.IsZero(), "%s: derived by Load, so empty in Defaults", name)
			want := strings.ReplaceAll(doc, "<NAMESPACE>", defaults.Namespace)
			require.Equal(t, want, loadedFields[name].Interface(), name)
		default:
			requireValue(t, name, doc, f.Interface())
		}
	}
}

// requireValue checks that the README's text doc reads as value.
func requireValue(t *testing.T, name, doc string, value any) {
	t.Helper()
	switch v := value.(type) {
	case string:
		require.Equal(t, doc, v, name)
	case int:
		n, err := strconv.Atoi(doc)
		require.NoError(t, err, name)
		require.Equal(t, n, v, name)
	case bool:
		b, err := strconv.ParseBool(doc)
		require.NoError(t, err, name)
		require.Equal(t, b, v, name)
	case time.Duration:
		d, err := time.ParseDuration(doc)
		require.NoError(t, err, name)
		require.Equal(t, d, v, name)
	case float64:
		f, err := strconv.ParseFloat(doc, 64)
		require.NoError(t, err, name)
		require.Equal(t, f, v, name)
	case []string:
		require.Equal(t, strings.Split(doc, ","), v, name)
	default:
		t.Fatalf("%s: no comparison for %T", name, value)
	}
}

// TestLoad_EmptyEnvironmentIsDefaults: Load of an empty environment is
// Defaults with the derived values filled in.
func TestLoad_EmptyEnvironmentIsDefaults(t *testing.T) {
	c := load(t)
	want := config.Defaults()
	want.BatchExchange, want.BatchQueue = "lull.batches", "lull.batches"
	require.Equal(t, want, c)
}

// TestLoad_EmptyVariableMeansTheDefault: compose files pass ${X:-}, so a
// set but empty variable reads as unset; NAMESPACE alone is refused (see
// TestLoad_BadValuesNameTheVariable).
func TestLoad_EmptyVariableMeansTheDefault(t *testing.T) {
	want := load(t)
	for name := range envFields(&want) {
		if name != "NAMESPACE" {
			t.Setenv(name, "")
		}
	}
	require.Equal(t, want, load(t))
}

// TestLoad_VariablesOverrideDefaults: a set variable replaces the default
// whole, lists and booleans included.
func TestLoad_VariablesOverrideDefaults(t *testing.T) {
	c := load(t,
		"SINKS", "log,amqp",
		"IMMEDIATE_FLUSH", "media",
		"WEBHOOK_GENERIC", "false",
		"CELERY_TASK", "app.tasks.batch")
	require.Equal(t, []string{"log", "amqp"}, c.Sinks)
	require.Equal(t, []string{"media"}, c.ImmediateFlush)
	require.False(t, c.WebhookGeneric)
	require.Equal(t, "app.tasks.batch", c.CeleryTask)

	// Defaults is a fresh value every time: Load changed none of its lists.
	require.Equal(t, []string{"log"}, config.Defaults().Sinks)
	require.Equal(t, []string{"command", "interactive"}, config.Defaults().ImmediateFlush)
}

func TestDefaults_AreValid(t *testing.T) {
	c := config.Defaults()
	c.BatchExchange, c.BatchQueue = "lull.batches", "lull.batches"
	require.NoError(t, c.Validate())
}

func TestLoad_EvolutionHeaderIsChecked(t *testing.T) {
	c := load(t, "EVOLUTION_HEADER", "X-Lull-Token: s3cret-value")
	require.Equal(t, "X-Lull-Token: s3cret-value", c.EvolutionHeader)

	err := loadErr(t, "EVOLUTION_HEADER", "s3cret-value")
	require.EqualError(t, err, `config: EVOLUTION_HEADER: must be "Name: value"`)
}

func TestLoad_SinkProblemsNameTheVariable(t *testing.T) {
	err := loadErr(t, "SINKS", "kafka,log,LOG,http")
	require.ErrorContains(t, err, `config: SINKS: sink "kafka": unknown (known: log, http, amqp, celery)`)
	require.ErrorContains(t, err, `sink "log": listed twice`)
	require.ErrorContains(t, err, "config: CALLBACK_URL: is required, when SINKS has http")
}
