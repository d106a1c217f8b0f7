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
		_, err := tb.buf.Append(ctx, "u3", "m1", msg("x"), false)
		require.NoError(t, err)
		first := a.Earliest()
		<-a.C()
		tb.advance(time.Second)
		_, err = tb.buf.Append(ctx, "u4", "m1", msg("x"), false) // a second later
		require.NoError(t, err)
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
		c := claimOne(t, tb, "u1", "a")
		tb.advance(4 * time.Second)
		hears(t, a, 10*time.Second, func() {
			_, err := tb.buf.Append(ctx, "u1", "b", msg("b"), false)
			require.NoError(t, err)
		}, "a message while a batch is in flight")
		tb.advance(time.Second)
		hears(t, a, 9*time.Second, func() {
			res, err := c.Commit(ctx)
			require.NoError(t, err)
			require.False(t, res.Already)
		}, "a commit that leaves newer messages buffered")
		hears(t, a, 9*time.Second, func() {
			res, err := c.Commit(ctx)
			require.NoError(t, err)
			require.True(t, res.Already)
		}, "a commit retried after a lost reply")

		tb.advance(9 * time.Second)
		c2, why, err := tb.buf.Flush(ctx, "u1", "w1")
		require.NoError(t, err)
		require.Empty(t, why)
		_, err = tb.buf.Append(ctx, "u1", "c", msg("c"), false)
		require.NoError(t, err)
		tb.advance(2 * time.Second)
		hears(t, a, 8*time.Second, func() {
			require.NoError(t, c2.DeadLetter(ctx, "status 400"))
		}, "a dead letter that leaves newer messages buffered")

		tb.advance(8 * time.Second)
		c3, why, err := tb.buf.Flush(ctx, "u1", "w1")
		require.NoError(t, err)
		require.Empty(t, why)
		silent(t, a, func() {
			_, err := c3.Commit(ctx)
			require.NoError(t, err)
		}, "a commit with nothing buffered")
		c4 := claimOne(t, tb, "u2", "d")
		silent(t, a, func() { require.NoError(t, c4.DeadLetter(ctx, "status 400")) }, "a dead letter with nothing buffered")
	})

	t.Run("a slice that leaves the rest due at once", func(t *testing.T) {
		tb := setup(t, func(o *store.Options) { o.MaxMessages = 2 })
		ctx := context.Background()
		a := tb.buf.Alarm()
		first := claimOne(t, tb, "u1", "m0")
		for _, m := range []string{"m1", "m2", "m3"} {
			_, err := tb.buf.Append(ctx, "u1", m, msg(m), false)
			require.NoError(t, err)
		}
		hears(t, a, 0, func() {
			_, err := first.Commit(ctx)
			require.NoError(t, err)
		}, "a commit that leaves a full buffer")
		var slice *store.Claim
		hears(t, a, 0, func() {
			var why store.FlushResult
			var err error
			slice, why, err = tb.buf.Flush(ctx, "u1", "w1")
			require.NoError(t, err)
			require.Empty(t, why)
		}, "a slice claimed out of a larger buffer")
		require.Equal(t, []string{"m1", "m2"}, texts(t, slice))
		require.NoError(t, slice.Release(ctx))

		_, err := tb.buf.Append(ctx, "u2", "x", msg("x"), false)
		require.NoError(t, err)
		tb.advance(10 * time.Second)
		silent(t, a, func() {
			c, why, err := tb.buf.Flush(ctx, "u2", "w1")
			require.NoError(t, err)
			require.Empty(t, why)
			require.Len(t, c.Batch.Messages, 1)
		}, "a claim of a whole buffer")
	})
}
