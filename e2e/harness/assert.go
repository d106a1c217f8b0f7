package harness

import (
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/batch"
)

// WaitBatches waits until n distinct batches (by batch_id) were accepted by
// the receiver and returns them, first delivery of each, in arrival order.
func (d *Deployment) WaitBatches(n int, timeout time.Duration) []Received {
	d.TB.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := Distinct(d.Recv.Accepted())
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			d.TB.Fatalf("timed out after %s waiting for %d batches; the receiver got:%s", timeout, n, Describe(d.Recv.All()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitDelivered waits until every message sent so far is in an accepted
// batch and returns the distinct batches, in arrival order.
func (d *Deployment) WaitDelivered(timeout time.Duration) []Received {
	d.TB.Helper()
	sent := d.SentSoFar()
	deadline := time.Now().Add(timeout)
	for {
		got := Distinct(d.Recv.Accepted())
		missing := MissingFrom(sent, got)
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			d.TB.Fatalf("timed out after %s: %d of %d sent messages not delivered; the receiver got:%s",
				timeout, missing, len(sent), Describe(d.Recv.All()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitHeld waits for the request ReceiverOptions.HoldFirst holds and
// returns it; after timeout the test fails.
func (d *Deployment) WaitHeld(timeout time.Duration) Received {
	d.TB.Helper()
	select {
	case <-d.Recv.Held():
	case <-time.After(timeout):
		d.TB.Fatalf("the batch never reached the receiver:%s", Describe(d.Recv.All()))
	}
	return d.Recv.All()[0]
}

// MissingFrom counts the sent messages that are in none of batches.
func MissingFrom(sent []Sent, batches []Received) int {
	in := map[Ref]bool{}
	for _, d := range batches {
		for _, m := range d.Batch.Messages {
			in[Ref{d.Batch.Key, m.ID}] = true
		}
	}
	missing := 0
	for _, s := range sent {
		if !in[s.Ref()] {
			missing++
		}
	}
	return missing
}

// RequireNoNewRequests fails the test if the receiver gets any request in
// the next wait. (Waiting it out is the point: it proves an absence.)
func (d *Deployment) RequireNoNewRequests(wait time.Duration) {
	d.TB.Helper()
	before := len(d.Recv.All())
	time.Sleep(wait)
	if all := d.Recv.All(); len(all) != before {
		d.TB.Fatalf("unexpected requests within %s:%s", wait, Describe(all[before:]))
	}
}

// RequireQuiet is RequireNoNewRequests for a quiet window and two polls:
// the time a batch that was still to come would take to show.
func (d *Deployment) RequireQuiet() {
	d.TB.Helper()
	d.RequireNoNewRequests(d.Opts.QuietWindow + 2*PollInterval)
}

// AssertExactlyOnce checks guarantees 2-4 (the README's "Guarantees") over
// the requests rs (redeliveries and failed ones included; only the
// accepted ones count) against every 2xx'd message sent:
//   - a batch_id delivered more than once holds the same batch every time;
//   - batch_id is key:generation, and no batch mixes keys;
//   - every sent message is in exactly one batch, with its text;
//   - no unknown message is delivered;
//   - a message whose POST was answered before another's started comes
//     first (within a batch, and across the key's batches by generation),
//     unless one of them carries a provider timestamp;
//   - a key's batches arrive in generation order.
//
// It reports (at most 20 failures) with t.Errorf and returns whether all held.
func AssertExactlyOnce(t testing.TB, sent []Sent, rs []Received) bool {
	t.Helper()
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 20 {
			t.Errorf(format, args...)
		}
	}
	bySent := map[Ref]Sent{}
	keyOf := map[string]string{}
	for _, s := range sent {
		if _, dup := bySent[s.Ref()]; !dup { // a message posted twice counts from its first POST
			bySent[s.Ref()] = s
		}
		keyOf[s.ID] = s.Key
	}

	first := map[string]Received{}
	var batches []Received
	for _, d := range rs {
		if !d.OK() {
			continue
		}
		if f, seen := first[d.Batch.BatchID]; seen {
			if !SameBatch(f.Batch, d.Batch) {
				fail("batch %s redelivered with other contents: %v then %v", d.Batch.BatchID, IDs(f.Batch), IDs(d.Batch))
			}
			continue
		}
		first[d.Batch.BatchID] = d
		batches = append(batches, d)
	}

	in := map[Ref]string{} // message -> batch id
	byKey := map[string][]batch.Batch{}
	for _, d := range batches {
		bt := d.Batch
		if want := batch.ID(bt.Key, bt.Generation); bt.BatchID != want {
			fail("batch %s: batch_id is not key:generation (%s)", bt.BatchID, want)
		}
		if len(bt.Messages) == 0 {
			fail("batch %s is empty", bt.BatchID)
		}
		byKey[bt.Key] = append(byKey[bt.Key], bt)
		for _, m := range bt.Messages {
			ref := Ref{bt.Key, m.ID}
			s, known := bySent[ref]
			switch {
			case !known && keyOf[m.ID] != "":
				fail("batch %s (key %q) holds message %s of key %q", bt.BatchID, bt.Key, m.ID, keyOf[m.ID])
				continue
			case !known:
				fail("batch %s holds message %s that was never accepted", bt.BatchID, m.ID)
				continue
			case m.Text != s.Text:
				fail("batch %s: message %s has text %q, sent %q", bt.BatchID, m.ID, m.Text, s.Text)
			}
			if other, twice := in[ref]; twice {
				fail("message %s of %q is in batch %s and in batch %s", m.ID, bt.Key, other, bt.BatchID)
			}
			in[ref] = bt.BatchID
		}
	}
	for ref := range bySent {
		if _, ok := in[ref]; !ok {
			fail("accepted message %s of %q is in no batch (lost)", ref.ID, ref.Key)
		}
	}

	for key, bs := range byKey {
		for i := 1; i < len(bs); i++ { // in arrival order
			if bs[i].Generation <= bs[i-1].Generation {
				fail("key %q: batch %s arrived after batch %s", key, bs[i].BatchID, bs[i-1].BatchID)
			}
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].Generation < bs[j].Generation })
		var order []Sent
		var where []string
		for _, bt := range bs {
			for _, m := range bt.Messages {
				if s, ok := bySent[Ref{key, m.ID}]; ok {
					order = append(order, s)
					where = append(where, bt.BatchID)
				}
			}
		}
		for i := range order {
			for j := i + 1; j < len(order); j++ {
				if order[j].End.Before(order[i].Start) && !order[i].Timestamped && !order[j].Timestamped {
					fail("key %q: message %s (batch %s) comes before %s (batch %s), but was sent after it",
						key, order[i].ID, where[i], order[j].ID, where[j])
				}
			}
		}
	}
	return errs == 0
}

// SameBatch reports whether two requests carry the same batch.
func SameBatch(a, b batch.Batch) bool {
	return a.Key == b.Key && a.Generation == b.Generation && a.Reason == b.Reason &&
		slices.Equal(IDs(a), IDs(b))
}

// ParseTime reads a batch time.
func ParseTime(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("batch time %q: %v", s, err)
	}
	return at
}
