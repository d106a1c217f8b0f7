package harness

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadSpec is steady traffic, the kind every fault scenario runs under: many
// conversations, each a few bursts of messages (gaps well inside
// QUIET_WINDOW) separated by pauses well beyond it, started at random
// moments across Spread and posted by a bounded pool of senders.
type LoadSpec struct {
	Conversations int           // default 200
	Bursts        int           // bursts per conversation, default 3
	PerBurst      int           // messages per burst, default 5
	Senders       int           // concurrent senders, default 32
	Spread        time.Duration // conversations start within this, default 5s
	BurstGap      time.Duration // pause between a conversation's bursts, default 1s (+ up to half of it)
	MessageGap    time.Duration // gap between the messages of a burst, default 40ms (± a quarter)
	RetryFor      time.Duration // a sender gives a message up after this, default 60s
	Prefix        string        // conversation key prefix, default "user-"
}

func (s *LoadSpec) SetDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.Conversations, 200)
	def(&s.Bursts, 3)
	def(&s.PerBurst, 5)
	def(&s.Senders, 32)
	defDur(&s.Spread, 5*time.Second)
	defDur(&s.BurstGap, time.Second)
	defDur(&s.MessageGap, 40*time.Millisecond)
	defDur(&s.RetryFor, 60*time.Second)
	if s.Prefix == "" {
		s.Prefix = "user-"
	}
}

// Key is the conversation key of conversation c.
func (s LoadSpec) Key(c int) string { return fmt.Sprintf("%s%03d", s.Prefix, c) }

// Load is traffic under way: see StartLoad.
type Load struct {
	spec    LoadSpec
	total   int // messages it sends
	started time.Time
	posts   atomic.Int64 // POSTs, retries included
	retries atomic.Int64 // POSTs that repeated a message not yet accepted
	gaveUp  atomic.Int64 // messages never accepted within RetryFor
	senders sync.WaitGroup
	stop    chan struct{} // closed when the test ends: senders quit

	mu      sync.Mutex
	refused map[int]int // answers that were not 2xx, by status (0 = no answer)
}

// planned is one message of the schedule.
type planned struct {
	at       time.Duration // since the load started
	key, id  string
	text     string
	sequence int // within its conversation
}

// StartLoad starts posting spec's traffic and returns at once. Each message
// carries its own message_id; a sender that gets anything but a 2xx (or no
// answer) posts it again with the same message_id until it is accepted, so
// only 2xx'd messages count as sent and retries are deduped by the api.
func (d *Deployment) StartLoad(spec LoadSpec) *Load {
	spec.SetDefaults()
	seed := rand.Uint64()
	d.TB.Logf("load: %d conversations x %d bursts x %d messages, %d senders, schedule seed %d",
		spec.Conversations, spec.Bursts, spec.PerBurst, spec.Senders, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	jitter := func(dur time.Duration, share float64) time.Duration {
		return time.Duration(float64(dur) * share * (2*rng.Float64() - 1))
	}
	var plan []planned
	for c := range spec.Conversations {
		key := spec.Key(c)
		at := time.Duration(rng.Int64N(int64(spec.Spread)))
		n := 0
		for burst := range spec.Bursts {
			if burst > 0 {
				at += spec.BurstGap + time.Duration(rng.Int64N(int64(spec.BurstGap/2)))
			}
			for i := range spec.PerBurst {
				if i > 0 {
					at += spec.MessageGap + jitter(spec.MessageGap, 0.25)
				}
				plan = append(plan, planned{
					at: at, key: key, sequence: n,
					id:   fmt.Sprintf("%s-m%03d", key, n),
					text: fmt.Sprintf("%s burst %d message %d", key, burst, n),
				})
				n++
			}
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].at < plan[j].at })

	l := &Load{spec: spec, total: len(plan), started: time.Now(), refused: map[int]int{}, stop: make(chan struct{})}
	// A test that ends early (it failed) stops its traffic first.
	d.TB.Cleanup(func() { close(l.stop); l.senders.Wait() })
	jobs := make(chan planned, len(plan))
	go func() { // the schedule: pacing, not synchronisation
		defer close(jobs)
		for _, p := range plan {
			select {
			case <-time.After(time.Until(l.started.Add(p.at))):
			case <-l.stop:
				return
			}
			jobs <- p
		}
	}()
	for range spec.Senders {
		l.senders.Add(1)
		go func() {
			defer l.senders.Done()
			for p := range jobs {
				select {
				case <-l.stop:
					return
				default:
					l.send(d, p)
				}
			}
		}()
	}
	return l
}

// send posts p until the api answers 2xx or RetryFor has passed.
func (l *Load) send(d *Deployment, p planned) {
	first := time.Now()
	fields := map[string]any{"message_id": p.id}
	for attempt := 1; ; attempt++ {
		l.posts.Add(1)
		status := d.PostSince(first, p.key, p.text, fields)
		if status/100 == 2 {
			return
		}
		l.mu.Lock()
		l.refused[status]++
		l.mu.Unlock()
		if status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
			l.gaveUp.Add(1)
			d.TB.Errorf("POST %s %s: status %d for a valid message", p.key, p.id, status)
			return
		}
		if time.Since(first) > l.spec.RetryFor {
			l.gaveUp.Add(1)
			d.TB.Errorf("POST %s %s: not accepted within %s (last status %d)", p.key, p.id, l.spec.RetryFor, status)
			return
		}
		l.retries.Add(1)
		select {
		case <-time.After(min(time.Duration(attempt)*50*time.Millisecond, 250*time.Millisecond)):
		case <-l.stop:
			return
		}
	}
}

// Refusals counts the POSTs answered with status (0 = no answer: refused
// or cut connection).
func (l *Load) Refusals(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused[status]
}

// RefusedSummary lists the statuses of POSTs not answered 2xx.
func (l *Load) RefusedSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.refused) == 0 {
		return "none"
	}
	statuses := make([]int, 0, len(l.refused))
	for s := range l.refused {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	parts := make([]string, len(statuses))
	for i, s := range statuses {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "no answer"
		}
		parts[i] = fmt.Sprintf("%s x%d", name, l.refused[s])
	}
	return strings.Join(parts, ", ")
}

// Wait blocks until every message was accepted (or given up).
func (l *Load) Wait() { l.senders.Wait() }

// Total is the number of messages the load sends.
func (l *Load) Total() int { return l.total }

// Retries counts the POSTs that repeated a message not yet accepted.
func (l *Load) Retries() int64 { return l.retries.Load() }

// GaveUp counts the messages never accepted within RetryFor.
func (l *Load) GaveUp() int64 { return l.gaveUp.Load() }

// WaitAccepted waits until at least share (0 to 1) of the load's messages
// were accepted: the moment to inject a fault "mid-stream".
func (d *Deployment) WaitAccepted(l *Load, share float64) {
	d.TB.Helper()
	n := int(share * float64(l.total))
	WaitUntil(d.TB, 60*time.Second, fmt.Sprintf("%d of %d messages accepted", n, l.total), func() bool {
		return len(d.SentSoFar()) >= n
	})
}
