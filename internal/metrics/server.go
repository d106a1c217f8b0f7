package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lullhq/lull/internal/startstop"
	"github.com/lullhq/lull/internal/valutil"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Addr is the host:port Start listens on (METRICS_ADDR; port 0 picks
	// a free one, see Server.Addr). Start refuses an empty Addr.
	Addr string
	// Gatherer is what GET /metrics serves (API.Gatherer, Worker.Gatherer).
	Gatherer prometheus.Gatherer
	// Logger receives server errors. Nil means slog.Default().
	Logger *slog.Logger
}

// Server serves GET /metrics on an address of its own, never the webhook
// port. It is a startstop.Service: Start binds Addr (a taken port is
// Start's error, so a process fails at start rather than run unobserved)
// and serves; Stop shuts the server down gracefully.
type Server struct {
	startstop.BaseStartStop

	opts ServerOptions
	log  *slog.Logger

	mu   sync.Mutex
	addr string
}

// NewServer returns a Server; nothing listens until Start.
func NewServer(opts ServerOptions) *Server {
	opts.Logger = valutil.ValOrDefault(opts.Logger, slog.Default())
	return &Server{opts: opts, log: opts.Logger.With(slog.String("component", "metrics"))}
}

// maxScrapes bounds the scrapes served at once; more are answered 503.
const maxScrapes = 4

// Handler serves GET /metrics; every other path is 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
	}))
	return mux
}

// Start binds Options.Addr now and serves in the background until Stop
// (or the end of ctx). It returns the bind error, e.g. for a taken port.
func (s *Server) Start(ctx context.Context) error {
	ctx, ok, started, stopped := s.StartInit(ctx)
	if !ok {
		return nil
	}
	if s.opts.Addr == "" || s.opts.Gatherer == nil {
		stopped()
		return errors.New("metrics: an address and a gatherer are required")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		stopped()
		return fmt.Errorf("metrics: listen %s: %w", s.opts.Addr, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	go func() {
		started()
		defer stopped()
		s.serve(ctx, ln)
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

// shutdownTimeout bounds how long Stop waits for scrapes under way.
const shutdownTimeout = 5 * time.Second

// serve answers on ln until ctx ends, then shuts down gracefully; it
// closes ln. A serving error ends it early, logged: the process goes on,
// unobserved.
func (s *Server) serve(ctx context.Context, ln net.Listener) {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		s.log.Error("metrics endpoint stopped", slog.Any("err", err))
		return
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
		s.log.Warn("metrics endpoint shutdown", slog.Any("err", err))
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("metrics endpoint serve", slog.Any("err", err))
	}
}
