package syslog

import (
	"context"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recordHandler keeps log records for inspection.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) find(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

func attr(r slog.Record, key string) string {
	v := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// TestOperations: the granted socket receive buffer is logged; errors
// caused by input are logged rate-limited; the counters are exported to
// Prometheus by listener and reason.
func TestOperations(t *testing.T) {
	logs := &recordHandler{}
	reg := prometheus.NewRegistry()
	cfg := testConfig(udpL(), tcpL())
	cfg.ReadBuffer = 1 << 20
	s, err := New(cfg, slog.New(logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sink) }()
	defer func() { cancel(); <-done }()

	rb := logs.find("socket receive buffer")
	if len(rb) != 1 || attr(rb[0], "requested") != "1048576" || attr(rb[0], "granted") == "" || attr(rb[0], "granted") == "0" {
		t.Fatalf("receive buffer log: %v", rb)
	}
	t.Logf("socket receive buffer: requested 1MiB, granted %s", attr(rb[0], "granted"))

	// 500 binary datagrams: dropped, counted, logged at most ~burst times.
	u := dial(t, "udp", s.Addrs()[0])
	for range 500 {
		write(t, u, "\x01\x02\x03\x04 binary")
	}
	write(t, u, "<13>1 - h a - - - ok")
	waitFor(t, "the valid datagram", func() bool { return sink.len() == 1 })
	waitFor(t, "500 garbage counted", func() bool { return s.Stats()[0].Dropped[DropGarbage] == 500 })
	if n := len(logs.find("syslog binary datagram dropped")); n < 1 || n > 20 {
		t.Fatalf("%d log lines for 500 bad datagrams, want a rate-limited few", n)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += "," + lp.GetName() + "=" + lp.GetValue()
			}
			values[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"logstream_syslog_received_total,listener=udp":                        501,
		"logstream_syslog_published_total,listener=udp":                       1,
		"logstream_syslog_dropped_total,listener=udp,reason=garbage":          500,
		"logstream_syslog_dropped_total,listener=udp,reason=queue_full":       0,
		"logstream_syslog_connections_open,listener=tcp":                      0,
		"logstream_syslog_connections_closed_total,listener=tcp,reason=limit": 0,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if _, ok := values["logstream_syslog_connections_open,listener=udp"]; ok {
		t.Errorf("connection metrics on a datagram listener")
	}
}

// TestKeepAlive: accepted TCP connections have keepalive on (ss shows
// the kernel's keepalive timer), with the configured idle time.
func TestKeepAlive(t *testing.T) {
	ss := need(t, "ss", "iproute2")
	cfg := testConfig(tcpL())
	cfg.KeepAlive = 7 * time.Second
	r := start(t, cfg, &memSink{})
	dial(t, "tcp", r.addr(0))
	r.waitStats(t, 0, "open", func(s Stats) bool { return s.ConnsOpen == 1 })
	_, port, _ := net.SplitHostPort(r.addr(0))
	var out []byte
	waitFor(t, "keepalive timer", func() bool {
		var err error
		out, err = exec.Command(ss, "-Htno", "state", "established", "( sport = :"+port+" )").CombinedOutput()
		return err == nil && strings.Contains(string(out), "keepalive")
	})
	// timer:(keepalive,6.9sec,0): at most the configured idle time.
	i := strings.Index(string(out), "keepalive,")
	rest := string(out)[i+len("keepalive,"):]
	secs, err := strconv.ParseFloat(rest[:strings.IndexAny(rest, "ms")], 64)
	if strings.Contains(rest[:strings.IndexByte(rest, ',')], "ms") {
		secs /= 1000
	}
	if err != nil || secs > 7 {
		t.Fatalf("keepalive timer %q", out)
	}
}
