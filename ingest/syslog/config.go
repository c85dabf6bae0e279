package syslog

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/logstream/logstream/internal/config"
)

// Config is the syslog section of the daemon's configuration. Zero
// values mean the default, except where a field says otherwise.
type Config struct {
	// Enabled turns the receiver on. The daemon's default is true.
	Enabled bool `yaml:"enabled"`
	// Listeners to open; the daemon's default is UDP and TCP on
	// 127.0.0.1:5514.
	Listeners []Listener `yaml:"listeners"`

	// MaxMessageSize is the longest message kept, in bytes. Longer
	// messages are cut there (and counted as truncated), except an
	// octet-counted TCP frame announcing more, which closes its
	// connection. Default 64KiB; at most 512KiB (the bus's payload limit
	// is 1MiB).
	MaxMessageSize config.ByteSize `yaml:"max_message_size"`
	// MaxConnections per stream listener (tcp, tls, unix); connections
	// beyond it are accepted and closed at once. Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a stream connection that sent nothing for this
	// long. Zero (the default) never closes one.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// KeepAlive is the TCP keepalive idle time of tcp and tls
	// connections. Zero means 15s; negative turns keepalive off.
	KeepAlive time.Duration `yaml:"keepalive"`
	// HandshakeTimeout bounds a TLS handshake. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ReadBuffer is the socket receive buffer (SO_RCVBUF) asked for on
	// datagram listeners (udp, unixgram), in bytes; the size the kernel
	// grants is logged. Default 8MiB; the kernel may cap it at
	// net.core.rmem_max unless the daemon runs as root.
	ReadBuffer config.ByteSize `yaml:"read_buffer"`
	// QueueLength is how many datagrams a datagram listener holds
	// between its socket and the bus (about 100 bytes each besides the
	// message); beyond it (or beyond QueueBytes)
	// datagrams are dropped and counted. Default 65536.
	QueueLength int `yaml:"queue_length"`
	// QueueBytes bounds the same queue in bytes. Default 32MiB.
	QueueBytes config.ByteSize `yaml:"queue_bytes"`
	// MissingHost is the host of a message that names none: "peer" (the
	// default: the sender's IP address, or this machine's host name for
	// unix sockets) or "local" (this machine's host name).
	MissingHost string `yaml:"missing_host"`
	// Timezone of RFC 3164 time stamps, which carry none: "Local" (the
	// default), "UTC" or an IANA zone name such as "Europe/Berlin".
	Timezone string `yaml:"timezone"`
	// DrainTimeout bounds how long, at shutdown, what was read keeps
	// being published. Default 5s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	// Clock returns the current time; nil means time.Now. Tests set it
	// to check RFC 3164 year resolution.
	Clock func() time.Time `yaml:"-"`
}

// Listener is one socket to receive on.
type Listener struct {
	// Name identifies the listener in metrics and logs, and is the
	// FileDescriptorName= of a systemd socket unit whose socket, when the
	// daemon is socket-activated, is used instead of binding Address.
	Name string `yaml:"name"`
	// Protocol is udp, tcp, tls (RFC 5425), unixgram (a /dev/log-style
	// datagram socket) or unix (stream).
	Protocol string `yaml:"protocol"`
	// Address is host:port for udp, tcp and tls, a path for unixgram and
	// unix. It may be empty for a listener that only takes a
	// socket-activated socket.
	Address string `yaml:"address"`
	// TLS is required for protocol tls: cert_file, key_file, and
	// client_ca_file with client_auth (required or optional) for client
	// certificates.
	TLS config.ServerTLS `yaml:"tls"`
	// SocketMode is the permission of a unix socket file, in octal.
	// Default "0666".
	SocketMode string `yaml:"socket_mode"`
}

// Protocols.
const (
	ProtoUDP      = "udp"
	ProtoTCP      = "tcp"
	ProtoTLS      = "tls"
	ProtoUnixgram = "unixgram"
	ProtoUnix     = "unix"
)

// DefaultAddress is where the daemon listens by default, UDP and TCP.
const DefaultAddress = "127.0.0.1:5514"

// DefaultConfig returns the daemon's defaults: enabled, UDP and TCP on
// 127.0.0.1:5514, both named "syslog" (the FileDescriptorName of
// systemd/logstreamd-syslog.socket, whose sockets they take when the
// daemon is socket-activated).
func DefaultConfig() Config {
	c := Config{
		Enabled: true,
		Listeners: []Listener{
			{Name: "syslog", Protocol: ProtoUDP, Address: DefaultAddress},
			{Name: "syslog", Protocol: ProtoTCP, Address: DefaultAddress},
		},
	}
	return c.withDefaults()
}

const maxMessageLimit = 512 << 10

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 64 << 10
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 1024
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 8 << 20
	}
	if c.QueueLength == 0 {
		c.QueueLength = 65536
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 32 << 20
	}
	if c.MissingHost == "" {
		c.MissingHost = "peer"
	}
	if c.Timezone == "" {
		c.Timezone = "Local"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Second
	}
	ls := make([]Listener, len(c.Listeners))
	for i, l := range c.Listeners {
		if l.SocketMode == "" && (l.Protocol == ProtoUnix || l.Protocol == ProtoUnixgram) {
			l.SocketMode = "0666"
		}
		ls[i] = l
	}
	c.Listeners = ls
	return c
}

// Validate checks c, zero values taken as their defaults; errors start
// with the key path.
func (c *Config) Validate() error {
	d := c.withDefaults()
	if !d.Enabled {
		return nil
	}
	if d.MaxMessageSize < 480 || d.MaxMessageSize > maxMessageLimit {
		return fmt.Errorf("syslog.max_message_size: %v out of range 480B-512KiB", c.MaxMessageSize)
	}
	if d.MaxConnections < 1 {
		return fmt.Errorf("syslog.max_connections: %d must be positive", c.MaxConnections)
	}
	if d.IdleTimeout < 0 {
		return fmt.Errorf("syslog.idle_timeout: %v is negative (0 turns it off)", c.IdleTimeout)
	}
	if d.HandshakeTimeout < 0 {
		return fmt.Errorf("syslog.handshake_timeout: %v is negative", c.HandshakeTimeout)
	}
	if d.ReadBuffer < 0 || d.ReadBuffer > 1<<30 {
		return fmt.Errorf("syslog.read_buffer: %v out of range 0-1GiB", c.ReadBuffer)
	}
	if d.QueueLength < 1 {
		return fmt.Errorf("syslog.queue_length: %d must be positive", c.QueueLength)
	}
	if d.QueueBytes < d.MaxMessageSize {
		return fmt.Errorf("syslog.queue_bytes: %v is less than max_message_size %v", d.QueueBytes, d.MaxMessageSize)
	}
	switch d.MissingHost {
	case "peer", "local":
	default:
		return fmt.Errorf("syslog.missing_host: %q is not peer or local", c.MissingHost)
	}
	if _, err := time.LoadLocation(d.Timezone); err != nil {
		return fmt.Errorf("syslog.timezone: %v", err)
	}
	if d.DrainTimeout < 0 {
		return fmt.Errorf("syslog.drain_timeout: %v is negative", c.DrainTimeout)
	}
	if len(d.Listeners) == 0 {
		return fmt.Errorf("syslog.listeners: none configured (set enabled: false to turn the receiver off)")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	for i, l := range d.Listeners {
		key := fmt.Sprintf("syslog.listeners[%d]", i)
		if err := l.validate(key); err != nil {
			return err
		}
		if l.Name != "" {
			// One stream and one datagram listener may share a name: a
			// systemd .socket unit gives all its sockets one name.
			k := l.Name + "/" + l.kind()
			if j, dup := names[k]; dup {
				return fmt.Errorf("%s.name: %q is also the name of listeners[%d] (a name is shared by at most one stream and one datagram listener)", key, l.Name, j)
			}
			names[k] = i
		}
		if _, port, _ := net.SplitHostPort(l.Address); l.Address != "" && port != "0" {
			k := l.network() + " " + l.Address
			if j, dup := addrs[k]; dup {
				return fmt.Errorf("%s.address: %s %s is also listeners[%d]'s", key, l.Protocol, l.Address, j)
			}
			addrs[k] = i
		}
	}
	return nil
}

func (l *Listener) validate(key string) error {
	switch l.Protocol {
	case ProtoUDP, ProtoTCP, ProtoTLS:
		if l.Address == "" {
			if l.Name == "" {
				return fmt.Errorf("%s.address: empty (and no name for a socket-activated socket)", key)
			}
			break
		}
		host, port, err := net.SplitHostPort(l.Address)
		if err != nil {
			return fmt.Errorf("%s.address: %q: %v", key, l.Address, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			if _, err := net.LookupPort(l.network(), port); err != nil {
				return fmt.Errorf("%s.address: bad port %q", key, port)
			}
		}
		_ = host // empty host: every interface, as net.Listen
	case ProtoUnix, ProtoUnixgram:
		if l.Address == "" && l.Name == "" {
			return fmt.Errorf("%s.address: empty (and no name for a socket-activated socket)", key)
		}
		m, err := strconv.ParseUint(l.SocketMode, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("%s.socket_mode: %q is not an octal permission such as 0666", key, l.SocketMode)
		}
	case "":
		return fmt.Errorf("%s.protocol: missing (udp, tcp, tls, unixgram or unix)", key)
	default:
		return fmt.Errorf("%s.protocol: %q is not udp, tcp, tls, unixgram or unix", key, l.Protocol)
	}
	if l.Protocol == ProtoTLS {
		if !l.TLS.Enabled() {
			return fmt.Errorf("%s.tls.cert_file: protocol tls needs cert_file and key_file", key)
		}
	} else if l.TLS != (config.ServerTLS{}) {
		return fmt.Errorf("%s.tls: only for protocol tls", key)
	}
	return l.TLS.Validate(key + ".tls")
}

// network is the Go network name.
func (l *Listener) network() string {
	if l.Protocol == ProtoTLS {
		return "tcp"
	}
	return l.Protocol
}

// kind is "stream" or "datagram".
func (l *Listener) kind() string {
	if l.stream() {
		return "stream"
	}
	return "datagram"
}

// labels name the listeners in metrics and logs: the name, with the
// protocol added when two share it, else protocol://address.
func labels(ls []Listener) []string {
	count := map[string]int{}
	for _, l := range ls {
		count[l.Name]++
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		switch {
		case l.Name == "":
			out[i] = l.Protocol + "://" + l.Address
		case count[l.Name] > 1:
			out[i] = l.Name + "/" + l.Protocol
		default:
			out[i] = l.Name
		}
	}
	return out
}

func (l *Listener) stream() bool {
	return l.Protocol == ProtoTCP || l.Protocol == ProtoTLS || l.Protocol == ProtoUnix
}
