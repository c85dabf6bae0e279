// Package grpc serves the live, filtered, resumable stream of entries to
// programs over gRPC.
//
// This is a placeholder: the service is built in its own issue.
package grpc

import (
	"context"
	"log/slog"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the grpc section of the daemon's configuration.
type Config struct {
	// Listen is the address to serve on; empty disables gRPC.
	Listen string `yaml:"listen"`
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config { return Config{Listen: "127.0.0.1:9514"} }

// Validate checks c; errors start with the key path.
func (c *Config) Validate() error { return nil }

// Subscriber is what the server reads entries from; *bus.Bus is one.
type Subscriber interface {
	Subscribe(ctx context.Context, f bus.Filter, start bus.Start, opts bus.SubscribeOptions) (*bus.Subscription, error)
}

// Server serves the gRPC API.
type Server struct{}

// New returns a Server.
func New(cfg Config, sub Subscriber, verifier *auth.Verifier, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	return &Server{}, nil
}

// Run serves until ctx ends, then stops gracefully.
func (s *Server) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
