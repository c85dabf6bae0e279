package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// listener is one configured socket, bound or handed over by systemd.
type listener struct {
	cfg   Listener
	label string
	counters

	ln  net.Listener   // tcp, tls, unix
	pc  net.PacketConn // udp, unixgram
	tls *tls.Config

	activated bool
	unixPath  string // the socket file we created, removed on close
	unixIno   uint64

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	stopping bool
}

// activated holds the sockets systemd passed, by FileDescriptorName.
type activated struct {
	streams map[string][]net.Listener
	packets map[string][]net.PacketConn
}

// takeActivated takes the sockets passed by systemd socket activation
// ($LISTEN_FDS), once per process. go-systemd's ListenersWithNames and
// PacketConnsWithNames each consume the environment, so calling both
// loses the second kind; this reads the files once and sorts them.
func takeActivated() activated {
	a := activated{streams: map[string][]net.Listener{}, packets: map[string][]net.PacketConn{}}
	for _, f := range activation.Files(true) {
		// net.FileListener takes a unixgram socket for a listener: ask the
		// socket its type.
		typ, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE)
		switch {
		case err != nil:
		case typ == syscall.SOCK_DGRAM:
			if pc, err := net.FilePacketConn(f); err == nil {
				a.packets[f.Name()] = append(a.packets[f.Name()], pc)
			}
		default:
			if l, err := net.FileListener(f); err == nil {
				a.streams[f.Name()] = append(a.streams[f.Name()], l)
			}
		}
		f.Close()
	}
	return a
}

func (a *activated) closeUnused(log *slog.Logger) {
	for name, ls := range a.streams {
		for _, l := range ls {
			log.Warn("socket-activated socket matches no listener name; closed", "name", name, "addr", l.Addr().String())
			l.Close()
		}
	}
	for name, ps := range a.packets {
		for _, p := range ps {
			log.Warn("socket-activated socket matches no listener name; closed", "name", name, "addr", p.LocalAddr().String())
			p.Close()
		}
	}
}

// open binds the listener, or takes its socket-activated socket.
func (l *listener) open(key string, c *Config, a *activated, log *slog.Logger) error {
	var err error
	if l.cfg.Protocol == ProtoTLS {
		if l.tls, err = l.cfg.TLS.Load(key + ".tls"); err != nil {
			return err
		}
	}
	if l.cfg.Name != "" {
		if l.cfg.stream() {
			if ls := a.streams[l.cfg.Name]; len(ls) > 0 {
				l.ln, l.activated = ls[0], true
				a.streams[l.cfg.Name] = ls[1:]
			} else if len(a.packets[l.cfg.Name]) > 0 {
				return fmt.Errorf("%s.protocol: %s, but systemd passed a datagram socket named %q", key, l.cfg.Protocol, l.cfg.Name)
			}
		} else {
			if ps := a.packets[l.cfg.Name]; len(ps) > 0 {
				l.pc, l.activated = ps[0], true
				a.packets[l.cfg.Name] = ps[1:]
			} else if len(a.streams[l.cfg.Name]) > 0 {
				return fmt.Errorf("%s.protocol: %s, but systemd passed a stream socket named %q", key, l.cfg.Protocol, l.cfg.Name)
			}
		}
	}
	if !l.activated {
		if l.cfg.Address == "" {
			return fmt.Errorf("%s.address: empty, and systemd passed no socket named %q", key, l.cfg.Name)
		}
		if err := l.bind(); err != nil {
			return fmt.Errorf("%s.address: %w", key, err)
		}
	}
	if l.pc != nil {
		if err := setReadBuffer(l.pc, int(c.ReadBuffer), log.With("listener", l.label)); err != nil {
			log.Warn("cannot set socket receive buffer", "listener", l.label, "err", err)
		}
	}
	if l.activated {
		log.Info("syslog listening (socket-activated)", "listener", l.label, "protocol", l.cfg.Protocol, "addr", l.addr())
	} else {
		log.Info("syslog listening", "listener", l.label, "protocol", l.cfg.Protocol, "addr", l.addr())
	}
	return nil
}

func (l *listener) addr() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	if l.pc != nil {
		return l.pc.LocalAddr().String()
	}
	return ""
}

func (l *listener) bind() error {
	var lc net.ListenConfig
	lc.KeepAlive = -1 // set per connection, for activated sockets too
	ctx := context.Background()
	switch l.cfg.Protocol {
	case ProtoTCP, ProtoTLS:
		ln, err := lc.Listen(ctx, "tcp", l.cfg.Address)
		if err != nil {
			return err
		}
		l.ln = ln
	case ProtoUDP:
		pc, err := lc.ListenPacket(ctx, "udp", l.cfg.Address)
		if err != nil {
			return err
		}
		l.pc = pc
	case ProtoUnix, ProtoUnixgram:
		return l.bindUnix()
	}
	return nil
}

// bindUnix creates a unix socket file atomically: it binds a temporary
// name in the same directory, gives it the configured mode, and renames
// it over the path, so that no client ever sees a missing socket or one
// with the wrong permissions. A stale socket file (no process behind it)
// is replaced; a live one, or a file that is not a socket, is an error.
func (l *listener) bindUnix() error {
	path := l.cfg.Address
	mode, _ := strconv.ParseUint(l.cfg.SocketMode, 8, 32)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout(l.cfg.Protocol, path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("%s is in use by another process", path)
		}
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp"+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)
	addr := &net.UnixAddr{Name: tmp, Net: l.cfg.Protocol}
	var err error
	if l.cfg.Protocol == ProtoUnix {
		var ul *net.UnixListener
		if ul, err = net.ListenUnix("unix", addr); err == nil {
			ul.SetUnlinkOnClose(false)
			l.ln = ul
		}
	} else {
		l.pc, err = net.ListenUnixgram("unixgram", addr)
	}
	if err != nil {
		return err
	}
	fail := func(err error) error {
		l.closeSocket()
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, os.FileMode(mode)); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			l.unixPath, l.unixIno = path, st.Ino
		}
	}
	return nil
}

// closeSocket closes the socket and removes the socket file we created,
// unless another process has replaced it since.
func (l *listener) closeSocket() {
	if l.ln != nil {
		l.ln.Close()
	}
	if l.pc != nil {
		l.pc.Close()
	}
	if l.unixPath != "" {
		if fi, err := os.Lstat(l.unixPath); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == l.unixIno {
				_ = os.Remove(l.unixPath)
			}
		}
		l.unixPath = ""
	}
}

// setReadBuffer asks for size bytes of socket receive buffer, with
// SO_RCVBUFFORCE (which passes net.core.rmem_max, as root) or else
// SO_RCVBUF, and logs what the kernel granted.
func setReadBuffer(pc net.PacketConn, size int, log *slog.Logger) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var got int
	var serr error
	err = raw.Control(func(fd uintptr) {
		if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size); e != nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
		got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	})
	if err == nil {
		err = serr
	}
	// Linux reports twice the usable size (it counts its bookkeeping).
	log.Info("socket receive buffer", "requested", size, "granted", got/2)
	return err
}

// track registers an accepted connection so that shutdown can stop its
// reads; it returns false when the listener is stopping.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return false
	}
	if l.conns == nil {
		l.conns = map[net.Conn]struct{}{}
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// stop closes the socket and makes every open connection's next read
// fail, so that each publishes what it has buffered and ends.
func (l *listener) stop() {
	l.mu.Lock()
	l.stopping = true
	past := time.Unix(1, 0)
	for c := range l.conns {
		_ = c.SetReadDeadline(past)
	}
	l.mu.Unlock()
	l.closeSocket()
}

// setIdleDeadline moves a connection's read deadline, unless the
// listener is stopping (whose deadline in the past must stay).
func (l *listener) setIdleDeadline(c net.Conn, d time.Duration) {
	l.mu.Lock()
	if !l.stopping {
		_ = c.SetReadDeadline(time.Now().Add(d))
	}
	l.mu.Unlock()
}

func (l *listener) isStopping() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopping
}
