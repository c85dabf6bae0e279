//go:build cgo && linux

package journald_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/sdjournal"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/busbench"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/internal/sdj"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// The benchmark journal: LOGSTREAM_BENCH_ENTRIES entries (default
// 200,000), written once per test binary into a private journald, which is
// then stopped so that every reader sees the same, still files.
var benchJournal struct {
	once sync.Once
	jd   *journaldtest.Journald
	n    int
	err  error
}

func benchCleanup() {
	if benchJournal.jd != nil {
		benchJournal.jd.Close()
	}
}

var benchServices = []string{"nginx", "sshd", "cron", "postgres", "dockerd", "kubelet", "app-api", "app-worker",
	"systemd-logind", "NetworkManager", "chronyd", "rsyslogd", "containerd", "haproxy", "redis", "grafana",
	"prometheus", "node_exporter", "sudo", "kernel"}

func benchSetup(b *testing.B) (*journaldtest.Journald, int) {
	b.Helper()
	benchJournal.once.Do(func() {
		n := 200000
		if v := os.Getenv("LOGSTREAM_BENCH_ENTRIES"); v != "" {
			n, _ = strconv.Atoi(v)
		}
		if os.Geteuid() != 0 {
			benchJournal.err = fmt.Errorf("the benchmark journal needs root (a private systemd-journald)")
			return
		}
		jd, err := journaldtest.New(journaldtest.Binary(b), journaldtest.Options{SystemMaxFileSize: "64M"})
		if err != nil {
			benchJournal.err = err
			return
		}
		benchJournal.jd = jd
		start := time.Now()
		for i := range n {
			svc := benchServices[i%len(benchServices)]
			err := jd.Send(
				fmt.Sprintf("MESSAGE=%s: request %d handled in %dms status=200 path=/api/v1/items/%d user=u%d", svc, i, i%997, i*7, i%1000),
				"PRIORITY="+strconv.Itoa(3+i%5),
				"SYSLOG_IDENTIFIER="+svc,
				"SYSLOG_FACILITY=3",
				"CODE_FILE=src/"+svc+"/handler.go", "CODE_LINE="+strconv.Itoa(100+i%50), "CODE_FUNC=handle",
				"TEST_ID=bench", "SEQ="+strconv.Itoa(i))
			if err != nil {
				benchJournal.err = err
				return
			}
		}
		if err := waitEntries(jd.Dir, "TEST_ID=bench", n, 5*time.Minute); err != nil {
			benchJournal.err = err
			return
		}
		jd.Stop()
		b.Logf("benchmark journal: %d entries written in %v, %d files", n, time.Since(start).Round(time.Millisecond), len(jd.Files()))
		benchJournal.n = n
	})
	if benchJournal.err != nil {
		b.Fatal(benchJournal.err)
	}
	return benchJournal.jd, benchJournal.n
}

// waitEntries waits until the journal in dir holds n entries that match.
func waitEntries(dir, match string, n int, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		j, err := sdj.OpenDirectory(dir)
		if err != nil {
			errc <- err
			return
		}
		defer j.Close()
		if err := j.AddMatch(match); err != nil {
			errc <- err
			return
		}
		j.SetFields(nil, false)
		buf := make([]byte, 1<<20)
		got := 0
		deadline := time.Now().Add(timeout)
		for got < n {
			res, err := j.Read(buf, 4096)
			if err != nil {
				errc <- err
				return
			}
			got += res.N
			if res.EOF && got < n {
				if time.Now().After(deadline) {
					errc <- fmt.Errorf("journal %s holds %d of %d entries after %v", dir, got, n, timeout)
					return
				}
				if _, err := j.Wait(100 * time.Millisecond); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	return <-errc
}

// countingSink passes entries on and tells when n were published.
type countingSink struct {
	journald.Sink
	n, target int64
	done      chan struct{}
}

func (c *countingSink) Publish(ctx context.Context, e bus.Entry) error {
	if err := c.Sink.Publish(ctx, e); err != nil {
		return err
	}
	if atomic.AddInt64(&c.n, 1) == c.target {
		close(c.done)
	}
	return nil
}

// discardSink accepts everything at once.
type discardSink struct{}

func (discardSink) Publish(context.Context, bus.Entry) error { return nil }
func (discardSink) Flush(context.Context) error              { return nil }

// captureSink keeps what a bare publisher needs to send the same messages.
type captureSink struct {
	prefix  string
	msgs    []*busbench.Msg
	entries []bus.Entry
}

func (c *captureSink) Publish(_ context.Context, e bus.Entry) error {
	c.msgs = append(c.msgs, busbench.NewMsg(bus.EntrySubject(c.prefix, &e), e.ID, e.AppendJSON(nil)))
	e.Fields = maps.Clone(e.Fields) // the source reuses the map
	c.entries = append(c.entries, e)
	return nil
}
func (c *captureSink) Flush(context.Context) error { return nil }

// runSourceOnce reads the whole benchmark journal from its head into sink
// and returns how long it took until sink.Flush returned after the last
// entry.
func runSourceOnce(b *testing.B, dir string, n int, sink journald.Sink, cpu *cpuMeter) time.Duration {
	b.Helper()
	cfg := journald.DefaultConfig()
	cfg.Enabled = journald.On
	cfg.Path = dir
	cfg.Start = "head"
	cfg.Matches.Fields = []string{"TEST_ID=bench"}
	src, err := journald.New(cfg, b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	cs := &countingSink{Sink: sink, target: int64(n), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stop := cpu.start()
	start := time.Now()
	go func() { done <- src.Run(ctx, cs) }()
	select {
	case <-cs.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d entries published in 5 minutes", atomic.LoadInt64(&cs.n), n)
	}
	if err := sink.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	stop()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

func report(b *testing.B, n int, total time.Duration) {
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "entries/s")
	b.ReportMetric(float64(total.Nanoseconds())/float64(n*b.N), "ns/entry")
}

// cpuMeter measures the CPU time of this process (every thread: the
// source, the publisher and the embedded nats-server) and of its children
// (journalctl).
type cpuMeter struct{ self, children time.Duration }

func (m *cpuMeter) start() (stop func()) {
	s, c := rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)
	return func() {
		m.self += rusage(syscall.RUSAGE_SELF) - s
		m.children += rusage(syscall.RUSAGE_CHILDREN) - c
	}
}

func (m *cpuMeter) report(b *testing.B, n int) {
	b.ReportMetric(float64((m.self+m.children).Nanoseconds())/float64(n*b.N), "cpu-ns/entry")
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkJournal compares, on one journal of 200,000 entries:
// journalctl's fastest output to /dev/null; the source publishing to core
// NATS and to JetStream; a bare JetStream async publisher of the same
// messages; go-systemd's sdjournal reading the same entries (GetEntry);
// and the source into a sink that discards (its own cost).
func BenchmarkJournal(b *testing.B) {
	jd, n := benchSetup(b)
	b.Run("journalctl-export", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			cmd := exec.Command("journalctl", "-D", jd.Dir, "-o", "export", "TEST_ID=bench")
			devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			cmd.Stdout = devnull
			stop := cpu.start()
			start := time.Now()
			err := cmd.Run()
			total += time.Since(start)
			stop()
			devnull.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("source-discard", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			total += runSourceOnce(b, jd.Dir, n, discardSink{}, &cpu)
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("source-core", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			bb := bustest.Open(b, bustest.CoreMode)
			total += runSourceOnce(b, jd.Dir, n, bb.Publisher(), &cpu)
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("source-jetstream", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			bb := bustest.Open(b, func(c *bus.Config) { c.Stream.MaxBytes = 4 << 30 })
			total += runSourceOnce(b, jd.Dir, n, bb.Publisher(), &cpu)
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("source-jetstream-tcp", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			server := bustest.Open(b, func(c *bus.Config) { c.Stream.MaxBytes = 4 << 30 })
			bb := bustest.Open(b, func(c *bus.Config) { c.URLs = []string{server.ClientURL()}; c.Stream.MaxBytes = 4 << 30 })
			total += runSourceOnce(b, jd.Dir, n, bb.Publisher(), &cpu)
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("bare-jetstream", func(b *testing.B) {
		capture := &captureSink{prefix: bus.DefaultPrefix}
		runSourceOnce(b, jd.Dir, n, capture, &cpuMeter{})
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			bb := bustest.Open(b, func(c *bus.Config) { c.Stream.MaxBytes = 4 << 30 })
			stop := cpu.start()
			total += bareJetStream(b, bb.ClientURL(), capture.msgs)
			stop()
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("publisher-jetstream", func(b *testing.B) {
		capture := &captureSink{prefix: bus.DefaultPrefix}
		runSourceOnce(b, jd.Dir, n, capture, &cpuMeter{})
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			bb := bustest.Open(b, func(c *bus.Config) { c.Stream.MaxBytes = 4 << 30 })
			p := bb.Publisher()
			stop := cpu.start()
			start := time.Now()
			for _, e := range capture.entries {
				if err := p.Publish(context.Background(), e); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			stop()
		}
		report(b, n, total)
		cpu.report(b, n)
	})
	b.Run("sdjournal-getentry", func(b *testing.B) {
		var total time.Duration
		var cpu cpuMeter
		for range b.N {
			stop := cpu.start()
			total += goSystemdRead(b, jd.Dir, n)
			stop()
		}
		report(b, n, total)
		cpu.report(b, n)
	})
}

// bareJetStream publishes msgs with nats.go's JetStream async publisher,
// 8192 in flight (the bus publisher's default window), and waits for
// every acknowledgement.
func bareJetStream(b *testing.B, url string, msgs []*busbench.Msg) time.Duration {
	b.Helper()
	p, err := busbench.NewAsyncPublisher(url, "bench-bare", 8192, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	for _, m := range msgs {
		if err := p.Publish(m); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		b.Fatal("acknowledgements missing after 5 minutes")
	}
	return time.Since(start)
}

// goSystemdRead reads the entries with go-systemd's sdjournal: Next and
// GetEntry (every field into a map, and the cursor).
func goSystemdRead(b *testing.B, dir string, n int) time.Duration {
	b.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	j, err := sdjournal.NewJournalFromDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	if err := j.AddMatch("TEST_ID=bench"); err != nil {
		b.Fatal(err)
	}
	got := 0
	for {
		k, err := j.Next()
		if err != nil {
			b.Fatal(err)
		}
		if k == 0 {
			break
		}
		if _, err := j.GetEntry(); err != nil {
			b.Fatal(err)
		}
		got++
	}
	if got != n {
		b.Fatalf("read %d entries, want %d", got, n)
	}
	return time.Since(start)
}
