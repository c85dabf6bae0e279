//go:build cgo && linux

package journald_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	journaldtest.MaybeWriter()
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		benchCleanup()
		os.Exit(code)
	}))
}

func newTestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// harness is a private journald, a bus, and the source reading one into
// the other.
type harness struct {
	t        *testing.T
	jd       *journaldtest.Journald
	b        *bus.Bus
	id       string // TEST_ID of this test's entries
	stateDir string
	cfg      journald.Config
	log      *logBuffer

	reg    *prometheus.Registry
	src    *journald.Source
	cancel context.CancelFunc
	done   chan error
}

type harnessOpts struct {
	journald journaldtest.Options
	bus      []func(*bus.Config)
	jd       *journaldtest.Journald // reuse this journald
}

func newHarness(t *testing.T, o harnessOpts, mod func(*journald.Config)) *harness {
	t.Helper()
	h := &harness{t: t, id: newTestID(), stateDir: t.TempDir(), log: &logBuffer{t: t}}
	h.jd = o.jd
	if h.jd == nil {
		h.jd = journaldtest.Start(t, o.journald)
	}
	h.b = bustest.Open(t, o.bus...)
	h.cfg = journald.DefaultConfig()
	h.cfg.Enabled = journald.On
	h.cfg.Path = h.jd.Dir
	h.cfg.Start = "head"
	h.cfg.Fields = append(h.cfg.Fields, "TEST_ID", "SEQ")
	h.cfg.CommitInterval = 50 * time.Millisecond
	if mod != nil {
		mod(&h.cfg)
	}
	t.Cleanup(h.stop)
	return h
}

// start builds a new Source (fresh metrics) and runs it.
func (h *harness) start() {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	src, err := journald.New(h.cfg, h.stateDir, h.log.logger(), h.reg)
	if err != nil {
		h.t.Fatalf("journald.New: %v", err)
	}
	if !src.Enabled() {
		h.t.Fatalf("source not enabled: %s", h.log.String())
	}
	h.src = src
	following := h.log.count("following the journal")
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	pub := h.b.Publisher()
	go func() { h.done <- src.Run(ctx, pub) }()
	// Entries written from now on are after the start position.
	bustest.WaitFor(h.t, 20*time.Second, "the source to position itself", func() bool {
		return h.log.count("following the journal") > following
	})
}

// stop ends Run and waits for it.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("Run did not return within 30s of cancel")
	}
}

// send writes one entry with this test's TEST_ID and the given fields.
func (h *harness) send(fields ...string) {
	h.t.Helper()
	if err := h.jd.Send(append([]string{"TEST_ID=" + h.id}, fields...)...); err != nil {
		h.t.Fatal(err)
	}
}

// sendSeq writes entries SEQ=from..to-1.
func (h *harness) sendSeq(from, to int, fields ...string) {
	h.t.Helper()
	for i := from; i < to; i++ {
		h.send(append([]string{fmt.Sprintf("MESSAGE=entry %d", i), fmt.Sprintf("SEQ=%d", i), "SYSLOG_IDENTIFIER=seqtest"}, fields...)...)
	}
}

// received is what the bus holds for this test.
type received struct {
	Subject string
	Seq     uint64
	Entry   bus.Entry
}

// collect reads the stream from its start until it holds n entries of
// this test (or timeout), and returns them.
func (h *harness) collect(n int, timeout time.Duration) []received {
	h.t.Helper()
	return collectFrom(h.t, h.b, func(e bus.Entry) bool { return e.Fields["TEST_ID"] == h.id }, n, timeout)
}

// collectFrom reads the stream from its start until it holds n entries
// that match (or timeout), and returns them.
func collectFrom(t testing.TB, b *bus.Bus, match func(bus.Entry) bool, n int, timeout time.Duration) []received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sub, err := b.Subscribe(ctx, bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{MaxEntries: 1 << 20, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()
	var out []received
	var buf []bus.Event
	for len(out) < n {
		buf, err = sub.NextBatch(ctx, buf[:0], 1024)
		if err != nil {
			break
		}
		for _, ev := range buf {
			if ev.Kind == bus.EventDropped {
				t.Fatalf("subscription dropped %d entries (%s)", ev.Dropped, ev.Reason)
			}
			if ev.Kind != bus.EventEntry {
				continue
			}
			e, err := ev.Entry()
			if err != nil {
				t.Fatalf("bad entry on %s: %v", ev.Subject, err)
			}
			if match(e) {
				out = append(out, received{Subject: ev.Subject, Seq: ev.Seq, Entry: e})
			}
		}
	}
	return out
}

// checkSeqs fails unless entries hold SEQ 0..n-1 each exactly once.
func checkSeqs(t testing.TB, got []received, n int) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, r := range got {
		seen[r.Entry.Fields["SEQ"]]++
	}
	var missing, dup []int
	for i := range n {
		switch seen[fmt.Sprint(i)] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(got) != n {
		t.Fatalf("want SEQ 0..%d once each; got %d entries, %d missing %v, %d duplicated %v",
			n-1, len(got), len(missing), head(missing), len(dup), head(dup))
	}
}

func head(s []int) []int { return s[:min(len(s), 20)] }

// metric returns the value of a counter or gauge, summed over labels that
// match labels ("k=v").
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	return gather(h.t, h.reg, name, labels...)
}

// waitMetric waits until metric(name, labels...) == want; counters are
// added once a batch is published, a moment after its entries.
func (h *harness) waitMetric(want float64, name string, labels ...string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.metric(name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Errorf("%s%v = %v, want %v", name, labels, got, want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gather(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func (h *harness) cursorFile() string {
	return filepath.Join(h.stateDir, "journald.cursor")
}

func (h *harness) savedCursor() string {
	b, _ := os.ReadFile(h.cursorFile())
	return strings.TrimSpace(string(b))
}

// logBuffer collects the source's log lines and passes them to t.Log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	sb strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.sb.Write(p)
	l.mu.Unlock()
	if os.Getenv("LOGSTREAM_TEST_DEBUG") != "" {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

func (l *logBuffer) count(substr string) int {
	return strings.Count(l.String(), substr)
}

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func journaldNeed(t *testing.T) { journaldtest.Need(t, "journalctl") }

// waitJournal waits until the journal holds n entries of this test.
func waitJournal(t *testing.T, h *harness, n int) {
	t.Helper()
	if err := waitEntries(h.jd.Dir, "TEST_ID="+h.id, n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}
