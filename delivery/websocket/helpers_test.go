package websocket

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/internal/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// env is a real bus, the handler, and a real HTTP server serving /ws.
type env struct {
	t   testing.TB
	bus *bus.Bus
	h   *Handler
	srv *httptest.Server
	reg *prometheus.Registry
}

func newEnv(t testing.TB, cfg Config, v *auth.Verifier, mods ...func(*bus.Config)) *env {
	t.Helper()
	b := bustest.Open(t, mods...)
	reg := prometheus.NewRegistry()
	h, err := New(cfg, b, v, bustest.Logger(t), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &env{t: t, bus: b, h: h, srv: srv, reg: reg}
}

func (e *env) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

func (e *env) dial(query string, hdr http.Header) (*gorillaws.Conn, *http.Response, error) {
	d := gorillaws.Dialer{HandshakeTimeout: 10 * time.Second}
	return d.Dial(e.wsURL(query), hdr)
}

func (e *env) mustDial(query string) *gorillaws.Conn {
	e.t.Helper()
	c, resp, err := e.dial(query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial %q: %v (HTTP %d)", query, err, status)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// publish publishes entries and waits until the stream has them.
func (e *env) publish(entries ...bus.Entry) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := e.bus.Publisher()
	for _, en := range entries {
		if en.Time.IsZero() {
			en.Time = time.Now()
		}
		if en.Received.IsZero() {
			en.Received = time.Now()
		}
		if err := p.Publish(ctx, en); err != nil {
			e.t.Fatalf("publish: %v", err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
}

// metric returns the value of a metric of the handler's registry, with
// labels "k=v,…" (empty: none).
func (e *env) metric(name, labels string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// frame is any frame, decoded.
type frame struct {
	Type    string            `json:"type"`
	ID      string            `json:"id"`
	Entries []json.RawMessage `json:"entries"`
	Count   uint64            `json:"count"`
	Reason  string            `json:"reason"`
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Filter  json.RawMessage   `json:"filter"`
	raw     []byte
}

// got is one received entry.
type got struct {
	seq   uint64
	entry bus.Entry
}

func readFrame(t testing.TB, c *gorillaws.Conn, timeout time.Duration) (frame, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	mt, data, err := c.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	if mt != gorillaws.TextMessage {
		t.Fatalf("got message type %d, want text", mt)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame is not JSON: %v: %s", err, data)
	}
	f.raw = data
	return f, nil
}

func mustFrame(t testing.TB, c *gorillaws.Conn) frame {
	t.Helper()
	f, err := readFrame(t, c, 10*time.Second)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

func entriesOf(t testing.TB, f frame) []got {
	t.Helper()
	var out []got
	for _, raw := range f.Entries {
		var g got
		var s struct {
			Seq *uint64 `json:"seq"`
		}
		if err := json.Unmarshal(raw, &s); err != nil || s.Seq == nil {
			t.Fatalf("entry without seq: %v: %s", err, raw)
		}
		g.seq = *s.Seq
		if err := g.entry.UnmarshalJSON(raw); err != nil {
			t.Fatalf("entry %d: %v: %s", g.seq, err, raw)
		}
		out = append(out, g)
	}
	return out
}

// collect reads frames until n entries arrived (failing after timeout);
// it returns the entries and every frame seen.
func collect(t testing.TB, c *gorillaws.Conn, n int, timeout time.Duration) ([]got, []frame) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out []got
	var frames []frame
	for len(out) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("got %d entries of %d in %v", len(out), n, timeout)
		}
		f, err := readFrame(t, c, left)
		if err != nil {
			t.Fatalf("after %d of %d entries: %v", len(out), n, err)
		}
		frames = append(frames, f)
		out = append(out, entriesOf(t, f)...)
	}
	return out, frames
}

// expectQuiet reads for d and fails on any entry.
func expectQuiet(t testing.TB, c *gorillaws.Conn, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		f, err := readFrame(t, c, left)
		if err != nil {
			return
		}
		if len(f.Entries) > 0 {
			t.Fatalf("unexpected entries: %s", f.raw)
		}
	}
}

// waitType reads frames until one of type typ, failing on entries.
func waitType(t testing.TB, c *gorillaws.Conn, typ string) frame {
	t.Helper()
	for {
		f := mustFrame(t, c)
		if f.Type == typ {
			return f
		}
		if f.Type != "caught_up" && f.Type != "subscribed" {
			t.Fatalf("waiting for %s, got %s", typ, f.raw)
		}
	}
}

// closeCode reads until the connection closes and returns the close
// error.
func closeCode(t testing.TB, c *gorillaws.Conn) (*gorillaws.CloseError, []frame) {
	t.Helper()
	var frames []frame
	for {
		f, err := readFrame(t, c, 10*time.Second)
		if err != nil {
			ce, ok := err.(*gorillaws.CloseError)
			if !ok {
				t.Fatalf("connection ended without a close frame: %v", err)
			}
			return ce, frames
		}
		frames = append(frames, f)
	}
}

func msgs(gs []got) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.entry.Message
	}
	return out
}

func entry(host, service string, l bus.Level, msg string) bus.Entry {
	return bus.Entry{Host: host, Service: service, Level: l, Message: msg, Source: bus.SourceSyslog}
}

func numbered(prefix string, n int) []bus.Entry {
	out := make([]bus.Entry, n)
	for i := range out {
		out[i] = entry("h1", "app", bus.LevelInfo, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}
