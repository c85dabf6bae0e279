// Package websocket serves the live, filtered, resumable stream of entries
// to browsers and programs over WebSocket at GET /ws.
//
// A client gives a filter and a start in the query string (and may change
// them later with a control message); the server subscribes to the bus for
// it and writes JSON text frames: "entries" batches (each entry with its
// stream sequence, the entry object exactly as on NATS), and control
// frames "subscribed", "dropped", "caught_up", "error", "pong". docs/websocket.md
// documents the protocol.
//
// Concurrency: each client has exactly two goroutines, a reader (control
// messages, pongs, close) and a writer, the only one that writes frames.
// The per-client queue is the bus subscription's bounded buffer: a client
// that cannot keep up loses the oldest entries and is told (policy drop)
// or is closed (policy disconnect); it never slows other clients. Handler
// is safe for concurrent use; Shutdown closes every socket with 1001 and
// returns when every goroutine it started has ended.
package websocket

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/internal/ratelog"

	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Subprotocol is the WebSocket subprotocol the server selects when a
// client offers it. A browser that passes its token as a subprotocol
// ("bearer.<token>") must offer this one too.
const Subprotocol = "logstream"

// subscribeTimeout bounds setting up one subscription (history search).
const subscribeTimeout = 30 * time.Second

// Subscriber is what the handler reads entries from; *bus.Bus is one.
type Subscriber interface {
	Subscribe(ctx context.Context, f bus.Filter, start bus.Start, opts bus.SubscribeOptions) (*bus.Subscription, error)
}

// Handler serves GET /ws. Build it with New.
type Handler struct {
	cfg      Config
	sub      Subscriber
	verifier *auth.Verifier
	log      *slog.Logger
	m        *metrics
	up       gorillaws.Upgrader
	valid    validity
	logLim   ratelog.Limiter // a flood of bad clients must not flood the log

	ctx    context.Context // ends at Shutdown: wakes every writer
	cancel context.CancelFunc
	admits atomic.Int64 // clients connected or being admitted

	mu      sync.Mutex
	clients map[*client]struct{}
	closing bool
	wg      sync.WaitGroup // ServeHTTP calls and client goroutines
}

// New applies the defaults to cfg, validates it and returns a Handler.
// verifier may be nil (no authentication); reg may be nil.
func New(cfg Config, sub Subscriber, verifier *auth.Verifier, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg: cfg, sub: sub, verifier: verifier, log: log, m: newMetrics(reg),
		clients: make(map[*client]struct{}),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.up = gorillaws.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Small read buffers: clients send little. Write buffers come
		// from a pool and are held only while a frame is written.
		ReadBufferSize:  512,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{Subprotocol},
		CheckOrigin: func(r *http.Request) bool {
			return h.cfg.originAllowed(r.Header.Get("Origin"), r.Host)
		},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			label := "handshake"
			if status == http.StatusForbidden {
				label = "origin"
				h.logLimited("websocket origin refused", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
			}
			h.m.rejected.WithLabelValues(label).Inc()
			http.Error(w, reason.Error(), status)
		},
	}
	return h, nil
}

// track counts a goroutine in the wait group unless shutting down.
func (h *Handler) track() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.wg.Add(1)
	return true
}

// ServeHTTP upgrades the request to a WebSocket and serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.track() {
		h.m.rejected.WithLabelValues("shutdown").Inc()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.wg.Done()
	if n := h.admits.Add(1); n > int64(h.cfg.MaxClients) {
		h.admits.Add(-1)
		h.m.rejected.WithLabelValues("max_clients").Inc()
		h.logLimited("websocket client refused: max_clients reached", "max_clients", h.cfg.MaxClients, "remote", r.RemoteAddr)
		http.Error(w, "too many clients", http.StatusServiceUnavailable)
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			h.admits.Add(-1)
		}
	}()
	sp, reqErr := parseQuery(r.URL.Query(), h.cfg.MaxBacklog, time.Now())
	token := tokenFrom(r)
	conn, err := h.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has replied
	}
	h.m.connections.Inc()
	if h.cfg.SendBuffer > 0 {
		setSendBuffer(conn.NetConn(), int(h.cfg.SendBuffer))
	}
	scope, err := h.verifier.Verify(token)
	if err != nil {
		h.refuse(conn, "auth", CodeUnauthorized, err.Error())
		return
	}
	if reqErr != nil {
		h.refuse(conn, "bad_request", CodeBadRequest, reqErr.Error())
		return
	}
	sp.filter.Scope = scope
	s, code, err := h.subscribe(sp)
	if err != nil {
		h.refuse(conn, rejectReason(code), code, err.Error())
		return
	}
	c := &client{h: h, conn: conn, scope: scope, sub: s, readDone: make(chan struct{})}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		s.Close()
		h.refuse(conn, "shutdown", gorillaws.CloseGoingAway, "server shutting down")
		return
	}
	h.clients[c] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	admitted = true
	h.m.clients.Inc()
	h.log.Debug("websocket client connected", "remote", r.RemoteAddr, "filter", subscribedMessage("", sp.req))
	go c.readLoop()
	go c.writeLoop(subscribedMessage("", sp.req))
}

// subscribe starts a bus subscription for sp; on failure it returns the
// close code that describes the error.
func (h *Handler) subscribe(sp *spec) (*bus.Subscription, int, error) {
	ctx, cancel := context.WithTimeout(h.ctx, subscribeTimeout)
	defer cancel()
	s, err := h.sub.Subscribe(ctx, sp.filter, sp.start, bus.SubscribeOptions{
		MaxEntries: h.cfg.QueueEntries, MaxBytes: int(h.cfg.QueueBytes),
	})
	switch {
	case err == nil:
		return s, 0, nil
	case errors.Is(err, bus.ErrNothingAllowed):
		return nil, CodeForbidden, errors.New("filter: your token allows none of the hosts, services or levels asked for")
	case errors.Is(err, bus.ErrNoHistory):
		return nil, CodeBadRequest, errors.New("backlog, since, after: this server keeps no history (bus.jetstream is off); connect without a start")
	case h.ctx.Err() != nil:
		return nil, gorillaws.CloseGoingAway, errors.New("server shutting down")
	default:
		h.logLimited("websocket subscribe failed", "err", err)
		return nil, gorillaws.CloseInternalServerErr, fmt.Errorf("subscribe: %v", err)
	}
}

func rejectReason(code int) string {
	switch code {
	case CodeForbidden:
		return "forbidden"
	case CodeBadRequest:
		return "bad_request"
	case gorillaws.CloseGoingAway:
		return "shutdown"
	default:
		return "error"
	}
}

// refuse tells a just-upgraded client why it cannot be served: an error
// frame, then a close frame with code, then the end of the connection
// once the client has answered the close (or after a second).
func (h *Handler) refuse(conn *gorillaws.Conn, reason string, code int, msg string) {
	h.m.rejected.WithLabelValues(reason).Inc()
	deadline := time.Now().Add(min(h.cfg.WriteTimeout, 2*time.Second))
	_ = conn.SetWriteDeadline(deadline)
	if conn.WriteMessage(gorillaws.TextMessage, errorMessage("", code, msg)) == nil {
		h.m.framesControl.Inc()
		_ = conn.WriteControl(gorillaws.CloseMessage, gorillaws.FormatCloseMessage(code, closeText(msg)), deadline)
		lingerClose(conn, time.Second)
	}
	_ = conn.Close()
}

// lingerClose reads until the peer's close frame, an error or the timeout,
// so that the close frame sent is not lost to a reset.
func lingerClose(conn *gorillaws.Conn, d time.Duration) {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	conn.SetCloseHandler(func(int, string) error { return nil })
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// setSendBuffer sets SO_SNDBUF on a TCP connection, under TLS or not.
func setSendBuffer(c net.Conn, n int) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(n)
	}
}

// closeText fits a close reason into a control frame (123 bytes).
func closeText(s string) string {
	return truncate(s, 120)
}

// tokenFrom returns the bearer token of a request: the Authorization
// header, else a "bearer.<token>" subprotocol, else the token parameter.
func tokenFrom(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		return a
	}
	for _, p := range gorillaws.Subprotocols(r) {
		if t, ok := strings.CutPrefix(p, "bearer."); ok {
			return t
		}
	}
	return r.URL.Query().Get("token")
}

// Clients returns how many clients are connected.
func (h *Handler) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *Handler) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.admits.Add(-1)
	h.m.clients.Dec()
}

// Shutdown refuses new clients, closes every WebSocket with 1001 (going
// away) so that browsers reconnect elsewhere or later, and waits until
// every goroutine of the handler has ended. When ctx ends first, the
// remaining connections are closed without a close frame.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	for c := range h.clients {
		_ = c.conn.NetConn().Close()
	}
	h.mu.Unlock()
	<-done
	return ctx.Err()
}

func (h *Handler) logLimited(msg string, args ...any) {
	if n, ok := h.logLim.Allow(); ok {
		h.log.Warn(msg, append(args, "suppressed", n)...)
	}
}
