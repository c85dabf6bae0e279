// Package grpc serves the live, filtered, resumable stream of entries to
// programs over gRPC: the versioned API logstream.v1.LogService
// (logstreampb) and the legacy unversioned LogService (legacypb), plus the
// standard health service and server reflection.
//
// Each stream is one bus.Subscription: history is read at the client's
// pace, live entries wait in the subscription's bounded buffer, and a
// stream that cannot keep up loses its oldest entries and is told how many
// (a dropped control message), or is ended with RESOURCE_EXHAUSTED when
// the policy says so. A stream never slows the others. An entry is
// decoded and encoded once however many streams send it.
//
// Concurrency: New binds the listener; Run serves until its context ends
// and returns once every stream handler has returned. Shutdown may be
// called from any goroutine, once or more.
package grpc

//go:generate sh generate.sh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"github.com/logstream/logstream/internal/auth"
	"github.com/logstream/logstream/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Config is the grpc section of the daemon's configuration. A zero field
// means its default (see DefaultConfig), except Listen.
type Config struct {
	// Listen is the address to serve on, host:port; empty disables gRPC.
	// Default 127.0.0.1:9514.
	Listen string `yaml:"listen"`
	// TLS on the listener; off while tls.cert_file is empty. Setting
	// tls.client_ca_file asks clients for certificates.
	TLS config.ServerTLS `yaml:"tls"`
	// MaxStreams is how many streams may be open at once, over all
	// clients; one more is refused with RESOURCE_EXHAUSTED. Default 1000.
	MaxStreams int `yaml:"max_streams"`
	// QueueEntries and QueueBytes bound each stream's queue of live
	// entries waiting to be sent (entry JSON plus about 100 bytes each).
	// Default 4096 entries, 1MiB.
	QueueEntries int             `yaml:"queue_entries"`
	QueueBytes   config.ByteSize `yaml:"queue_bytes"`
	// SlowPolicy says what happens to a stream whose queue is full:
	// "drop" (default) drops its oldest entries and sends a dropped
	// control message with the count; "disconnect" ends the stream with
	// RESOURCE_EXHAUSTED (the client resumes with after_seq and reads what
	// it missed from history). A client may ask for "disconnect" itself
	// (disconnect_when_slow).
	SlowPolicy string `yaml:"slow_policy"`
	// MaxRecvMsgSize is the largest request accepted. Default 64KiB.
	MaxRecvMsgSize config.ByteSize `yaml:"max_recv_msg_size"`
	// MaxSendMsgSize is the largest message sent; a larger entry is
	// skipped and counted in a dropped message with reason "too_large".
	// Default 4MiB.
	MaxSendMsgSize config.ByteSize `yaml:"max_send_msg_size"`
	// Keepalive detects dead clients.
	Keepalive KeepaliveConfig `yaml:"keepalive"`
	// ShutdownGrace is how long open streams have, once the server stops,
	// to send what their queue holds and end with UNAVAILABLE before their
	// connections are closed. Default 5s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// KeepaliveConfig is the server's keepalive enforcement.
type KeepaliveConfig struct {
	// Time without any frame from a client after which the server pings
	// it. Default 30s; at least 1s.
	Time time.Duration `yaml:"time"`
	// Timeout for the ping's answer: a client that does not answer is
	// considered dead, its connection closed and its streams and
	// subscriptions released. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MinClientTime is the shortest ping interval a client may use; one
	// pinging more often is disconnected. Default 10s.
	MinClientTime time.Duration `yaml:"min_client_time"`
}

// Slow policies.
const (
	PolicyDrop       = "drop"
	PolicyDisconnect = "disconnect"
)

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:9514",
		MaxStreams:     1000,
		QueueEntries:   4096,
		QueueBytes:     1 << 20,
		SlowPolicy:     PolicyDrop,
		MaxRecvMsgSize: 64 << 10,
		MaxSendMsgSize: 4 << 20,
		Keepalive:      KeepaliveConfig{Time: 30 * time.Second, Timeout: 10 * time.Second, MinClientTime: 10 * time.Second},
		ShutdownGrace:  5 * time.Second,
	}
}

// withDefaults returns c with every zero field but Listen at its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxStreams == 0 {
		c.MaxStreams = d.MaxStreams
	}
	if c.QueueEntries == 0 {
		c.QueueEntries = d.QueueEntries
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = d.QueueBytes
	}
	if c.SlowPolicy == "" {
		c.SlowPolicy = d.SlowPolicy
	}
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = d.MaxRecvMsgSize
	}
	if c.MaxSendMsgSize == 0 {
		c.MaxSendMsgSize = d.MaxSendMsgSize
	}
	if c.Keepalive.Time == 0 {
		c.Keepalive.Time = d.Keepalive.Time
	}
	if c.Keepalive.Timeout == 0 {
		c.Keepalive.Timeout = d.Keepalive.Timeout
	}
	if c.Keepalive.MinClientTime == 0 {
		c.Keepalive.MinClientTime = d.Keepalive.MinClientTime
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}

// Validate checks c (zero fields taking their defaults); errors start
// with the key path.
func (c *Config) Validate() error {
	v := c.withDefaults()
	if v.Listen != "" {
		host, port, err := net.SplitHostPort(v.Listen)
		if err != nil {
			return fmt.Errorf("grpc.listen: %q: %v", v.Listen, err)
		}
		if host == "" {
			return fmt.Errorf("grpc.listen: %q has no host; use 127.0.0.1 (local only) or 0.0.0.0 (every interface)", v.Listen)
		}
		if _, err := net.LookupPort("tcp", port); err != nil {
			return fmt.Errorf("grpc.listen: bad port %q", port)
		}
	}
	if err := v.TLS.Validate("grpc.tls"); err != nil {
		return err
	}
	switch {
	case v.MaxStreams < 0:
		return fmt.Errorf("grpc.max_streams: %d must be positive", v.MaxStreams)
	case v.QueueEntries < 0:
		return fmt.Errorf("grpc.queue_entries: %d must be positive", v.QueueEntries)
	case v.QueueBytes < 0:
		return fmt.Errorf("grpc.queue_bytes: %v must be positive", v.QueueBytes)
	case v.QueueBytes > 1<<30:
		return fmt.Errorf("grpc.queue_bytes: %v is more than 1GiB a stream", v.QueueBytes)
	case v.SlowPolicy != PolicyDrop && v.SlowPolicy != PolicyDisconnect:
		return fmt.Errorf("grpc.slow_policy: %q is not drop or disconnect", v.SlowPolicy)
	case v.MaxRecvMsgSize < 1<<10 || v.MaxRecvMsgSize > 64<<20:
		return fmt.Errorf("grpc.max_recv_msg_size: %v out of range 1KiB-64MiB", v.MaxRecvMsgSize)
	case v.MaxSendMsgSize < 64<<10 || v.MaxSendMsgSize > 256<<20:
		return fmt.Errorf("grpc.max_send_msg_size: %v out of range 64KiB-256MiB", v.MaxSendMsgSize)
	case v.Keepalive.Time < time.Second:
		return fmt.Errorf("grpc.keepalive.time: %v is shorter than 1s", v.Keepalive.Time)
	case v.Keepalive.Timeout < 0:
		return fmt.Errorf("grpc.keepalive.timeout: %v must be positive", v.Keepalive.Timeout)
	case v.Keepalive.MinClientTime < 0:
		return fmt.Errorf("grpc.keepalive.min_client_time: %v must be positive", v.Keepalive.MinClientTime)
	case v.ShutdownGrace < 0:
		return fmt.Errorf("grpc.shutdown_grace: %v must be positive", v.ShutdownGrace)
	}
	return nil
}

// Subscriber is what the server reads entries from; *bus.Bus is one.
type Subscriber interface {
	Subscribe(ctx context.Context, f bus.Filter, start bus.Start, opts bus.SubscribeOptions) (*bus.Subscription, error)
	// Prefix is the subject prefix, to count the subjects of a filter.
	Prefix() string
}

// healthReporter is implemented by a Subscriber that knows whether it is
// connected (*bus.Bus); the health service follows it.
type healthReporter interface {
	Healthy() bool
}

// Service names, as the health service and reflection know them.
const (
	ServiceV1     = "logstream.v1.LogService"
	ServiceLegacy = "LogService"
)

// Server serves the gRPC API.
type Server struct {
	cfg      Config
	sub      Subscriber
	verifier *auth.Verifier
	log      *slog.Logger
	metrics  *metrics
	ln       net.Listener
	srv      *grpclib.Server
	health   *health.Server
	v1Cache  encCache
	legCache encCache

	slots chan struct{} // one token per stream being served (max_streams)
	open  atomic.Int64  // streams subscribed
	// senders counts the streams' sending goroutines: one may outlive its
	// handler briefly, until gRPC cancels the stream.
	senders sync.WaitGroup

	stopCtx  context.Context // cancelled when the server stops: streams end
	stop     context.CancelFunc
	stopOnce sync.Once
	stopped  chan struct{} // closed when the grpc server has stopped
}

// New validates cfg, binds the listener and returns a Server ready to
// Run. verifier may be nil (no tokens), reg may be nil (no metrics
// exported).
func New(cfg Config, sub Subscriber, verifier *auth.Verifier, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Listen == "" {
		return nil, errors.New("grpc.listen: empty (gRPC disabled)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tc, err := cfg.TLS.Load("grpc.tls")
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, sub: sub, verifier: verifier, log: log, metrics: m,
		slots:   make(chan struct{}, cfg.MaxStreams),
		stopped: make(chan struct{}),
		health:  health.NewServer(),
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	opts := []grpclib.ServerOption{
		grpclib.ForceServerCodecV2(codec{}),
		grpclib.MaxRecvMsgSize(int(cfg.MaxRecvMsgSize)),
		grpclib.MaxSendMsgSize(int(cfg.MaxSendMsgSize)),
		grpclib.MaxConcurrentStreams(uint32(cfg.MaxStreams) + 16), // + health watches
		grpclib.KeepaliveParams(keepalive.ServerParameters{Time: cfg.Keepalive.Time, Timeout: cfg.Keepalive.Timeout}),
		grpclib.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.Keepalive.MinClientTime, PermitWithoutStream: true}),
		grpclib.WaitForHandlers(true),
	}
	if tc != nil {
		opts = append(opts, grpclib.Creds(credentials.NewTLS(tc)))
	}
	s.srv = grpclib.NewServer(opts...)
	pb.RegisterLogServiceServer(s.srv, v1Service{s: s})
	legacypb.RegisterLogServiceServer(s.srv, legacyService{s: s})
	healthpb.RegisterHealthServer(s.srv, s.health)
	reflection.Register(s.srv)
	for _, name := range []string{"", ServiceV1, ServiceLegacy} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("grpc.listen: %w", err)
	}
	s.ln = ln
	s.log.Info("grpc listening", "addr", ln.Addr().String(), "tls", tc != nil, "client_certs", tc != nil && tc.ClientCAs != nil, "auth", verifier.Enabled())
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Streams returns how many streams are open: subscribed, and not yet
// released.
func (s *Server) Streams() int { return int(s.open.Load()) }

// Run serves until ctx ends or Shutdown is called, then ends every stream
// (see Shutdown) and returns once every handler has returned.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	var watch sync.WaitGroup
	if hr, ok := s.sub.(healthReporter); ok {
		watch.Go(func() { s.followHealth(hr) })
	}
	var err error
	select {
	case <-ctx.Done():
	case <-s.stopCtx.Done():
	case err = <-errc:
		errc <- err
		err = fmt.Errorf("grpc serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	s.Shutdown(sctx)
	cancel()
	<-s.stopped
	<-errc
	watch.Wait()
	s.senders.Wait()
	return err
}

// Shutdown marks the service NOT_SERVING, tells every open stream to
// send what its queue holds and end with UNAVAILABLE, and waits for them
// until ctx ends or the shutdown grace passes; then it closes every
// connection. Serve (in Run) returns. It returns once the server has
// stopped.
func (s *Server) Shutdown(ctx context.Context) {
	s.stopOnce.Do(func() {
		s.health.Shutdown()
		s.stop()
		open := s.Streams()
		graceful := make(chan struct{})
		go func() { s.srv.GracefulStop(); close(graceful) }()
		t := time.NewTimer(s.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-graceful:
			s.log.Info("grpc stopped", "streams_ended", open)
		case <-ctx.Done():
			s.log.Warn("grpc shutdown deadline passed, closing connections", "streams", s.Streams())
		case <-t.C:
			s.log.Warn("grpc shutdown grace passed, closing connections", "streams", s.Streams())
		}
		s.srv.Stop()
		<-graceful
		close(s.stopped)
	})
	<-s.stopped
}

// followHealth sets the services NOT_SERVING while the bus is
// disconnected.
func (s *Server) followHealth(hr healthReporter) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := true
	for {
		select {
		case <-s.stopCtx.Done():
			return
		case <-t.C:
		}
		ok := hr.Healthy()
		if ok == last {
			continue
		}
		last = ok
		st := healthpb.HealthCheckResponse_SERVING
		if !ok {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if s.stopCtx.Err() != nil {
			return
		}
		for _, name := range []string{"", ServiceV1, ServiceLegacy} {
			s.health.SetServingStatus(name, st)
		}
	}
}
