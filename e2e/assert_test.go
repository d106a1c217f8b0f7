package e2e

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/lullhq/lull/internal/batch"
)

// waitBatches waits until n distinct batches (by batch_id) were accepted by
// the receiver and returns them, first delivery of each, in arrival order.
func (b *bundle) waitBatches(n int, timeout time.Duration) []delivery {
	b.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := distinct(b.recv.accepted())
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			b.tb.Fatalf("timed out after %s waiting for %d batches; the receiver got:%s", timeout, n, describe(b.recv.all()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDelivered waits until every message sent so far is in an accepted
// batch and returns the distinct batches, in arrival order.
func (b *bundle) waitDelivered(timeout time.Duration) []delivery {
	b.tb.Helper()
	sent := b.sentSoFar()
	deadline := time.Now().Add(timeout)
	for {
		got := distinct(b.recv.accepted())
		missing := missingFrom(sent, got)
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			b.tb.Fatalf("timed out after %s: %d of %d sent messages not delivered; the receiver got:%s",
				timeout, missing, len(sent), describe(b.recv.all()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// missingFrom counts the sent messages that are in none of batches.
func missingFrom(sent []sentMsg, batches []delivery) int {
	in := map[msgRef]bool{}
	for _, d := range batches {
		for _, m := range d.Batch.Messages {
			in[msgRef{d.Batch.Key, m.ID}] = true
		}
	}
	missing := 0
	for _, s := range sent {
		if !in[msgRef{s.Key, s.ID}] {
			missing++
		}
	}
	return missing
}

// requireNoNewRequests fails the test if the receiver gets any request in
// the next d. (Waiting out d is the point: it proves an absence.)
func (b *bundle) requireNoNewRequests(d time.Duration) {
	b.tb.Helper()
	before := len(b.recv.all())
	time.Sleep(d)
	if all := b.recv.all(); len(all) != before {
		b.tb.Fatalf("unexpected requests within %s:%s", d, describe(all[before:]))
	}
}

// msgRef names a message: its conversation key and its id.
type msgRef struct{ key, id string }

// assertExactlyOnce checks guarantees 2-4 (the README's "Guarantees") over the
// accepted deliveries ds (redeliveries included) against every 2xx'd
// message sent:
//   - a batch_id delivered more than once holds the same batch every time;
//   - batch_id is key:generation, and no batch mixes keys;
//   - every sent message is in exactly one batch, with its text;
//   - no unknown message is delivered;
//   - a message whose POST was answered before another's started comes
//     first (within a batch, and across the key's batches by generation),
//     unless one of them carries a provider timestamp;
//   - a key's batches arrive in generation order.
func assertExactlyOnce(t testing.TB, sent []sentMsg, ds []delivery) bool {
	t.Helper()
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 20 {
			t.Errorf(format, args...)
		}
	}
	bySent := map[msgRef]sentMsg{}
	keyOf := map[string]string{}
	for _, s := range sent {
		ref := msgRef{s.Key, s.ID}
		if _, dup := bySent[ref]; !dup { // a message posted twice counts from its first POST
			bySent[ref] = s
		}
		keyOf[s.ID] = s.Key
	}

	first := map[string]delivery{}
	var batches []delivery
	for _, d := range ds {
		if !d.ok() {
			continue
		}
		if f, seen := first[d.Batch.BatchID]; seen {
			if !sameBatch(f.Batch, d.Batch) {
				fail("batch %s redelivered with other contents: %v then %v", d.Batch.BatchID, ids(f.Batch), ids(d.Batch))
			}
			continue
		}
		first[d.Batch.BatchID] = d
		batches = append(batches, d)
	}

	in := map[msgRef]string{} // message -> batch id
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
			ref := msgRef{bt.Key, m.ID}
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
			fail("accepted message %s of %q is in no batch (lost)", ref.id, ref.key)
		}
	}

	for key, bs := range byKey {
		for i := 1; i < len(bs); i++ { // in arrival order
			if bs[i].Generation <= bs[i-1].Generation {
				fail("key %q: batch %s arrived after batch %s", key, bs[i].BatchID, bs[i-1].BatchID)
			}
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].Generation < bs[j].Generation })
		var order []sentMsg
		var where []string
		for _, bt := range bs {
			for _, m := range bt.Messages {
				if s, ok := bySent[msgRef{key, m.ID}]; ok {
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

// sameBatch reports whether two deliveries carry the same batch.
func sameBatch(a, b batch.Batch) bool {
	return a.Key == b.Key && a.Generation == b.Generation && a.Reason == b.Reason &&
		slices.Equal(ids(a), ids(b))
}

// texts lists the message texts of a batch.
func texts(b batch.Batch) []string {
	out := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.Text
	}
	return out
}

// sentTexts lists the texts of sent messages.
func sentTexts(sent []sentMsg) []string {
	out := make([]string, len(sent))
	for i, s := range sent {
		out[i] = s.Text
	}
	return out
}

// parseTime reads a batch time.
func parseTime(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("batch time %q: %v", s, err)
	}
	return at
}

// msgText is the text of message i of key, unique across the suite's keys.
func msgText(key string, i int) string { return fmt.Sprintf("%s says #%d", key, i) }
