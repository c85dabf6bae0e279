// Package syslog receives syslog (RFC 5424 and RFC 3164) over UDP, TCP,
// TLS and unix sockets and publishes each message as a bus.Entry.
//
// This is a placeholder: the receiver is built in its own issue.
package syslog

import (
	"context"
	"log/slog"

	"github.com/logstream/logstream/bus"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the syslog section of the daemon's configuration.
type Config struct {
	// Enabled turns the receiver on.
	Enabled bool `yaml:"enabled"`
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config { return Config{} }

// Validate checks c; errors start with the key path.
func (c *Config) Validate() error { return nil }

// Sink is what the receiver publishes to; *bus.Publisher is one.
type Sink interface {
	Publish(ctx context.Context, e bus.Entry) error
	Flush(ctx context.Context) error
}

// Server receives syslog.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns a Server.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	return &Server{cfg: cfg, log: log}, nil
}

// Run receives until ctx ends, then publishes what it has read and
// returns.
func (s *Server) Run(ctx context.Context, sink Sink) error {
	<-ctx.Done()
	return nil
}
