package testenv

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// StallProxy forwards TCP connections to a target and can stall them: while
// stalled it moves no byte in either direction but closes nothing, as a
// half-open link (a peer gone without a FIN, a dead NAT entry) looks to both
// ends until a heartbeat times out.
type StallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	running chan struct{} // closed while not stalled
	conns   map[net.Conn]struct{}
	closed  bool
	done    chan struct{} // closed by Close
}

// StartStallProxy listens on 127.0.0.1 and forwards every connection to
// target (host:port). It is closed when the test ends.
func StartStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{ln: ln, target: target, running: make(chan struct{}), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	close(p.running)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *StallProxy) Addr() string { return p.ln.Addr().String() }

// AMQPURL is rawURL with its host and port replaced by the proxy's.
func (p *StallProxy) AMQPURL(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

// Stall stops forwarding on every connection, open or new.
func (p *StallProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.running:
		p.running = make(chan struct{})
	default:
	}
}

// Resume forwards again; bytes held back are delivered in order.
func (p *StallProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.running:
	default:
		close(p.running)
	}
}

// Close stops listening and closes every connection.
func (p *StallProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
}

func (p *StallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, upstream) {
			return
		}
		go p.pump(client, upstream)
		go p.pump(upstream, client)
	}
}

func (p *StallProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pump copies src to dst, holding each chunk while the proxy is stalled.
// When either side ends, both are closed, as a real link would end.
func (p *StallProxy) pump(src, dst net.Conn) {
	defer func() {
		_ = src.Close()
		_ = dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait blocks while the proxy is stalled; false once it is closed.
func (p *StallProxy) wait() bool {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	select {
	case <-running:
		return true
	case <-p.done:
		return false
	}
}
