// Package syslog receives syslog — RFC 5424 and RFC 3164 — over UDP, TCP,
// TLS (RFC 5425) and unix sockets, and publishes each message as one
// bus.Entry. It is a drop-in target for rsyslog's omfwd and omuxsock,
// syslog-ng, network devices, util-linux logger and glibc's syslog(3).
//
// Layout: this package owns the sockets, connections, limits, queues and
// counters; ingest/syslog/framing splits TCP streams into messages
// (octet counting or LF, detected per connection); ingest/syslog/parse
// turns one message into a bus.Entry. Both have golden files and fuzz
// targets.
//
// # Concurrency and backpressure
//
// Each stream connection (tcp, tls, unix) has one goroutine that reads,
// parses and calls Sink.Publish synchronously: when the bus blocks, the
// connection is not read, the kernel's buffers fill and TCP flow control
// holds the sender — memory stays bounded by one read buffer per
// connection (max_message_size plus a header). Each datagram listener
// (udp, unixgram) has a reader goroutine that puts datagrams in a queue
// bounded in count and bytes, and one worker that publishes them in
// order; what does not fit in the queue is dropped and counted. For every
// listener, received = published + dropped (by reason).
//
// Run stops on context cancellation: listeners close, every connection's
// next read fails, what was already read (buffered frames, queued
// datagrams) is still published for up to drain_timeout, and Run returns
// once every goroutine has ended.
//
// # What this package fixes over gopkg.in/mcuadros/go-syslog.v2 v2.3.0
//
// The module is a dependency for its parsers' reference behaviour (parse
// is fuzzed against them) but its server is not used, for these defects:
//   - A datagram or line holding only a priority ("<13>") panics its
//     RFC 3164 and Automatic parsers (index out of range) and kills the
//     process. parse reads it as an empty message.
//   - A negative octet count ("-5 <13>1 …") panics its RFC 6587 split
//     function. framing reads such a line as a non-transparent frame.
//   - Kill() during UDP traffic sends on a closed channel (panic), and
//     does not close open TCP connections, so Wait() hangs. Here only the
//     reader goroutine closes its queue, after its socket is closed, and
//     shutdown ends every connection's reads.
//   - A TCP message over 64 KiB makes bufio.Scanner fail, silently
//     dropping the connection and the valid messages after it. Here it is
//     truncated at max_message_size, counted, and the connection goes on.
//   - The TLS handshake runs in the accept loop without deadline, so one
//     idle client blocks every new TLS client. Here it runs in the
//     connection's goroutine with handshake_timeout.
//   - The UDP receive buffer is forced down to 64 KiB. Here it is
//     configurable (read_buffer, default 8 MiB) and the granted size is
//     logged.
//   - lastError is written from many goroutines without a lock (a data
//     race). Here errors are counted in atomic counters and logged
//     rate-limited.
//   - Listeners can only be opened from address strings, so systemd
//     socket activation is impossible. Here a listener whose name matches
//     a socket passed by systemd uses it.
//   - Its RFC 3164 parser calls os.Hostname for every message without a
//     HOSTNAME, ignores the PID, and its datagrams are capped by a pool of
//     64 KiB buffers; its parsers cost 1–2 µs and 11–20 allocations a
//     message (see parse's package documentation).
package syslog

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/ingest/syslog/framing"
	"github.com/logstream/logstream/ingest/syslog/parse"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Sink is what the receiver publishes to; *bus.Publisher is one. Publish
// may block (backpressure); it must return when ctx ends.
type Sink interface {
	Publish(ctx context.Context, e bus.Entry) error
	Flush(ctx context.Context) error
}

// Server receives syslog on its listeners.
type Server struct {
	cfg       Config
	log       *slog.Logger
	input     *rateLog // for errors caused by input
	loc       *time.Location
	now       func() time.Time
	localHost string
	maxMsg    int
	listeners []*listener
	closeOnce sync.Once
	ran       atomic.Bool
}

// New validates cfg, applies its defaults and opens every listener
// (binding it, or taking the socket systemd passed under its name), so
// that an address in use fails here. reg, when not nil, receives the
// per-listener counters. Call Run, or Close to release the sockets.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loc, _ := time.LoadLocation(cfg.Timezone)
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	s := &Server{
		cfg: cfg, log: log, loc: loc, now: cfg.Clock, localHost: host, maxMsg: int(cfg.MaxMessageSize),
		input: &rateLog{log: log, lim: rate.NewLimiter(1, 10)},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if !cfg.Enabled {
		return s, nil
	}
	act := takeActivated()
	defer act.closeUnused(log)
	labels := labels(cfg.Listeners)
	for i, lc := range cfg.Listeners {
		l := &listener{cfg: lc, label: labels[i]}
		if err := l.open(fmt.Sprintf("syslog.listeners[%d]", i), &cfg, &act, log); err != nil {
			s.Close()
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	if reg != nil {
		if err := reg.Register(collector{s}); err != nil {
			s.Close()
			return nil, fmt.Errorf("syslog: register metrics: %w", err)
		}
	}
	return s, nil
}

// Addrs returns each listener's bound address, in configuration order:
// host:port for udp, tcp and tls, the path for unix sockets.
func (s *Server) Addrs() []string {
	out := make([]string, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.addr()
		if l.unixPath != "" {
			out[i] = l.unixPath
		}
	}
	return out
}

// Stats returns each listener's counters, in configuration order.
func (s *Server) Stats() []Stats {
	out := make([]Stats, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.snapshot(l.label)
	}
	return out
}

// Close closes the listeners of a Server that is not running. Run does
// it itself when it returns.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		for _, l := range s.listeners {
			l.stop()
		}
	})
}

// Run receives until ctx ends, then stops: it closes the listeners,
// publishes what it has read for up to drain_timeout, flushes the sink,
// and returns once every goroutine it started has ended. It may be called
// once.
func (s *Server) Run(ctx context.Context, sink Sink) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("syslog: Run called twice")
	}
	// Publishing outlives ctx by the drain timeout: what was read is
	// published, not dropped, at shutdown.
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		if l.ln != nil {
			wg.Go(func() { s.acceptLoop(l, sink, pubCtx, &wg) })
		} else {
			q := make(chan datagram, s.cfg.QueueLength)
			var queued atomic.Int64
			wg.Go(func() { s.readDatagrams(l, q, &queued) })
			wg.Go(func() { s.publishDatagrams(l, q, &queued, sink, pubCtx) })
		}
	}
	<-ctx.Done()
	start := time.Now()
	drain := time.AfterFunc(s.cfg.DrainTimeout, cancelPub)
	defer drain.Stop()
	s.Close()
	wg.Wait()
	err := sink.Flush(pubCtx)
	if err != nil {
		s.log.Warn("syslog drain incomplete", "err", err)
	}
	s.log.Info("syslog receiver stopped", "drain", time.Since(start).Round(time.Millisecond))
	return nil
}

// acceptLoop accepts stream connections until the listener closes.
func (s *Server) acceptLoop(l *listener, sink Sink, pubCtx context.Context, wg *sync.WaitGroup) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isStopping() {
				return
			}
			// Out of file descriptors and the like: back off, as net/http.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("syslog accept failed, retrying", "listener", l.label, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if l.connsOpen.Load() >= int64(s.cfg.MaxConnections) {
			l.closed[CloseLimit].Add(1)
			s.input.warn("syslog connection refused: max_connections reached", "listener", l.label, "peer", c.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections)
			c.Close()
			continue
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.connsOpen.Add(1)
		l.connsTotal.Add(1)
		wg.Go(func() {
			reason := s.serveConn(l, c, sink, pubCtx)
			l.untrack(c)
			c.Close()
			l.connsOpen.Add(-1)
			l.closed[reason].Add(1)
		})
	}
}

// serveConn reads one stream connection until it ends and says why.
func (s *Server) serveConn(l *listener, raw net.Conn, sink Sink, pubCtx context.Context) CloseReason {
	if tc, ok := raw.(*net.TCPConn); ok && s.cfg.KeepAlive > 0 {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: s.cfg.KeepAlive, Interval: s.cfg.KeepAlive, Count: 4})
	}
	peer := s.localHost
	if s.cfg.MissingHost == "peer" {
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
			peer = ap.Addr().Unmap().String()
		}
	}
	c := raw
	if l.tls != nil {
		tc := tls.Server(raw, l.tls)
		hctx, cancel := context.WithTimeout(pubCtx, s.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			s.input.warn("syslog tls handshake failed", "listener", l.label, "peer", raw.RemoteAddr().String(), "err", err)
			if l.isStopping() {
				return CloseShutdown
			}
			return CloseHandshake
		}
		c = tc
	}
	h := handler{s: s, l: l, sink: sink, ctx: pubCtx, peer: peer}
	h.opts.Location = s.loc
	fr := framing.NewReader(c, s.maxMsg)
	if l.tls == nil {
		// A TLS ClientHello on a plain port: refuse it rather than read
		// binary records as messages.
		if b, err := fr.Peek(); err == nil && b[0] == 0x16 {
			s.input.warn("syslog connection refused: TLS on a plain port", "listener", l.label, "peer", raw.RemoteAddr().String())
			return CloseWrongProtocol
		}
	}
	first := true
	frames := make([]framing.Frame, 0, 256)
	for {
		if s.cfg.IdleTimeout > 0 {
			l.setIdleDeadline(raw, s.cfg.IdleTimeout)
		}
		// Every frame one read completed: one clock reading and one string
		// (the messages are cut from it) for all of them.
		var region []byte
		var err error
		frames, region, err = fr.Batch(frames[:0], cap(frames))
		if err != nil {
			return s.closeReason(l, raw, err)
		}
		if first {
			first = false
			if otherProtocol(frames[0].Data) {
				s.input.warn("syslog connection refused: not syslog", "listener", l.label, "peer", raw.RemoteAddr().String(), "start", string(frames[0].Data[:min(len(frames[0].Data), 16)]))
				return CloseWrongProtocol
			}
		}
		now := s.now()
		text := string(region)
		for _, f := range frames {
			off := framing.Offset(region, f)
			h.frame(text[off:off+len(f.Data)], f.Truncated, now)
		}
	}
}

func (s *Server) closeReason(l *listener, raw net.Conn, err error) CloseReason {
	switch {
	case l.isStopping():
		return CloseShutdown
	case errors.Is(err, io.EOF):
		return CloseEOF
	case errors.Is(err, framing.ErrFrameTooLarge):
		l.received.Add(1)
		l.dropped[DropOversize].Add(1)
		s.input.warn("syslog connection closed: octet count over max_message_size", "listener", l.label, "peer", raw.RemoteAddr().String(), "max_message_size", s.maxMsg)
		return CloseOversize
	case errors.Is(err, os.ErrDeadlineExceeded):
		return CloseIdle
	}
	s.input.warn("syslog connection read failed", "listener", l.label, "peer", raw.RemoteAddr().String(), "err", err)
	return CloseError
}

// otherProtocol recognises the first line of an HTTP or SSH client.
func otherProtocol(b []byte) bool {
	if bytes.HasPrefix(b, []byte("SSH-")) || bytes.Equal(b, []byte("PRI * HTTP/2.0")) {
		return true
	}
	return b[0] >= 'A' && b[0] <= 'Z' && (bytes.HasSuffix(b, []byte(" HTTP/1.1")) || bytes.HasSuffix(b, []byte(" HTTP/1.0")))
}

// datagram is one queued UDP or unixgram message.
type datagram struct {
	line      string
	peer      netip.Addr // invalid for unix sockets
	received  time.Time
	truncated bool
}

// readDatagrams reads datagrams into q until the socket closes, then
// closes q. It is q's only sender.
func (s *Server) readDatagrams(l *listener, q chan<- datagram, queued *atomic.Int64) {
	defer close(q)
	buf := make([]byte, max(s.maxMsg, 65535)+1)
	udp, _ := l.pc.(*net.UDPConn)
	ux, _ := l.pc.(*net.UnixConn)
	limit := int64(s.cfg.QueueBytes)
	for {
		var n int
		var peer netip.Addr
		var err error
		switch {
		case udp != nil:
			var ap netip.AddrPort
			n, ap, err = udp.ReadFromUDPAddrPort(buf)
			peer = ap.Addr().Unmap()
		case ux != nil:
			n, err = ux.Read(buf)
		default:
			n, _, err = l.pc.ReadFrom(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isStopping() {
				return
			}
			s.input.warn("syslog datagram read failed", "listener", l.label, "err", err)
			time.Sleep(10 * time.Millisecond) // an error that persists must not spin
			continue
		}
		data := trimDatagram(buf[:n])
		truncated := false
		if len(data) > s.maxMsg {
			data, truncated = data[:s.maxMsg], true
		}
		l.received.Add(1)
		if len(data) == 0 {
			l.dropped[DropEmpty].Add(1)
			continue
		}
		if truncated {
			l.truncated.Add(1)
		}
		if parse.IsBinary(data) {
			l.dropped[DropGarbage].Add(1)
			s.input.warn("syslog binary datagram dropped", "listener", l.label, "peer", peer.String(), "bytes", len(data))
			continue
		}
		if queued.Load()+int64(len(data)) > limit {
			l.dropped[DropQueueFull].Add(1)
			continue
		}
		d := datagram{line: string(data), peer: peer, received: s.now(), truncated: truncated}
		select {
		case q <- d:
			queued.Add(int64(len(data)))
		default:
			l.dropped[DropQueueFull].Add(1)
		}
	}
}

// trimDatagram drops trailing LF, CR and NUL.
func trimDatagram(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

// publishDatagrams publishes queued datagrams in order until q closes.
func (s *Server) publishDatagrams(l *listener, q <-chan datagram, queued *atomic.Int64, sink Sink, pubCtx context.Context) {
	h := handler{s: s, l: l, sink: sink, ctx: pubCtx, peer: s.localHost}
	h.opts.Location = s.loc
	var lastPeer netip.Addr
	lastStr := ""
	for d := range q {
		queued.Add(-int64(len(d.line)))
		peer := s.localHost
		if s.cfg.MissingHost == "peer" && d.peer.IsValid() {
			if d.peer != lastPeer {
				lastPeer, lastStr = d.peer, d.peer.String()
			}
			peer = lastStr
		}
		h.peer = peer
		h.publish(d.line, d.truncated, d.received)
	}
}

// handler turns frames into entries for one connection or datagram
// listener.
type handler struct {
	s    *Server
	l    *listener
	sink Sink
	ctx  context.Context
	peer string // the host of messages that name none
	opts parse.Options
}

// frame counts and publishes one stream frame. A trailing LF (CRLF,
// NUL) inside an octet-counted frame is dropped, as rsyslog does
// (DropTrailingLFOnReception): its omfwd counts the template's final LF.
func (h *handler) frame(data string, truncated bool, now time.Time) {
	for len(data) > 0 && (data[len(data)-1] == '\n' || data[len(data)-1] == '\r' || data[len(data)-1] == 0) {
		data = data[:len(data)-1]
	}
	if len(data) == 0 {
		return // an octet-counted frame of nothing but a line end
	}
	l := h.l
	l.received.Add(1)
	if truncated {
		l.truncated.Add(1)
	}
	if parse.IsBinary(data) {
		l.dropped[DropGarbage].Add(1)
		h.s.input.warn("syslog binary frame dropped", "listener", l.label, "peer", h.peer, "bytes", len(data))
		return
	}
	h.publish(data, truncated, now)
}

// publish parses line and publishes it; received is already counted.
func (h *handler) publish(line string, truncated bool, received time.Time) {
	var e bus.Entry
	h.opts.Received = received
	if _, err := parse.Parse(line, &h.opts, &e); err != nil {
		h.l.parseErrors.Add(1)
	}
	if e.Host == "" {
		e.Host = h.peer
	}
	if truncated {
		if e.Fields == nil {
			e.Fields = make(map[string]string, 1)
		}
		e.Fields["truncated"] = "true"
	}
	err := h.sink.Publish(h.ctx, e)
	if errors.Is(err, bus.ErrTooLarge) && len(e.Message) > 1024 {
		// Escaping made the JSON exceed the server's payload: keep the
		// start of the message.
		e.Message = e.Message[:len(e.Message)/4]
		if e.Fields == nil {
			e.Fields = make(map[string]string, 1)
		}
		e.Fields["truncated"] = "true"
		h.l.truncated.Add(1)
		err = h.sink.Publish(h.ctx, e)
	}
	if err != nil {
		h.l.dropped[DropPublish].Add(1)
		h.s.input.warn("syslog publish failed, message dropped", "listener", h.l.label, "err", err)
		return
	}
	h.l.published.Add(1)
}

// rateLog logs lines caused by input at most at its limiter's rate,
// counting what it suppresses.
type rateLog struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Uint64
}

func (r *rateLog) warn(msg string, args ...any) {
	if !r.lim.Allow() {
		r.suppressed.Add(1)
		return
	}
	if n := r.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	r.log.Warn(msg, args...)
}
