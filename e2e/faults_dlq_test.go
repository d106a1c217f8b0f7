//go:build faults

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
)

const faultAdminToken = "faults-admin-token-0123456789"

// dlq runs `worker dlq args...` with the deployment's environment, as an
// operator would, and returns its exit status and output.
func (b *bundle) dlq(args ...string) (int, string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.worker, append([]string{"dlq"}, args...)...)
	cmd.Env = b.environ()
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		b.tb.Fatalf("worker dlq %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// adminReplay asks the api to replay batch id and returns the status.
func (b *bundle) adminReplay(id string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, b.url("/admin/dead-letters/replay?batch_id="+url.QueryEscape(id)), nil)
	require.NoError(b.tb, err)
	req.Header.Set("Authorization", "Bearer "+faultAdminToken)
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// rejectedBatches lists the batches of key the receiver answered 400, each
// once, by generation.
func rejectedBatches(ds []delivery, key string) []delivery {
	var out []delivery
	for _, d := range ds {
		if d.Status == http.StatusBadRequest && d.Batch.Key == key &&
			!slices.ContainsFunc(out, func(o delivery) bool { return o.Batch.BatchID == d.Batch.BatchID }) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b delivery) int { return int(a.Batch.Generation - b.Batch.Generation) })
	return out
}

func testFaultDeadLetter(t *testing.T) {
	opts := faultOptions()
	opts.Env["ADMIN_TOKEN"] = faultAdminToken
	f := newFaultRun(t, faultDeadLetter, opts)
	spec := loadSpec{}
	spec.setDefaults()
	// Two conversations whose every batch the receiver refuses for good
	// (400): they are dead-lettered at their first attempt. One is
	// replayed with `worker dlq replay`, the other through the api.
	byCLI, byAPI := spec.key(0), spec.key(1)
	f.b.recv.reject(byCLI, byAPI)
	f.load = f.b.startLoad(spec)
	f.load.wait()

	// Every other conversation delivered, nothing in flight: the poisoned
	// ones are all in the dead-letter store.
	poisoned := func(k string) bool { return k == byCLI || k == byAPI }
	var others []sentMsg
	for _, s := range f.b.sentSoFar() {
		if !poisoned(s.Key) {
			others = append(others, s)
		}
	}
	waitUntil(t, 45*time.Second, "every other conversation delivered, nothing in flight", func() bool {
		if missingFrom(others, distinct(f.b.recv.accepted())) > 0 {
			return false
		}
		idle, err := quiescent(context.Background(), f.redis, f.b.ns)
		return err == nil && idle
	})
	for _, d := range f.b.recv.accepted() {
		require.False(t, poisoned(d.Batch.Key), "batch %s of a rejected conversation was accepted", d.Batch.BatchID)
	}
	cliBatches, apiBatches := rejectedBatches(f.b.recv.all(), byCLI), rejectedBatches(f.b.recv.all(), byAPI)
	require.NotEmpty(t, cliBatches)
	require.NotEmpty(t, apiBatches)

	code, out := f.b.dlq("list")
	require.Equal(t, 0, code, "worker dlq list:\n%s", out)
	t.Logf("worker dlq list:\n%s", out)
	listed := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		id, _, _ := strings.Cut(line, "\t")
		k, _, ok := keys.ParseBatchID(id)
		require.True(t, ok && poisoned(k), "dead letter %q is not a batch of a rejected conversation", line)
		listed++
	}
	require.Equal(t, len(cliBatches)+len(apiBatches), listed, "dead letters listed vs batches refused with 400")
	code, out = f.b.dlq("show", cliBatches[0].Batch.BatchID)
	require.Equal(t, 0, code, "worker dlq show:\n%s", out)
	assert.Contains(t, out, cliBatches[0].Batch.Messages[0].ID)

	// The receiver is fixed; replay each conversation's batches in
	// generation order, each once the one before it is delivered.
	f.b.recv.accept()
	replay := func(how string, rejected []delivery, do func(id string) (busy bool, err error)) {
		for _, r := range rejected {
			id := r.Batch.BatchID
			waitUntil(t, 10*time.Second, "replay of "+id+" by "+how+" accepted", func() bool {
				busy, err := do(id)
				require.NoError(t, err)
				return !busy
			})
			waitUntil(t, 15*time.Second, "replayed batch "+id+" delivered", func() bool {
				return slices.ContainsFunc(f.b.recv.accepted(), func(d delivery) bool { return d.Batch.BatchID == id })
			})
		}
	}
	replay("worker dlq replay", cliBatches, func(id string) (bool, error) {
		code, out := f.b.dlq("replay", id)
		switch {
		case code == 0:
			return false, nil
		case strings.Contains(out, "in flight"):
			return true, nil
		}
		return false, fmt.Errorf("worker dlq replay %s: exit %d: %s", id, code, out)
	})
	replay("POST /admin/dead-letters/replay", apiBatches, func(id string) (bool, error) {
		status, body := f.b.adminReplay(id)
		switch status {
		case http.StatusAccepted:
			return false, nil
		case http.StatusConflict:
			return true, nil
		}
		return false, fmt.Errorf("POST /admin/dead-letters/replay %s: %d %s", id, status, body)
	})
	f.finish()

	// Replayed unchanged: the batch delivered is the batch refused.
	accepted := f.b.recv.accepted()
	for _, r := range append(cliBatches, apiBatches...) {
		i := slices.IndexFunc(accepted, func(d delivery) bool { return d.Batch.BatchID == r.Batch.BatchID })
		if assert.GreaterOrEqual(t, i, 0, "batch %s never delivered", r.Batch.BatchID) {
			assert.True(t, sameBatch(r.Batch, accepted[i].Batch), "batch %s replayed with other contents: %v then %v",
				r.Batch.BatchID, ids(r.Batch), ids(accepted[i].Batch))
		}
	}
	code, out = f.b.dlq("list")
	require.Equal(t, 0, code, "worker dlq list:\n%s", out)
	assert.Contains(t, out, "no dead letters", "dead letters left after every replay")
	t.Logf("replayed %d batches with worker dlq replay and %d through the api", len(cliBatches), len(apiBatches))
}
