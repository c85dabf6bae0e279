package websocket

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/logstream/logstream/internal/config"
)

// Slow-client policies.
const (
	// PolicyDrop drops the oldest queued entries of a client that cannot
	// keep up and tells it with a "dropped" frame.
	PolicyDrop = "drop"
	// PolicyDisconnect closes a client's socket (code 4008) the first time
	// its queue overflows.
	PolicyDisconnect = "disconnect"
)

// Config is the websocket section of the daemon's configuration. A zero
// field means its default (see DefaultConfig); New applies them.
type Config struct {
	// AllowedOrigins lists the Origin values browsers may connect from,
	// as "scheme://host[:port]" (compared case-insensitively), or "*" for
	// any. Empty (the default) allows the same origin only: the Origin's
	// host[:port] equals the request's Host. Requests without an Origin
	// header (programs, not browsers) are always allowed; a refused Origin
	// gets HTTP 403.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxClients is the most WebSocket clients served at once; more are
	// refused with HTTP 503. Default 10000.
	MaxClients int `yaml:"max_clients"`
	// QueueBytes bounds each client's queue of entries waiting to be
	// written, in bytes (entry JSON plus about 100 bytes each). Default
	// 1MiB.
	QueueBytes config.ByteSize `yaml:"queue_bytes"`
	// QueueEntries bounds the same queue in entries. Default 4096.
	QueueEntries int `yaml:"queue_entries"`
	// SlowPolicy says what happens to a client whose queue overflows:
	// "drop" (default: the oldest entries are dropped and a "dropped"
	// frame says how many) or "disconnect" (close code 4008).
	SlowPolicy string `yaml:"slow_policy"`
	// SendBuffer sets the kernel send buffer (SO_SNDBUF) of each client's
	// socket, which holds what was written but not yet taken by the client
	// on top of the queue. Zero (the default) leaves the kernel's
	// autotuning, up to net.ipv4.tcp_wmem's maximum (4MiB on Debian); a
	// small value (64KiB) bounds the kernel memory of slow clients and
	// makes them see drops sooner, at the cost of throughput to clients
	// far away.
	SendBuffer config.ByteSize `yaml:"send_buffer"`
	// MaxBatch is the most entries in one "entries" frame. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// FrameInterval is the least time between two entries frames to one
	// client: entries that arrive sooner wait and share the next frame,
	// which saves frames and system calls when many clients are busy. An
	// entry after a quiet period is written at once. Default 10ms; a
	// negative value writes every batch at once.
	FrameInterval time.Duration `yaml:"frame_interval"`
	// PingInterval between WebSocket pings to each client. Default 20s.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PongTimeout is how long after a ping is due its pong may be late;
	// a peer silent for ping_interval + pong_timeout is closed. Default
	// 10s.
	PongTimeout time.Duration `yaml:"pong_timeout"`
	// WriteTimeout bounds each frame's write; a client that takes longer
	// to accept one is closed. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxMessageBytes is the read limit on a control message from a
	// client; a larger one closes the socket (code 1009). Default 16KiB.
	MaxMessageBytes config.ByteSize `yaml:"max_message_bytes"`
	// MaxBacklog is the largest backlog=N a client may ask for. Default
	// 10000.
	MaxBacklog int `yaml:"max_backlog"`
	// SubscribeRate is how many subscribe requests a second one client
	// may send after the first (burst 5). Default 2.
	SubscribeRate float64 `yaml:"subscribe_rate"`
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		MaxClients:      10000,
		QueueBytes:      1 << 20,
		QueueEntries:    4096,
		SlowPolicy:      PolicyDrop,
		MaxBatch:        256,
		FrameInterval:   10 * time.Millisecond,
		PingInterval:    20 * time.Second,
		PongTimeout:     10 * time.Second,
		WriteTimeout:    10 * time.Second,
		MaxMessageBytes: 16 << 10,
		MaxBacklog:      10000,
		SubscribeRate:   2,
	}
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxClients == 0 {
		c.MaxClients = d.MaxClients
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = d.QueueBytes
	}
	if c.QueueEntries == 0 {
		c.QueueEntries = d.QueueEntries
	}
	if c.SlowPolicy == "" {
		c.SlowPolicy = d.SlowPolicy
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.FrameInterval == 0 {
		c.FrameInterval = d.FrameInterval
	}
	if c.PingInterval == 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = d.PongTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.MaxBacklog == 0 {
		c.MaxBacklog = d.MaxBacklog
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = d.SubscribeRate
	}
	return c
}

// Validate checks c; errors start with the key path. Zero fields are
// valid: they mean the default.
func (c *Config) Validate() error {
	for i, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("websocket.allowed_origins[%d]: %q is not an origin such as https://logs.example.com or *", i, o)
		}
	}
	type check struct {
		key string
		bad bool
		msg string
	}
	for _, k := range []check{
		{"max_clients", c.MaxClients < 0, "must not be negative"},
		{"queue_bytes", c.QueueBytes < 0 || c.QueueBytes > 0 && c.QueueBytes < 4<<10, "must be at least 4KiB"},
		{"queue_entries", c.QueueEntries < 0 || c.QueueEntries > 0 && c.QueueEntries < 16, "must be at least 16"},
		{"send_buffer", c.SendBuffer < 0 || c.SendBuffer > 0 && c.SendBuffer < 4<<10, "must be at least 4KiB"},
		{"max_batch", c.MaxBatch < 0 || c.MaxBatch > 10000, "must be between 1 and 10000"},
		{"frame_interval", c.FrameInterval > time.Second, "must be at most 1s"},
		{"ping_interval", c.PingInterval < 0 || c.PingInterval > 0 && c.PingInterval < 100*time.Millisecond, "must be at least 100ms"},
		{"pong_timeout", c.PongTimeout < 0 || c.PongTimeout > 0 && c.PongTimeout < 100*time.Millisecond, "must be at least 100ms"},
		{"write_timeout", c.WriteTimeout < 0 || c.WriteTimeout > 0 && c.WriteTimeout < 100*time.Millisecond, "must be at least 100ms"},
		{"max_message_bytes", c.MaxMessageBytes < 0 || c.MaxMessageBytes > 0 && c.MaxMessageBytes < 512, "must be at least 512"},
		{"max_backlog", c.MaxBacklog < 0, "must not be negative"},
		{"subscribe_rate", c.SubscribeRate < 0, "must not be negative"},
	} {
		if k.bad {
			return fmt.Errorf("websocket.%s: %s", k.key, k.msg)
		}
	}
	switch c.SlowPolicy {
	case "", PolicyDrop, PolicyDisconnect:
	default:
		return fmt.Errorf("websocket.slow_policy: %q is not drop or disconnect", c.SlowPolicy)
	}
	return nil
}

// originAllowed reports whether a browser at origin may connect to a
// request for host.
func (c *Config) originAllowed(origin, host string) bool {
	if origin == "" {
		return true
	}
	if len(c.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, host)
	}
	origin = strings.TrimSuffix(origin, "/")
	for _, o := range c.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}
