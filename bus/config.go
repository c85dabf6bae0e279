package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/logstream/logstream/internal/config"
)

// Config is the bus section of the daemon's configuration. The zero value
// of each field means its default, applied by Open (see Defaults).
type Config struct {
	// Prefix is the first subject token (or tokens). Default "logs".
	Prefix string `yaml:"prefix"`
	// JetStream selects at-least-once publishing into the LOGS stream
	// (true, the default) or core NATS (false): at-most-once, no stream,
	// no history, no resume, the highest rate.
	JetStream *bool `yaml:"jetstream"`

	// URLs of an existing NATS cluster. Empty (the default) starts the
	// embedded server instead.
	URLs []string `yaml:"urls"`
	// Credentials for URLs (all optional).
	User        string `yaml:"user"`
	Password    string `yaml:"password"`
	Token       string `yaml:"token"`
	Credentials string `yaml:"credentials"` // a .creds file (JWT + nkey seed)
	NKeyFile    string `yaml:"nkey_file"`   // a file holding an nkey seed
	TLS         TLS    `yaml:"tls"`

	// Embedded configures the server started when URLs is empty.
	Embedded Embedded `yaml:"embedded"`
	// Stream configures the LOGS stream, created or updated at start.
	Stream StreamConfig `yaml:"stream"`
	// Publish configures the publisher.
	Publish PublishConfig `yaml:"publish"`
}

// TLS configures the client side of TLS to an external NATS server.
type TLS struct {
	CAFile   string `yaml:"ca_file"`   // CA bundle to verify the server; empty: system roots
	CertFile string `yaml:"cert_file"` // client certificate, for mutual TLS
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
}

// Embedded configures the in-process nats-server.
type Embedded struct {
	// Listen is the client address; port -1 picks a free port. The
	// daemon's default is "127.0.0.1:4222"; empty means in-process only,
	// no TCP port (the zero value, for programs embedding the bus).
	Listen string `yaml:"listen"`
	// StoreDir holds JetStream's files. Default "<state_dir>/nats".
	StoreDir string `yaml:"store_dir"`
	// MaxStore caps JetStream file storage. Default 4GiB.
	MaxStore config.ByteSize `yaml:"max_store"`
	// MaxMemory caps JetStream memory storage. Default 256MiB.
	MaxMemory config.ByteSize `yaml:"max_memory"`
	// LogLevel of the server's own log routed into slog: "warn" (default),
	// "info" or "debug".
	LogLevel string `yaml:"log_level"`
}

// StreamConfig configures the LOGS stream.
type StreamConfig struct {
	Name string `yaml:"name"` // default "LOGS"
	// MaxAge drops entries older than this. Default 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes drops the oldest entries past this size. Default 1GiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for
	// deduplication. Default 2m. The server keeps every ID of the window
	// in memory: about 100 bytes an entry.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Replicas for a clustered server. Default 1.
	Replicas int `yaml:"replicas"`
}

// PublishConfig configures the publisher.
type PublishConfig struct {
	// Connections to publish over, entries spread by subject hash
	// (nats-server caches 512 subjects a connection). Default 4.
	Connections int `yaml:"connections"`
	// MaxInFlight is how many entries may await their acknowledgement;
	// Publish blocks past it. Default 8192.
	MaxInFlight int `yaml:"max_in_flight"`
	// AckTimeout after which an unacknowledged entry is sent again.
	// Default 5s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// GenerateIDs gives entries that have no ID of their own (syslog) a
	// generated Nats-Msg-Id, so that an entry sent again after a lost
	// acknowledgement is stored once. Off by default: the stream's
	// duplicate tracking costs about 40% of JetStream throughput, and
	// without it such an entry may, rarely, be stored twice (never lost).
	// Entries with an ID (journald) always carry it.
	GenerateIDs bool `yaml:"generate_ids"`
}

// DefaultListen is the embedded server's client address in the daemon.
const DefaultListen = "127.0.0.1:4222"

// Defaults returns c with every zero field set to its default, except
// Embedded.Listen, whose zero value means "no TCP port". stateDir
// is the daemon's state directory, used for the embedded store.
func (c Config) Defaults(stateDir string) Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.JetStream == nil {
		t := true
		c.JetStream = &t
	}
	if c.Embedded.StoreDir == "" && stateDir != "" {
		c.Embedded.StoreDir = stateDir + "/nats"
	}
	if c.Embedded.MaxStore == 0 {
		c.Embedded.MaxStore = 4 << 30
	}
	if c.Embedded.MaxMemory == 0 {
		c.Embedded.MaxMemory = 256 << 20
	}
	if c.Embedded.LogLevel == "" {
		c.Embedded.LogLevel = "warn"
	}
	if c.Stream.Name == "" {
		c.Stream.Name = "LOGS"
	}
	if c.Stream.MaxAge == 0 {
		c.Stream.MaxAge = 24 * time.Hour
	}
	if c.Stream.MaxBytes == 0 {
		c.Stream.MaxBytes = 1 << 30
	}
	if c.Stream.DuplicateWindow == 0 {
		c.Stream.DuplicateWindow = 2 * time.Minute
	}
	if c.Stream.Replicas == 0 {
		c.Stream.Replicas = 1
	}
	if c.Publish.Connections == 0 {
		c.Publish.Connections = 4
	}
	if c.Publish.MaxInFlight == 0 {
		c.Publish.MaxInFlight = 8192
	}
	if c.Publish.AckTimeout == 0 {
		c.Publish.AckTimeout = 5 * time.Second
	}
	return c
}

// Validate checks a Config after Defaults; errors name the key.
func (c *Config) Validate() error {
	if err := ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("bus.prefix: %w", err)
	}
	if len(c.URLs) == 0 {
		if c.Embedded.Listen != "" {
			host, port, err := net.SplitHostPort(c.Embedded.Listen)
			if err != nil {
				return fmt.Errorf("bus.embedded.listen: %q: %v", c.Embedded.Listen, err)
			}
			if p, err := strconv.Atoi(port); err != nil || p < -1 || p > 65535 {
				return fmt.Errorf("bus.embedded.listen: bad port %q", port)
			}
			if host == "" {
				return fmt.Errorf("bus.embedded.listen: %q has no host; use 127.0.0.1 (local only) or 0.0.0.0 (every interface)", c.Embedded.Listen)
			}
		}
		if c.Embedded.StoreDir == "" && c.UseJetStream() {
			return fmt.Errorf("bus.embedded.store_dir: empty and no state directory")
		}
		switch c.Embedded.LogLevel {
		case "warn", "info", "debug":
		default:
			return fmt.Errorf("bus.embedded.log_level: %q is not one of warn, info, debug", c.Embedded.LogLevel)
		}
		if c.Stream.Replicas != 1 {
			return fmt.Errorf("bus.stream.replicas: %d needs a cluster (bus.urls); the embedded server has one replica", c.Stream.Replicas)
		}
		if c.UseJetStream() && int64(c.Stream.MaxBytes) > int64(c.Embedded.MaxStore) {
			return fmt.Errorf("bus.stream.max_bytes: %v is more than bus.embedded.max_store %v", c.Stream.MaxBytes, c.Embedded.MaxStore)
		}
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		return fmt.Errorf("bus.stream.replicas: %d out of range 1-5", c.Stream.Replicas)
	}
	if c.Stream.MaxAge < 0 || c.Stream.MaxBytes < 0 || c.Stream.DuplicateWindow < 0 {
		return fmt.Errorf("bus.stream: negative limit")
	}
	if c.Stream.DuplicateWindow > c.Stream.MaxAge {
		return fmt.Errorf("bus.stream.duplicate_window: %v is longer than max_age %v", c.Stream.DuplicateWindow, c.Stream.MaxAge)
	}
	if c.Publish.Connections < 1 || c.Publish.Connections > 64 {
		return fmt.Errorf("bus.publish.connections: %d out of range 1-64", c.Publish.Connections)
	}
	if c.Publish.MaxInFlight < 1 {
		return fmt.Errorf("bus.publish.max_in_flight: %d must be positive", c.Publish.MaxInFlight)
	}
	if c.Publish.AckTimeout < 10*time.Millisecond {
		return fmt.Errorf("bus.publish.ack_timeout: %v is too short", c.Publish.AckTimeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("bus.tls: cert_file and key_file go together")
	}
	if c.Token != "" && c.User != "" {
		return fmt.Errorf("bus.token: set either token or user/password, not both")
	}
	return nil
}

// UseJetStream reports whether entries go through the JetStream stream.
func (c *Config) UseJetStream() bool { return c.JetStream == nil || *c.JetStream }
