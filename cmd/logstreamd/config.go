package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc"
	"github.com/logstream/logstream/delivery/websocket"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/syslog"
	"github.com/logstream/logstream/internal/auth"
	"github.com/logstream/logstream/internal/config"
)

// Config is the daemon's YAML configuration: one section per component.
// Every key has a default; configs/logstreamd.yaml lists them all.
type Config struct {
	// StateDir holds the embedded NATS store and source cursors. Default
	// $STATE_DIRECTORY (set by systemd), else ~/.local/state/logstream.
	StateDir string `yaml:"state_dir"`
	// ShutdownTimeout bounds the drain on SIGTERM. Default 10s.
	ShutdownTimeout time.Duration    `yaml:"shutdown_timeout"`
	Log             LogConfig        `yaml:"log"`
	Bus             bus.Config       `yaml:"bus"`
	Syslog          syslog.Config    `yaml:"syslog"`
	Journald        journald.Config  `yaml:"journald"`
	HTTP            HTTPConfig       `yaml:"http"`
	WebSocket       websocket.Config `yaml:"websocket"`
	GRPC            grpc.Config      `yaml:"grpc"`
	Auth            auth.Config      `yaml:"auth"`
}

// LogConfig configures the daemon's own log (stderr).
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// HTTPConfig configures the HTTP server: dashboard, /ws, /metrics,
// /healthz, /readyz.
type HTTPConfig struct {
	// Listen address; empty disables the HTTP server. Default
	// 127.0.0.1:8514.
	Listen string           `yaml:"listen"`
	TLS    config.ServerTLS `yaml:"tls"`
}

func defaultConfig() Config {
	c := Config{
		ShutdownTimeout: 10 * time.Second,
		Log:             LogConfig{Level: "info", Format: "text"},
		Syslog:          syslog.DefaultConfig(),
		Journald:        journald.DefaultConfig(),
		HTTP:            HTTPConfig{Listen: "127.0.0.1:8514"},
		WebSocket:       websocket.DefaultConfig(),
		GRPC:            grpc.DefaultConfig(),
	}
	c.Bus.Embedded.Listen = bus.DefaultListen
	return c
}

// defaultStateDir is $STATE_DIRECTORY (the first of its list), else
// ~/.local/state/logstream.
func defaultStateDir() (string, error) {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		first, _, _ := strings.Cut(d, ":")
		return first, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("state_dir: not set, and neither $STATE_DIRECTORY nor $HOME is")
	}
	return filepath.Join(home, ".local", "state", "logstream"), nil
}

// loadConfig reads path (none: every default), applies defaults and
// validates. Errors name the key and, where the file has it, the line.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		root, err := config.Decode(data, &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		if err := cfg.finish(); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, config.WithLine(root, err))
		}
		return cfg, nil
	}
	if err := cfg.finish(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// finish applies the defaults that depend on other keys and validates
// every section.
func (c *Config) finish() error {
	if c.StateDir == "" {
		d, err := defaultStateDir()
		if err != nil {
			return err
		}
		c.StateDir = d
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout: %v must be positive", c.ShutdownTimeout)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	c.Bus = c.Bus.Defaults(c.StateDir)
	if err := c.Bus.Validate(); err != nil {
		return err
	}
	if err := c.HTTP.TLS.Validate("http.tls"); err != nil {
		return err
	}
	if _, err := auth.New(c.Auth); err != nil {
		return err
	}
	for _, v := range []interface{ Validate() error }{&c.Syslog, &c.Journald, &c.WebSocket, &c.GRPC} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}
