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

	"github.com/lullhq/lull/e2e/harness"
	"github.com/lullhq/lull/internal/keys"
)

const faultAdminToken = "faults-admin-token-0123456789"

// dlq runs `worker dlq args...` with the deployment's environment, as an
// operator would, and returns its exit status and output.
func dlq(b *harness.Deployment, args ...string) (int, string) {
	b.TB.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.WorkerBinary(), append([]string{"dlq"}, args...)...)
	cmd.Env = b.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		b.TB.Fatalf("worker dlq %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// adminReplay asks the api to replay batch id and returns the status.
func adminReplay(b *harness.Deployment, id string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, b.URL("/admin/dead-letters/replay?batch_id="+url.QueryEscape(id)), nil)
	require.NoError(b.TB, err)
	req.Header.Set("Authorization", "Bearer "+faultAdminToken)
	resp, err := b.Client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// rejectedBatches lists the batches of key the receiver answered 400, each
// once, by generation.
func rejectedBatches(ds []harness.Received, key string) []harness.Received {
	var out []harness.Received
	for _, d := range ds {
		if d.Status == http.StatusBadRequest && d.Batch.Key == key &&
			!slices.ContainsFunc(out, func(o harness.Received) bool { return o.Batch.BatchID == d.Batch.BatchID }) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b harness.Received) int { return int(a.Batch.Generation - b.Batch.Generation) })
	return out
}

func testFaultDeadLetter(t *testing.T) {
	opts := faultOptions()
	opts.Env["ADMIN_TOKEN"] = faultAdminToken
	f := newFaultRun(t, faultDeadLetter, opts)
	spec := harness.LoadSpec{}
	spec.SetDefaults()
	// Two conversations whose every batch the receiver refuses for good
	// (400): they are dead-lettered at their first attempt. One is
	// replayed with `worker dlq replay`, the other through the api.
	byCLI, byAPI := spec.Key(0), spec.Key(1)
	f.b.Recv.Reject(byCLI, byAPI)
	f.load = f.b.StartLoad(spec)
	f.load.Wait()

	// Every other conversation delivered, nothing in flight: the poisoned
	// ones are all in the dead-letter store.
	poisoned := func(k string) bool { return k == byCLI || k == byAPI }
	var others []harness.Sent
	for _, s := range f.b.SentSoFar() {
		if !poisoned(s.Key) {
			others = append(others, s)
		}
	}
	harness.WaitUntil(t, 45*time.Second, "every other conversation delivered, nothing in flight", func() bool {
		if harness.MissingFrom(others, harness.Distinct(f.b.Recv.Accepted())) > 0 {
			return false
		}
		idle, err := quiescent(context.Background(), f.redis, f.b.NS)
		return err == nil && idle
	})
	for _, d := range f.b.Recv.Accepted() {
		require.False(t, poisoned(d.Batch.Key), "batch %s of a rejected conversation was accepted", d.Batch.BatchID)
	}
	cliBatches, apiBatches := rejectedBatches(f.b.Recv.All(), byCLI), rejectedBatches(f.b.Recv.All(), byAPI)
	require.NotEmpty(t, cliBatches)
	require.NotEmpty(t, apiBatches)

	code, out := dlq(f.b, "list")
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
	code, out = dlq(f.b, "show", cliBatches[0].Batch.BatchID)
	require.Equal(t, 0, code, "worker dlq show:\n%s", out)
	assert.Contains(t, out, cliBatches[0].Batch.Messages[0].ID)

	// The receiver is fixed; replay each conversation's batches in
	// generation order, each once the one before it is delivered.
	f.b.Recv.AcceptAll()
	replay := func(how string, rejected []harness.Received, do func(id string) (busy bool, err error)) {
		for _, r := range rejected {
			id := r.Batch.BatchID
			harness.WaitUntil(t, 10*time.Second, "replay of "+id+" by "+how+" accepted", func() bool {
				busy, err := do(id)
				require.NoError(t, err)
				return !busy
			})
			harness.WaitUntil(t, 15*time.Second, "replayed batch "+id+" delivered", func() bool {
				return slices.ContainsFunc(f.b.Recv.Accepted(), func(d harness.Received) bool { return d.Batch.BatchID == id })
			})
		}
	}
	replay("worker dlq replay", cliBatches, func(id string) (bool, error) {
		code, out := dlq(f.b, "replay", id)
		switch {
		case code == 0:
			return false, nil
		case strings.Contains(out, "in flight"):
			return true, nil
		}
		return false, fmt.Errorf("worker dlq replay %s: exit %d: %s", id, code, out)
	})
	replay("POST /admin/dead-letters/replay", apiBatches, func(id string) (bool, error) {
		status, body := adminReplay(f.b, id)
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
	accepted := f.b.Recv.Accepted()
	for _, r := range append(cliBatches, apiBatches...) {
		i := slices.IndexFunc(accepted, func(d harness.Received) bool { return d.Batch.BatchID == r.Batch.BatchID })
		if assert.GreaterOrEqual(t, i, 0, "batch %s never delivered", r.Batch.BatchID) {
			assert.True(t, harness.SameBatch(r.Batch, accepted[i].Batch), "batch %s replayed with other contents: %v then %v",
				r.Batch.BatchID, harness.IDs(r.Batch), harness.IDs(accepted[i].Batch))
		}
	}
	code, out = dlq(f.b, "list")
	require.Equal(t, 0, code, "worker dlq list:\n%s", out)
	assert.Contains(t, out, "no dead letters", "dead letters left after every replay")
	t.Logf("replayed %d batches with worker dlq replay and %d through the api", len(cliBatches), len(apiBatches))
}
