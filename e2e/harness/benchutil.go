package harness

// Small accessors for measuring instruments (the bench table, e2e/
// benchtable_test.go): they read, and never change, a deployment.

// PID is the process id of the running process (for /proc/<pid>/stat).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Count is the number of requests the receiver got so far.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// Since is a copy of the requests from the i-th on, in arrival order: a
// poller that keeps its place copies only what is new (All copies every
// request each time, a cost that shows beside a process under measure).
func (r *Receiver) Since(i int) []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.reqs) {
		return nil
	}
	return append([]Received(nil), r.reqs[max(i, 0):]...)
}
