package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts nats-server in this process: JetStream on with file
// storage under cfg.Embedded.StoreDir, listening on cfg.Embedded.Listen
// (or no TCP port when it is empty), NoSigs so that the daemon owns
// signals, and the server's log routed into slog.
func startEmbedded(cfg *Config, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "logstream",
		NoSigs:     true,
		MaxPayload: 8 << 20,
	}
	if cfg.Embedded.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, _ := net.SplitHostPort(cfg.Embedded.Listen)
		p, _ := strconv.Atoi(port)
		opts.Host, opts.Port = host, p
	}
	if cfg.UseJetStream() {
		if err := os.MkdirAll(cfg.Embedded.StoreDir, 0o750); err != nil {
			return nil, fmt.Errorf("bus: create store dir: %w", err)
		}
		// Probe writability here: nats-server reports it less clearly.
		f, err := os.CreateTemp(cfg.Embedded.StoreDir, ".probe-*")
		if err != nil {
			return nil, fmt.Errorf("bus: store dir %s is not writable: %w", cfg.Embedded.StoreDir, err)
		}
		f.Close()
		os.Remove(f.Name())
		opts.JetStream = true
		opts.StoreDir = cfg.Embedded.StoreDir
		opts.JetStreamMaxStore = int64(cfg.Embedded.MaxStore)
		opts.JetStreamMaxMemory = int64(cfg.Embedded.MaxMemory)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats-server: %w", err)
	}
	lg := &natsLogger{log: log.With("component", "nats-server")}
	lg.info = cfg.Embedded.LogLevel != "warn"
	ns.SetLoggerV2(lg, cfg.Embedded.LogLevel == "debug", false, false)
	// Start listens synchronously enough for errors to be reported through
	// the logger; a port in use makes ReadyForConnections fail.
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		if e := lg.err(); e != "" {
			return nil, fmt.Errorf("bus: embedded nats-server did not start: %s", e)
		}
		return nil, fmt.Errorf("bus: embedded nats-server did not start on %q within 10s", cfg.Embedded.Listen)
	}
	return ns, nil
}

// natsLogger routes nats-server's log into slog.
type natsLogger struct {
	log     *slog.Logger
	info    bool
	mu      sync.Mutex
	lastErr string // the last error or fatal line, for start-up failures
}

func (l *natsLogger) setErr(s string) {
	l.mu.Lock()
	l.lastErr = s
	l.mu.Unlock()
	l.log.Error(s)
}

func (l *natsLogger) err() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *natsLogger) Noticef(format string, v ...any) {
	if l.info {
		l.log.Info(fmt.Sprintf(format, v...))
	}
}
func (l *natsLogger) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any) { l.setErr(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any) { l.setErr(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}
func (l *natsLogger) Tracef(format string, v ...any) {}

// shutdownEmbedded stops the server and waits for it, bounded by ctx.
func shutdownEmbedded(ctx context.Context, ns *server.Server) {
	done := make(chan struct{})
	go func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
