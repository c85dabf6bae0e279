package syslog

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats-server and nats.go keep a few process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.startSignalProcessing"),
	)
}

// testConfig is a config with the given listeners on free addresses.
func testConfig(ls ...Listener) Config {
	c := Config{Enabled: true, Listeners: ls, Timezone: "UTC"}
	return c
}

func udpL() Listener { return Listener{Name: "udp", Protocol: ProtoUDP, Address: "127.0.0.1:0"} }
func tcpL() Listener { return Listener{Name: "tcp", Protocol: ProtoTCP, Address: "127.0.0.1:0"} }

// running is a Server running in the background against a sink.
type running struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

// start builds and runs a Server; it is stopped (and Run's return
// checked) when the test ends, unless stopped before.
func start(t testing.TB, cfg Config, sink Sink) *running {
	t.Helper()
	s, err := New(cfg, bustest.Logger(t), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx, sink) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after cancel")
	}
}

// addr returns listener i's address.
func (r *running) addr(i int) string { return r.Addrs()[i] }

// waitStats polls until listener i's counters satisfy cond.
func (r *running) waitStats(t testing.TB, i int, what string, cond func(Stats) bool) Stats {
	t.Helper()
	var st Stats
	bustest.WaitFor(t, 30*time.Second, what, func() bool {
		st = r.Stats()[i]
		return cond(st)
	})
	return st
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	bustest.WaitFor(t, 30*time.Second, what, cond)
}

// checkBalance asserts received = published + dropped on every listener.
func (r *running) checkBalance(t testing.TB) {
	t.Helper()
	for _, st := range r.Stats() {
		if st.Received != st.Published+st.DroppedTotal() {
			t.Errorf("listener %s: received %d != published %d + dropped %v", st.Listener, st.Received, st.Published, st.Dropped)
		}
	}
}

// got is one entry read from the bus with its subject.
type got struct {
	subject string
	bus.Entry
}

// subscribe subscribes to everything new on b.
func subscribe(t testing.TB, b *bus.Bus) *bus.Subscription {
	t.Helper()
	sub, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{MaxEntries: 200000, MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// collect reads n entries, failing on a dropped notice or timeout.
func collect(t testing.TB, sub *bus.Subscription, n int, timeout time.Duration) []got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := make([]got, 0, n)
	buf := make([]bus.Event, 0, 1024)
	for len(out) < n {
		evs, err := sub.NextBatch(ctx, buf[:0], 1024)
		if err != nil {
			t.Fatalf("after %d of %d entries: %v", len(out), n, err)
		}
		for _, ev := range evs {
			switch ev.Kind {
			case bus.EventDropped:
				t.Fatalf("subscription dropped %d entries (%s)", ev.Dropped, ev.Reason)
			case bus.EventEntry:
				e, err := ev.Entry()
				if err != nil {
					t.Fatalf("bad entry %s: %v", ev.Data, err)
				}
				out = append(out, got{ev.Subject, e})
			}
		}
	}
	return out
}

// expectNone checks that nothing more arrives for a short while.
func expectNone(t testing.TB, sub *bus.Subscription, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if ev.Kind == bus.EventEntry {
			t.Fatalf("unexpected entry on %s: %s", ev.Subject, ev.Data)
		}
	}
}

// dial connects to a listener.
func dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// memSink records what is published; block makes Publish wait until
// unblocked or ctx ends, to test backpressure.
type memSink struct {
	mu      sync.Mutex
	entries []bus.Entry
	gate    chan struct{} // nil: never block
}

func (m *memSink) Publish(ctx context.Context, e bus.Entry) error {
	m.mu.Lock()
	gate := m.gate
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	m.entries = append(m.entries, e)
	m.mu.Unlock()
	return nil
}

func (m *memSink) Flush(context.Context) error { return nil }

func (m *memSink) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func (m *memSink) all() []bus.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]bus.Entry(nil), m.entries...)
}

// need fails the test with the Debian package to install when a tool is
// missing.
func need(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s", tool, pkg)
	}
	return p
}

func uniq(t testing.TB) string {
	return strings.NewReplacer("/", "-", " ", "-", "#", "").Replace(fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()%1e6))
}
