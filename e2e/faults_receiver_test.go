//go:build faults

package e2e

// Switches the fault scenarios flip on the receiver mid-run (its fields and
// the answers they cause are in receiver_test.go).

// setDown makes every request fail while down holds: every other one gets
// 503, the rest have their connection closed unanswered.
func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// reject answers 400 (a permanent failure) to every batch of keys, until
// accept.
func (r *receiver) reject(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.rejected[k] = true
	}
}

// accept undoes reject for every key.
func (r *receiver) accept() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.rejected)
}

// holdOne makes the receiver hold the next request it would accept open,
// unanswered, until its client goes away; the channel closes when it does.
func (r *receiver) holdOne() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holdNext = make(chan struct{})
	return r.holdNext
}
