// Package websocket serves the live, filtered, resumable stream of entries
// to browsers over WebSocket at /ws.
//
// This is a placeholder: the endpoint is built in its own issue.
package websocket

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the websocket section of the daemon's configuration.
type Config struct{}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config { return Config{} }

// Validate checks c; errors start with the key path.
func (c *Config) Validate() error { return nil }

// Subscriber is what the handler reads entries from; *bus.Bus is one.
type Subscriber interface {
	Subscribe(ctx context.Context, f bus.Filter, start bus.Start, opts bus.SubscribeOptions) (*bus.Subscription, error)
}

// Handler serves /ws.
type Handler struct{}

// New returns a Handler.
func New(cfg Config, sub Subscriber, verifier *auth.Verifier, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	return &Handler{}, nil
}

// ServeHTTP upgrades the request to a WebSocket.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}

// Shutdown closes every WebSocket with 1001 (going away).
func (h *Handler) Shutdown(ctx context.Context) error { return nil }
