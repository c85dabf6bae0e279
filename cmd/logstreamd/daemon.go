package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// runner is one component's Run, named for logs.
type runner struct {
	name string
	run  func(ctx context.Context) error
}

// daemon holds the built components. The add* functions, one file per
// component, register runners and HTTP handlers.
type daemon struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	bus      *bus.Bus
	verifier *auth.Verifier
	mux      *http.ServeMux
	httpLn   net.Listener
	httpSrv  *http.Server

	sources  []runner // stopped first
	delivery []runner // stopped after the publisher drained
	// onShutdown runs when delivery stops, before the HTTP server's
	// Shutdown (which does not close hijacked connections).
	onShutdown []func(ctx context.Context)
	// closers release what a built component holds (listeners) when a
	// later one fails to build and the daemon never runs.
	closers []func()

	ready atomic.Bool
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newDaemon builds every component. Errors here (port in use, unwritable
// state directory, bad certificate) stop the start with one clear line.
func newDaemon(ctx context.Context, cfg Config, logOut io.Writer) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: newLogger(cfg.Log, logOut), reg: prometheus.NewRegistry(), mux: http.NewServeMux()}
	d.reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err == nil {
			return
		}
		for _, c := range d.closers {
			c()
		}
		if d.httpLn != nil {
			d.httpLn.Close()
		}
		if d.bus != nil {
			d.bus.Close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if d.verifier, err = auth.New(cfg.Auth); err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if d.bus, err = bus.Open(octx, cfg.Bus, cfg.StateDir, d.log, d.reg); err != nil {
		return nil, err
	}
	for _, add := range []func() error{d.addSyslog, d.addJournald, d.addHTTP, d.addWeb, d.addWebSocket, d.addGRPC} {
		if err := add(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// run runs every component until ctx ends or one fails, then stops them
// in order: sources, the publisher's drain, delivery, the bus.
func (d *daemon) run(ctx context.Context) error {
	srcCtx, stopSources := context.WithCancel(context.Background())
	delCtx, stopDelivery := context.WithCancel(context.Background())
	defer stopSources()
	defer stopDelivery()
	failed := make(chan error, len(d.sources)+len(d.delivery))
	start := func(g *errgroup.Group, ctx context.Context, rs []runner) {
		for _, r := range rs {
			g.Go(func() error {
				err := r.run(ctx)
				if err != nil && ctx.Err() == nil {
					err = fmt.Errorf("%s: %w", r.name, err)
					failed <- err
					return err
				}
				return nil
			})
		}
	}
	var srcGroup, delGroup errgroup.Group
	start(&delGroup, delCtx, d.delivery)
	start(&srcGroup, srcCtx, d.sources)
	d.ready.Store(true)
	_, _ = sd.SdNotify(false, sd.SdNotifyReady)
	stopWatchdog := d.watchdog()
	d.log.Info("logstreamd ready", "version", version, "state_dir", d.cfg.StateDir,
		"nats", d.bus.ClientURL(), "http", d.cfg.HTTP.Listen, "grpc", d.cfg.GRPC.Listen)

	var runErr error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down", "reason", context.Cause(ctx))
	case runErr = <-failed:
		d.log.Error("component failed, shutting down", "err", runErr)
	}
	d.ready.Store(false)
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	stopWatchdog()

	deadline, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
	defer cancel()
	stopSources()
	waitGroup(deadline, &srcGroup, d.log, "sources")
	if err := d.bus.Publisher().Close(deadline); err != nil {
		d.log.Error("publisher drain incomplete", "err", err)
	} else {
		d.log.Info("publisher drained")
	}
	for _, f := range d.onShutdown {
		f(deadline)
	}
	stopDelivery()
	waitGroup(deadline, &delGroup, d.log, "delivery")
	d.bus.Close()
	d.log.Info("stopped")
	return runErr
}

func waitGroup(ctx context.Context, g *errgroup.Group, log *slog.Logger, what string) {
	done := make(chan struct{})
	go func() { _ = g.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Error("shutdown deadline passed before these stopped", "components", what)
	}
}

// watchdog pings systemd's watchdog while the bus is healthy.
func (d *daemon) watchdog() (stop func()) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if d.bus.Healthy() {
					_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
				}
			}
		}
	}()
	return func() { close(done) }
}

// addHTTP binds the HTTP listener and serves /metrics, /healthz and
// /readyz; the dashboard and /ws are added to the same mux.
func (d *daemon) addHTTP() error {
	if d.cfg.HTTP.Listen == "" {
		return nil
	}
	tc, err := d.cfg.HTTP.TLS.Load("http.tls")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	d.httpLn = ln
	d.mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	d.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	d.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() || !d.bus.Healthy() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	d.httpSrv = &http.Server{
		Handler:           d.mux,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	d.delivery = append(d.delivery, runner{name: "http", run: func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() {
			if tc != nil {
				errc <- d.httpSrv.ServeTLS(ln, "", "")
			} else {
				errc <- d.httpSrv.Serve(ln)
			}
		}()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.httpSrv.Shutdown(sctx); err != nil {
			d.httpSrv.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}})
	d.log.Info("http listening", "addr", ln.Addr().String(), "tls", tc != nil)
	return nil
}
