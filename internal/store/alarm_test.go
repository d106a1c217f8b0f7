package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/store"
)

// hears runs call and checks that the store's Alarm was told of a deadline
// in from now (as the test clock reads it), and signalled it.
func hears(t *testing.T, a *store.Alarm, in time.Duration, call func(), what string) {
	t.Helper()
	quiet(a)
	before := time.Now()
	call()
	after := time.Now()
	select {
	case <-a.C():
	default:
		t.Fatalf("%s: the alarm was not signalled", what)
	}
	at := a.Earliest()
	require.False(t, at.IsZero(), "%s: the alarm heard no deadline", what)
	require.WithinRange(t, at, before.Add(in), after.Add(in+time.Millisecond), "%s: the deadline heard", what)
}

// silent runs call and checks that the Alarm heard nothing.
func silent(t *testing.T, a *store.Alarm, call func(), what string) {
	t.Helper()
	quiet(a)
	call()
	require.True(t, a.Earliest().IsZero(), "%s: the alarm heard %v", what, a.Earliest())
	select {
	case <-a.C():
		t.Fatalf("%s: the alarm was signalled", what)
	default:
	}
}

func quiet(a *store.Alarm) {
	a.Clear()
	select {
	case <-a.C():
	default:
	}
}

// Every call that sets a deadline reports it through the store's Alarm
// (what the scheduler listens to); a call that sets none stays silent.
func TestAlarm_HearsEveryNewDeadline(t *testing.T) {
	t.Run("append, typing and manual flush", func(t *testing.T) {
		tb := setup(t)
		ctx := context.Background()
		a := tb.buf.Alarm()
		require.True(t, a.Earliest().IsZero(), "nothing heard yet")

		hears(t, a, 10*time.Second, func() {
			_, err := tb.buf.Append(ctx, "u1", "m1", msg("a"), false)
			require.NoError(t, err)
		}, "a stored message")
		silent(t, a, func() {
			r, err := tb.buf.Append(ctx, "u1", "m1", msg("a"), false)
			require.NoError(t, err)
			require.False(t, r.Stored)
		}, "a duplicate")
		tb.advance(8 * time.Second)
		hears(t, a, 10*time.Second, func() {
			r, err := tb.buf.Typing(ctx, "u1")
			require.NoError(t, err)
			require.True(t, r.Moved)
		}, "a typing event that moves the deadline")
		silent(t, a, func() {
			r, err := tb.buf.Typing(ctx, "u1")
			require.NoError(t, err)
			require.False(t, r.Moved)
		}, "a typing event that moves nothing")
		silent(t, a, func() {
			r, err := tb.buf.Typing(ctx, "nobody")
			require.NoError(t, err)
			require.False(t, r.Moved)
		}, "a typing event with nothing buffered")
		hears(t, a, 0, func() {
			r, err := tb.buf.FlushNow(ctx, "u1")
			require.NoError(t, err)
			require.True(t, r.Moved)
		}, "a manual flush")
		hears(t, a, 0, func() {
			_, err := tb.buf.Append(ctx, "u2", "m1", msg("/start"), true)
			require.NoError(t, err)
		}, "an immediate flush")

		// An earlier deadline signals again; a later one only when the
		// earlier was cleared.
		quiet(a)
		tb.add(t, "u3", "x")
		first := a.Earliest()
		<-a.C()
		tb.advance(time.Second)
		tb.add(t, "u4", "x") // a second later
		require.Equal(t, first, a.Earliest(), "the earliest deadline since Clear is kept")
		select {
		case <-a.C():
			t.Fatal("a later deadline does not signal")
		default:
		}
	})

	t.Run("commit and dead letter that leave messages buffered", func(t *testing.T) {
		tb := setup(t)
		ctx := context.Background()
		a := tb.buf.Alarm()
		c := tb.claim(t, "u1", "a")
		tb.advance(4 * time.Second)
		hears(t, a, 10*time.Second, func() { tb.add(t, "u1", "b") }, "a message while a batch is in flight")
		tb.advance(time.Second)
		hears(t, a, 9*time.Second, func() { require.False(t, commit(t, c).Already) }, "a commit that leaves newer messages buffered")
		hears(t, a, 9*time.Second, func() { require.True(t, commit(t, c).Already) }, "a commit retried after a lost reply")

		tb.advance(9 * time.Second)
		c2 := tb.flush(t, "u1", "w1")
		tb.add(t, "u1", "c")
		tb.advance(2 * time.Second)
		hears(t, a, 8*time.Second, func() {
			require.NoError(t, c2.DeadLetter(ctx, "status 400"))
		}, "a dead letter that leaves newer messages buffered")

		tb.advance(8 * time.Second)
		c3 := tb.flush(t, "u1", "w1")
		silent(t, a, func() { commit(t, c3) }, "a commit with nothing buffered")
		c4 := tb.claim(t, "u2", "d")
		silent(t, a, func() { require.NoError(t, c4.DeadLetter(ctx, "status 400")) }, "a dead letter with nothing buffered")
	})

	t.Run("a slice that leaves the rest due at once", func(t *testing.T) {
		tb := setup(t, func(o *store.Options) { o.MaxMessages = 2 })
		ctx := context.Background()
		a := tb.buf.Alarm()
		first := tb.claim(t, "u1", "m0")
		tb.add(t, "u1", "m1", "m2", "m3")
		hears(t, a, 0, func() { commit(t, first) }, "a commit that leaves a full buffer")
		var slice *store.Claim
		hears(t, a, 0, func() { slice = tb.flush(t, "u1", "w1") }, "a slice claimed out of a larger buffer")
		require.Equal(t, []string{"m1", "m2"}, texts(t, slice))
		require.NoError(t, slice.Release(ctx))

		tb.add(t, "u2", "x")
		tb.advance(10 * time.Second)
		silent(t, a, func() {
			c := tb.flush(t, "u2", "w1")
			require.Len(t, c.Batch.Messages, 1)
		}, "a claim of a whole buffer")
	})
}
