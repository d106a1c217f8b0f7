package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/e2e/harness"
)

// A W3C traceparent a webhook came with is kept with its message and sent on
// with the batch: the http sink's traceparent header is the burst's last
// traced message's; an invalid one is ignored, never refused.
func TestTraceparent_FollowsTheMessageToTheSink(t *testing.T) {
	b := harness.Setup(t, harness.Options{QuietWindow: harness.BurstWindow})
	const key = "5511999990077"
	const first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	const last = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for i, tp := range []string{first, "not-a-traceparent", last, ""} {
		body := `{"unique_id":"` + key + `","message":"m` + string(rune('0'+i)) + `"}`
		headers := []string{}
		if tp != "" {
			headers = append(headers, "traceparent", tp)
		}
		status, answer := b.PostTo("/webhook", "application/json", []byte(body), headers...)
		require.Equal(t, http.StatusAccepted, status, answer)
	}
	got := b.WaitBatches(1, 10*time.Second)
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, last, d.Header.Get("traceparent"), "the batch continues its last traced message's trace")
	var kept []string
	for _, m := range d.Batch.Messages {
		kept = append(kept, m.Traceparent)
	}
	assert.Equal(t, []string{first, "", last, ""}, kept, "each message keeps its own; an invalid one is dropped")
}
