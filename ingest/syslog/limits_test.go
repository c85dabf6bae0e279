package syslog

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
)

func messages(sink *memSink) map[string]bus.Entry {
	out := map[string]bus.Entry{}
	for _, e := range sink.all() {
		out[e.Message] = e
	}
	return out
}

// TestTruncation: an LF frame over max_message_size is cut, counted and
// marked; the connection goes on with the next message. A UDP datagram
// of 60,000 bytes arrives whole; one over the maximum is cut.
func TestTruncation(t *testing.T) {
	sink := &memSink{}
	cfg := testConfig(udpL(), tcpL())
	cfg.MaxMessageSize = 4096
	r := start(t, cfg, sink)

	long := "<13>1 - host app - - - " + strings.Repeat("x", 10000)
	c := dial(t, "tcp", r.addr(1))
	write(t, c, long+"\n<13>1 - host app - - - after\n")
	waitFor(t, "2 entries", func() bool { return sink.len() == 2 })
	got := sink.all()
	if len(got[0].Message) != 4096-len("<13>1 - host app - - - ") || got[0].Fields["truncated"] != "true" {
		t.Fatalf("truncated entry: %d bytes, fields %v", len(got[0].Message), got[0].Fields)
	}
	if got[1].Message != "after" {
		t.Fatalf("entry after the long one: %q", got[1].Message)
	}
	st := r.Stats()[1]
	if st.Truncated != 1 || st.Received != 2 || st.Published != 2 {
		t.Fatalf("stats %+v", st)
	}

	u := dial(t, "udp", r.addr(0))
	write(t, u, long)
	waitFor(t, "3 entries", func() bool { return sink.len() == 3 })
	if e := sink.all()[2]; len(e.Message) != 4096-len("<13>1 - host app - - - ") || e.Fields["truncated"] != "true" {
		t.Fatalf("truncated datagram: %d bytes", len(e.Message))
	}
	r.stop(t)
	r.checkBalance(t)

	// 60,000 bytes with the default maximum (64 KiB): intact.
	sink = &memSink{}
	r = start(t, testConfig(udpL()), sink)
	big := "<13>1 - host app - - - " + strings.Repeat("y", 60000)
	u = dial(t, "udp", r.addr(0))
	write(t, u, big)
	waitFor(t, "big datagram", func() bool { return sink.len() == 1 })
	if e := sink.all()[0]; len(e.Message) != 60000 || e.Fields["truncated"] != "" {
		t.Fatalf("60,000-byte datagram became %d bytes (fields %v)", len(e.Message), e.Fields)
	}
}

// TestOctetCountOverLimit: a frame announcing more than the maximum
// closes that connection, counted; another connection is unaffected.
func TestOctetCountOverLimit(t *testing.T) {
	sink := &memSink{}
	cfg := testConfig(tcpL())
	cfg.MaxMessageSize = 4096
	r := start(t, cfg, sink)
	frame := func(m string) string { return strconv.Itoa(len(m)) + " " + m }
	good := dial(t, "tcp", r.addr(0))
	write(t, good, frame("<13>1 - h a - - - good 1"))
	bad := dial(t, "tcp", r.addr(0))
	write(t, bad, frame("<13>1 - h a - - - bad 1")+"99999 <13>1 - h a - - - never\n")
	_ = bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("bad connection not closed: %v", err)
	}
	write(t, good, frame("<13>1 - h a - - - good 2"))
	waitFor(t, "good entries", func() bool { return sink.len() == 3 })
	st := r.waitStats(t, 0, "oversize counted", func(s Stats) bool { return s.Closed[CloseOversize] == 1 })
	if st.Dropped[DropOversize] != 1 || st.ConnsOpen != 1 {
		t.Fatalf("stats %+v", st)
	}
	r.stop(t)
	r.checkBalance(t)
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestMaxConnections: beyond max_connections a connection is accepted and
// closed at once, counted; when one closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	sink := &memSink{}
	cfg := testConfig(tcpL())
	cfg.MaxConnections = 3
	r := start(t, cfg, sink)
	var conns []net.Conn
	for range 3 {
		conns = append(conns, dial(t, "tcp", r.addr(0)))
	}
	r.waitStats(t, 0, "3 open", func(s Stats) bool { return s.ConnsOpen == 3 })
	extra := dial(t, "tcp", r.addr(0))
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("4th connection not closed: %v", err)
	}
	r.waitStats(t, 0, "refusal counted", func(s Stats) bool { return s.Closed[CloseLimit] == 1 })
	conns[0].Close()
	r.waitStats(t, 0, "2 open", func(s Stats) bool { return s.ConnsOpen == 2 })
	c := dial(t, "tcp", r.addr(0))
	write(t, c, "<13>1 - h a - - - served\n")
	waitFor(t, "entry", func() bool { return sink.len() == 1 })
}

// TestBadInput: binary garbage (TCP and UDP) is dropped and counted;
// invalid UTF-8 is kept; a PRI-only line and a negative octet count
// (which panic go-syslog v2.3.0) are read; the messages around them all
// arrive.
func TestBadInput(t *testing.T) {
	sink := &memSink{}
	r := start(t, testConfig(udpL(), tcpL()), sink)
	garbage := make([]byte, 2000)
	_, _ = rand.Read(garbage)
	for i := range garbage {
		if garbage[i] == '\n' || garbage[i] == 0 {
			garbage[i] = 0x01
		}
	}
	garbage[0] = 0x01 // not '<', not a digit, not 0x16

	c := dial(t, "tcp", r.addr(1))
	write(t, c, "<13>1 - h a - - - before\n")
	write(t, c, string(garbage)+"\n")
	write(t, c, "<13>1 - h a - - - caf\xe9 latin1\n")
	write(t, c, "<13>\n")
	write(t, c, "-5 <13>1 - h a - - - negative count\n")
	write(t, c, "<13>1 - h a - - - after\n")
	u := dial(t, "udp", r.addr(0))
	write(t, u, "<13>1 - h a - - - udp before")
	write(t, u, string(garbage))
	write(t, u, "<13>")
	write(t, u, "<13>1 - h a - - - udp after")
	waitFor(t, "entries", func() bool { return sink.len() == 8 })
	m := messages(sink)
	for _, want := range []string{"before", "after", "udp before", "udp after", "caf\xe9 latin1", "-5 <13>1 - h a - - - negative count", ""} {
		if _, ok := m[want]; !ok {
			t.Errorf("missing entry %q (have %d entries)", want, len(m))
		}
	}
	if e := m["-5 <13>1 - h a - - - negative count"]; e.Fields["parse_error"] == "" || e.Level != bus.LevelNotice {
		t.Errorf("negative count line: %s", e.AppendJSON(nil))
	}
	if j := string(func() []byte { e := m["caf\xe9 latin1"]; return e.AppendJSON(nil) }()); !strings.Contains(j, `caf\ufffd latin1`) {
		t.Errorf("invalid UTF-8 encoded as %s", j)
	}
	for i, st := range r.Stats() {
		if st.Dropped[DropGarbage] != 1 {
			t.Errorf("listener %d: garbage dropped %d, want 1 (%+v)", i, st.Dropped[DropGarbage], st)
		}
	}
	r.stop(t)
	r.checkBalance(t)
}

// TestIdleTimeout closes a silent connection when configured, and not by
// default.
func TestIdleTimeout(t *testing.T) {
	cfg := testConfig(tcpL())
	cfg.IdleTimeout = 300 * time.Millisecond
	r := start(t, cfg, &memSink{})
	c := dial(t, "tcp", r.addr(0))
	write(t, c, "<13>1 - h a - - - x\n")
	r.waitStats(t, 0, "idle close", func(s Stats) bool { return s.Closed[CloseIdle] == 1 })
	_ = c

	r2 := start(t, testConfig(tcpL()), &memSink{})
	dial(t, "tcp", r2.addr(0))
	r2.waitStats(t, 0, "open", func(s Stats) bool { return s.ConnsOpen == 1 })
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st := r2.Stats()[0]; st.ConnsOpen != 1 {
			t.Fatalf("connection closed without idle_timeout: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBackpressureTCP: while the sink blocks, a TCP connection is not
// read: the sender's writes stall (the data waits in its socket) and the
// receiver holds one buffer, not the stream. Released, every message
// arrives.
func TestBackpressureTCP(t *testing.T) {
	sink := &memSink{gate: make(chan struct{})}
	r := start(t, testConfig(tcpL()), sink)
	c := dial(t, "tcp", r.addr(0)).(*net.TCPConn)
	_ = c.SetWriteBuffer(64 << 10)
	line := "<13>1 - host app - - - " + strings.Repeat("z", 200) + " "
	var sent atomic.Int64
	stalled := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte(line + strconv.Itoa(i) + "\n")); err != nil {
				close(stalled)
				return
			}
			sent.Add(1)
		}
	})
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		t.Fatal("the sender never stalled: the receiver keeps reading while the sink blocks")
	}
	wg.Wait()
	st := r.Stats()[0]
	// The receiver took at most one message from its buffer into Publish.
	if st.Received > 1 {
		t.Fatalf("received %d while the sink blocked", st.Received)
	}
	t.Logf("sender stalled after %d messages (%d KiB), receiver holds one read buffer", sent.Load(), sent.Load()*int64(len(line)+5)>>10)
	close(sink.gate)
	n := int(sent.Load())
	waitFor(t, "every message sent", func() bool { return sink.len() >= n })
	got := sink.all()
	for i := range n {
		if want := strconv.Itoa(i); !strings.HasSuffix(got[i].Message, " "+want) {
			t.Fatalf("entry %d is %q", i, got[i].Message[len(got[i].Message)-10:])
		}
	}
}

// TestBackpressureUDP: while the sink blocks, datagrams fill the bounded
// queue and the rest are dropped and counted: received = published +
// dropped.
func TestBackpressureUDP(t *testing.T) {
	sink := &memSink{gate: make(chan struct{})}
	cfg := testConfig(udpL())
	cfg.QueueLength = 100
	r := start(t, cfg, sink)
	u := dial(t, "udp", r.addr(0))
	const n = 1000
	for i := range n {
		write(t, u, fmt.Sprintf("<13>1 - h a - - - %d", i))
	}
	st := r.waitStats(t, 0, "all received", func(s Stats) bool { return s.Received == n })
	if st.Dropped[DropQueueFull] < n-102 {
		t.Fatalf("queue_full drops %d, want about %d", st.Dropped[DropQueueFull], n-101)
	}
	close(sink.gate)
	r.waitStats(t, 0, "balance", func(s Stats) bool { return s.Received == s.Published+s.DroppedTotal() })
	if st := r.Stats()[0]; st.Published > 101 || st.Published < 100 {
		t.Fatalf("published %d, want the queue (100) and the one in Publish", st.Published)
	}
}

// TestShutdownPublishesWhatWasRead: messages read before shutdown are
// published during the drain, even when the sink was blocked at the
// moment of cancellation; datagrams queued are published too.
func TestShutdownPublishesWhatWasRead(t *testing.T) {
	sink := &memSink{gate: make(chan struct{})}
	r := start(t, testConfig(tcpL(), udpL()), sink)
	var batch strings.Builder
	for i := range 50 {
		fmt.Fprintf(&batch, "<13>1 - h a - - - tcp %d\n", i)
	}
	c := dial(t, "tcp", r.addr(0))
	write(t, c, batch.String())
	u := dial(t, "udp", r.addr(1))
	for i := range 50 {
		write(t, u, fmt.Sprintf("<13>1 - h a - - - udp %d", i))
	}
	r.waitStats(t, 0, "tcp read", func(s Stats) bool { return s.Received == 1 })
	r.waitStats(t, 1, "udp queued", func(s Stats) bool { return s.Received == 50 })
	r.cancel()
	r.cancel = nil
	time.AfterFunc(200*time.Millisecond, func() { close(sink.gate) })
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	// Everything read was published: the 50 datagrams queued, and every
	// TCP frame of the read in progress (one read holds all 50 here).
	st := r.Stats()
	if st[1].Published != 50 || st[0].Published != st[0].Received || sink.len() != int(st[0].Received)+50 {
		t.Fatalf("published %d; stats %+v", sink.len(), st)
	}
	if st[0].Received != 50 {
		t.Logf("the first TCP read held %d of 50 frames", st[0].Received)
	}
	r.checkBalance(t)
}

// TestShutdownDuringUDPTraffic: stopping while datagrams pour in neither
// panics (go-syslog v2.3.0 sends on a closed channel) nor leaks.
func TestShutdownDuringUDPTraffic(t *testing.T) {
	sink := &memSink{}
	r := start(t, testConfig(udpL(), tcpL()), sink)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, network := range []string{"udp", "tcp"} {
		addr := r.addr(0)
		if network == "tcp" {
			addr = r.addr(1)
		}
		c := dial(t, network, addr)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := fmt.Fprintf(c, "<13>1 - h a - - - %d\n", i); err != nil && network == "tcp" {
					return
				}
			}
		})
	}
	r.waitStats(t, 0, "traffic", func(s Stats) bool { return s.Received > 1000 })
	r.stop(t)
	close(stop)
	wg.Wait()
	r.checkBalance(t)
}

// TestUnixSockets: unixgram and unix sockets are created with their mode,
// replace a stale socket file, refuse a live one or a regular file, and
// are removed at stop. Messages carry the local host name.
func TestUnixSockets(t *testing.T) {
	dir := t.TempDir()
	dg, st := filepath.Join(dir, "log.dgram"), filepath.Join(dir, "log.stream")
	// A stale socket file: bound, then closed without unlinking.
	stale, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dg, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	stale.Close()
	if _, err := os.Lstat(dg); err != nil {
		t.Fatalf("stale socket file gone: %v", err)
	}
	sink := &memSink{}
	cfg := testConfig(
		Listener{Name: "dgram", Protocol: ProtoUnixgram, Address: dg, SocketMode: "0620"},
		Listener{Name: "stream", Protocol: ProtoUnix, Address: st},
	)
	r := start(t, cfg, sink)
	for path, mode := range map[string]os.FileMode{dg: 0o620, st: 0o666} {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v, want socket %v", path, fi.Mode(), err, mode)
		}
	}
	write(t, dial(t, "unixgram", dg), "<13>Mar 10 11:59:58 app[1]: over unixgram")
	write(t, dial(t, "unix", st), "<13>Mar 10 11:59:58 app[1]: over unix\n")
	waitFor(t, "2 entries", func() bool { return sink.len() == 2 })
	host, _ := os.Hostname()
	for _, e := range sink.all() {
		if e.Host != host || e.Service != "app" {
			t.Fatalf("entry %s, want host %q", e.AppendJSON(nil), host)
		}
	}
	// A live socket is not taken over.
	if _, err := New(testConfig(Listener{Protocol: ProtoUnixgram, Address: dg}), nil, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second receiver on a live socket: %v", err)
	}
	r.stop(t)
	for _, p := range []string{dg, st} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left behind: %v", p, err)
		}
	}
	// A regular file is not replaced.
	if err := os.WriteFile(dg, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(testConfig(Listener{Protocol: ProtoUnixgram, Address: dg}), nil, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("receiver on a regular file: %v", err)
	}
}

// TestClock: RFC 3164 year resolution uses the injected clock, across
// new year.
func TestClock(t *testing.T) {
	sink := &memSink{}
	cfg := testConfig(udpL())
	cfg.Clock = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC) }
	r := start(t, cfg, sink)
	u := dial(t, "udp", r.addr(0))
	write(t, u, "<13>Dec 31 23:59:58 host app: last year")
	write(t, u, "<13>Jan  1 00:00:01 host app: this year")
	waitFor(t, "2 entries", func() bool { return sink.len() == 2 })
	m := messages(sink)
	if y := m["last year"].Time.Year(); y != 2025 {
		t.Errorf("Dec 31 read on Jan 1 2026: year %d", y)
	}
	if y := m["this year"].Time.Year(); y != 2026 {
		t.Errorf("Jan 1 read on Jan 1 2026: year %d", y)
	}
	if !m["last year"].Received.Equal(cfg.Clock()) {
		t.Errorf("received %v", m["last year"].Received)
	}
}

// TestConfigValidate checks that errors name the key.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"disabled with nonsense", func(c *Config) { c.Enabled = false; c.MaxConnections = -1 }, ""},
		{"no listeners", func(c *Config) { c.Listeners = nil }, "syslog.listeners:"},
		{"bad protocol", func(c *Config) { c.Listeners[1].Protocol = "sctp" }, "syslog.listeners[1].protocol:"},
		{"bad address", func(c *Config) { c.Listeners[0].Address = "nohost" }, "syslog.listeners[0].address:"},
		{"duplicate", func(c *Config) { c.Listeners[1].Protocol = "udp" }, "syslog.listeners[1]"},
		{"shared name across kinds", func(c *Config) { c.Listeners[0].Name, c.Listeners[1].Name = "x", "x" }, ""},
		{"shared name same kind", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "syslog", Protocol: "unix", Address: "/tmp/x"})
		}, "syslog.listeners[2].name:"},
		{"tls without cert", func(c *Config) { c.Listeners[1].Protocol = "tls" }, "syslog.listeners[1].tls.cert_file:"},
		{"tls on udp", func(c *Config) { c.Listeners[0].TLS.CertFile = "x" }, "syslog.listeners[0].tls:"},
		{"socket mode", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Protocol: "unix", Address: "/tmp/x", SocketMode: "999"})
		}, "syslog.listeners[2].socket_mode:"},
		{"max size", func(c *Config) { c.MaxMessageSize = 100 }, "syslog.max_message_size:"},
		{"missing host", func(c *Config) { c.MissingHost = "dns" }, "syslog.missing_host:"},
		{"timezone", func(c *Config) { c.Timezone = "Mars/Olympus" }, "syslog.timezone:"},
		{"activated only", func(c *Config) { c.Listeners[0].Address = "" }, ""},
		{"no address no name", func(c *Config) { c.Listeners[0].Address, c.Listeners[0].Name = "", "" }, "syslog.listeners[0].address:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}

// TestPortInUse: New fails when an address is taken, naming the key.
func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = New(testConfig(udpL(), Listener{Protocol: ProtoTCP, Address: busy.Addr().String()}), nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "syslog.listeners[1].address:") {
		t.Fatalf("error %v", err)
	}
}
