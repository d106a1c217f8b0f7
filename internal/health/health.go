// Package health serves the worker's health endpoints: GET /healthz (the
// process is alive) and GET /readyz (it can do its work: Redis reachable
// and taking writes, and the RabbitMQ consumer subscribed).
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
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Options configure a Server.
type Options struct {
	// Redis is the worker's client; /readyz writes a probe key with it.
	Redis rueidis.Client
	// Namespace names the probe key, <Namespace>:health.
	Namespace string
	// ConsumerReady reports whether the RabbitMQ consumer is subscribed;
	// nil leaves it out of readiness.
	ConsumerReady func() bool
	// CheckTimeout bounds the Redis probe of one /readyz. Default 1s.
	CheckTimeout time.Duration
	// Logger receives server errors. Default slog.Default().
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
	opts     Options
	key      string
	log      *slog.Logger
	stopping atomic.Bool
}

// probeTTL keeps the probe key from outliving the worker by much.
const probeTTL = 10 * time.Second

// New returns a Server; nothing listens until Serve.
func New(opts Options) *Server {
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
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

// Listen binds addr (host:port) now, so a taken port stops the worker at
// start rather than leaving it without health checks.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint: listen %s: %w", addr, err)
	}
	return ln, nil
}

// shutdownTimeout bounds how long Serve waits for requests under way once
// ctx ended; a check takes at most CheckTimeout.
const shutdownTimeout = 5 * time.Second

// Serve answers on ln until ctx ends, then shuts down gracefully and
// returns nil; it closes ln. It returns an error only when serving failed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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
	err := srv.Shutdown(shutCtx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("health endpoint: shutdown: %w", err)
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("health endpoint: serve: %w", serr))
	}
	return err
}
