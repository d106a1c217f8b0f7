package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/valutil"
	"github.com/lullhq/lull/lua"
)

// AppendJob is one Append of an AppendMany.
type AppendJob struct {
	Key      string // conversation key
	ID       string // message id
	Message  []byte // the message's JSON encoding
	FlushNow bool   // flush the conversation at once (an immediate-flush rule matched)
	// ReceivedAt is when the api received the message (Unix ms; 0 =
	// unknown): the quiet window runs from it rather than from the append,
	// by at most half a quiet window (see lua/append.lua).
	ReceivedAt int64
	// Media: a media message without a caption (MediaQuietWindow applies).
	Media bool
	// Cancel: the message is a cancel word; it and what is buffered are
	// dropped (Appended.Dropped counts them).
	Cancel bool
}

// AppendMany does what Append does for each job, all of them in one Redis
// round trip (a pipeline of append.lua calls), and returns each job's
// outcome at its index: its Appended when its error is nil. Stored
// deadlines are reported to the Alarm, as Append does.
//
// The calls run in the jobs' order, but each succeeds or fails on its own:
// a job may fail (a Redis error reply, such as OOM or BUSY) while a later
// one succeeds. A caller that needs a conversation's messages stored in
// order puts at most one job of a conversation in one call (the appender
// does), and retries a failed job before the next of its conversation.
func (b *Store) AppendMany(ctx context.Context, jobs []AppendJob) ([]Appended, []error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	execs := make([]rueidis.LuaExec, len(jobs))
	for i, j := range jobs {
		execs[i] = b.appendExec(j)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	// One pipeline of EVALSHA; calls answered NOSCRIPT (Redis lost its
	// script cache) did nothing and run again with EVAL.
	res := lua.Append.ExecMulti(ctx, b.client, execs...)

	out := make([]Appended, len(jobs))
	errs := make([]error, len(jobs))
	for i, r := range res {
		out[i], errs[i] = b.appended(execs[i].Keys[0], r)
	}
	return out, errs
}

// appendExec is the append.lua call of one job: Append's keys and args.
func (b *Store) appendExec(j AppendJob) rueidis.LuaExec {
	k := b.keys.Conversation(j.Key)
	now, received, control, adaptiveMin, adaptiveK := "", "", "", "", ""
	if j.FlushNow {
		now = "1"
	}
	if j.ReceivedAt > 0 {
		received = strconv.FormatInt(j.ReceivedAt, 10)
	}
	if j.Cancel {
		control = "cancel"
	}
	w := b.window(j.Key)
	if j.Media && b.opts.MediaQuietWindow > 0 {
		w.Quiet = b.opts.MediaQuietWindow
	} else if a := b.opts.Adaptive; a != nil {
		adaptiveMin, adaptiveK = ms(a.Min), strconv.FormatFloat(a.K, 'f', -1, 64)
	}
	return rueidis.LuaExec{
		Keys: []string{k.Buf, k.Meta, k.Seen, k.Due, k.Stats},
		Args: []string{j.Key, j.ID, string(j.Message), ms(w.Quiet), ms(w.MaxWait),
			strconv.Itoa(b.opts.MaxMessages), ms(b.opts.DedupeWindow), ms(b.opts.TTL), b.now(), now, received,
			control, adaptiveMin, adaptiveK},
	}
}

// appended reads one append.lua reply, as Append does, reporting a stored
// deadline to the alarm.
func (b *Store) appended(buf string, r rueidis.RedisResult) (Appended, error) {
	vals, err := r.AsIntSlice()
	if err != nil {
		return Appended{}, fmt.Errorf("append %s: %w", buf, err)
	}
	if len(vals) != 6 {
		return Appended{}, fmt.Errorf("append %s: unexpected reply %v", buf, vals)
	}
	a := Appended{Stored: vals[0] == 1, Generation: vals[1], Count: vals[2], Deadline: vals[3], Now: vals[4], Dropped: vals[5]}
	if a.Stored && a.Deadline >= 0 {
		b.alarm.set(a.Deadline, a.Now)
	}
	return a, nil
}

// window is the quiet window and max wait of conversation key: its
// source's (a provider key "<source>:…" with an entry in Windows; any other
// key is a generic one, Windows["generic"]), else the defaults.
func (b *Store) window(key string) Window {
	w := Window{Quiet: b.opts.QuietWindow, MaxWait: b.opts.MaxWait}
	if len(b.opts.Windows) == 0 {
		return w
	}
	o, ok := Window{}, false
	if source, _, cut := strings.Cut(key, ":"); cut && source != "generic" {
		o, ok = b.opts.Windows[source]
	}
	if !ok {
		o, ok = b.opts.Windows["generic"]
	}
	if ok {
		w.Quiet = valutil.ValOrDefault(o.Quiet, w.Quiet)
		w.MaxWait = valutil.ValOrDefault(o.MaxWait, w.MaxWait)
	}
	return w
}
