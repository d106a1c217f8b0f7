// Package health serves the worker's health endpoints: GET /healthz (the
// process is alive) and GET /readyz (it can do its work: Redis reachable
// and taking writes, and the RabbitMQ consumer subscribed).
//
// A Server is a startstop.Service: Start binds Options.Addr (a taken port
// is Start's error, so the worker fails at start rather than run without
// health checks) and serves; Stop shuts the server down gracefully.
// SetStopping turns readiness off while the process drains, liveness on.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/valutil"
)

// DefaultCheckTimeout is Options.CheckTimeout when it is zero.
const DefaultCheckTimeout = time.Second

// Options configure a Server.
type Options struct {
	// Addr is the host:port Start listens on (HEALTH_ADDR; port 0 picks a
	// free one, see Server.Addr). Start refuses an empty Addr.
	Addr string
	// Redis is the worker's client; /readyz writes a probe key with it.
	Redis rueidis.Client
	// Namespace names the probe key, <Namespace>:health.
	Namespace string
	// ConsumerReady reports whether the RabbitMQ consumer is subscribed;
	// nil leaves it out of readiness.
	ConsumerReady func() bool
	// CheckTimeout bounds the Redis probe of one /readyz. Zero means
	// DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Logger receives server errors. Nil means slog.Default().
	Logger *slog.Logger
}

// Status is the answer of /readyz.
type Status struct {
	Ready    bool `json:"ready"`
	Redis    bool `json:"redis"`
	Consumer bool `json:"consumer"`
	// Reason says what is wrong when not Ready, e.g. "redis: out of
	// memory" or "consumer: not connected"; several are joined by "; ".
	Reason string `json:"reason,omitempty"`
}

// Server answers the health endpoints.
type Server struct {
	startstop.BaseStartStop

	opts     Options
	key      string
	log      *slog.Logger
	stopping atomic.Bool

	mu   sync.Mutex
	addr string // bound address of the running server
	err  error  // why serving ended on its own
}

// probeTTL keeps the probe key from outliving the worker by much.
const probeTTL = 10 * time.Second

// New returns a Server; nothing listens until Start (Handler and Check
// work without it).
func New(opts Options) *Server {
	opts.CheckTimeout = valutil.ValOrDefault(opts.CheckTimeout, DefaultCheckTimeout)
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	return &Server{
		opts: opts,
		key:  opts.Namespace + ":health",
		log:  opts.Logger.With(slog.String("component", "health")),
	}
}

// SetStopping makes /readyz answer 503 "shutting down" from now on, while
// /healthz still says alive: a worker draining its deliveries must get no
// new traffic, nor be killed for being slow to stop.
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Check runs the readiness checks.
func (s *Server) Check(ctx context.Context) Status {
	st := Status{Redis: true, Consumer: true}
	var reasons []string
	if s.stopping.Load() {
		reasons = append(reasons, "shutting down")
	}
	if err := s.checkRedis(ctx); err != nil {
		st.Redis = false
		reasons = append(reasons, "redis: "+err.Error())
	}
	if s.opts.ConsumerReady != nil && !s.opts.ConsumerReady() {
		st.Consumer = false
		reasons = append(reasons, "consumer: not connected")
	}
	st.Ready = len(reasons) == 0
	st.Reason = strings.Join(reasons, "; ")
	return st
}

// errOOM and friends name why a reachable Redis refuses the worker's
// writes; every append and flush would fail the same way.
var (
	errOOM         = errors.New("out of memory (maxmemory reached, writes refused)")
	errReadOnly    = errors.New("read-only (a replica)")
	errMisconf     = errors.New("refusing writes (MISCONF: persistence is failing)")
	errUnreachable = errors.New("not reachable")
)

// checkRedis writes the probe key: a PING answers even when Redis, out of
// memory under noeviction, refuses every append the worker would make.
func (s *Server) checkRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
	defer cancel()
	c := s.opts.Redis
	err := c.Do(ctx, c.B().Set().Key(s.key).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Px(probeTTL).Build()).Error()
	if err == nil {
		return nil
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "OOM"):
			return errOOM
		case strings.HasPrefix(msg, "READONLY"):
			return errReadOnly
		case strings.HasPrefix(msg, "MISCONF"):
			return errMisconf
		}
		// Another refusal (ACL, a renamed command): say it, it names no
		// address.
		return fmt.Errorf("probe write refused: %s", msg)
	}
	// A network error names addresses; the log has them, the body not.
	s.log.Debug("redis probe failed", slog.Any("error", err))
	return errUnreachable
}

// Handler serves GET /healthz and GET /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := s.Check(r.Context())
		status := http.StatusOK
		if !st.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, st)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// shutdownTimeout bounds how long Stop waits for requests under way; a
// check takes at most CheckTimeout.
const shutdownTimeout = 5 * time.Second

// Start binds Options.Addr now and serves in the background until Stop (or
// the end of ctx), then shuts down gracefully (requests under way get
// shutdownTimeout; their checks are cancelled). It returns the bind error,
// e.g. for a taken port. When serving fails later, the server ends on its
// own: Stopped() closes and Err says why.
func (s *Server) Start(ctx context.Context) error {
	ctx, ok, started, stopped := s.StartInit(ctx)
	if !ok {
		return nil
	}
	ln, err := s.listen(ctx)
	if err != nil {
		stopped()
		return err
	}
	s.mu.Lock()
	s.addr, s.err = ln.Addr().String(), nil
	s.mu.Unlock()
	go func() {
		started()
		defer stopped()
		err := s.serve(ctx, ln)
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		if err != nil {
			s.log.Error("health endpoint stopped", slog.Any("error", err))
		}
	}()
	return nil
}

// Addr is the address the server listens on (with the port picked for
// port 0), or "" before the first Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Err is why the server ended on its own; nil while it runs and after Stop.
// Read it once Stopped() is closed.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Server) listen(ctx context.Context) (net.Listener, error) {
	if s.opts.Addr == "" {
		return nil, errors.New("health endpoint: no address to listen on")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint: listen %s: %w", s.opts.Addr, err)
	}
	return ln, nil
}

// serve answers on ln until ctx ends, then shuts down gracefully (logging
// what went wrong doing so) and returns nil; it closes ln. It returns an
// error only when serving failed before ctx ended.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		// Checks under way end with ctx too.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("health endpoint: serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
		s.log.Warn("health endpoint shutdown", slog.Any("error", err))
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("health endpoint serve", slog.Any("error", err))
	}
	return nil
}
