package metrics_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/metrics"
)

func TestServer_ServesMetricsOnItsOwnAddressUntilStopped(t *testing.T) {
	t.Parallel()
	m := metrics.NewAPI(metrics.APIOptions{})
	m.WebhookRequest("generic", 202)
	s := metrics.NewServer(metrics.ServerOptions{Addr: "127.0.0.1:0", Gatherer: m.Gatherer()})
	require.NoError(t, s.Start(context.Background()))
	<-s.Started()
	base := "http://" + s.Addr()

	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, fams, "lull_webhook_requests_total")
	require.Contains(t, fams, "go_goroutines")

	for _, path := range []string{"/", "/webhook", "/metrics/x"} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}

	// A taken port is Start's error.
	other := metrics.NewServer(metrics.ServerOptions{Addr: s.Addr(), Gatherer: m.Gatherer()})
	require.ErrorContains(t, other.Start(context.Background()), "metrics: listen")

	s.Stop()
	select {
	case <-s.Stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped")
	}
	_, err = net.DialTimeout("tcp", s.Addr(), time.Second)
	require.Error(t, err, "nothing listens after Stop")
}

func TestServer_RefusesNoAddress(t *testing.T) {
	t.Parallel()
	s := metrics.NewServer(metrics.ServerOptions{Gatherer: metrics.NewAPI(metrics.APIOptions{}).Gatherer()})
	require.Error(t, s.Start(context.Background()))
}
