//go:build cgo && linux

package journald_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// lowered returns the threads whose nice value is not the process's.
func lowered(t *testing.T, own int) map[int]int {
	out := map[int]int{}
	for tid, n := range journaldtest.ThreadNices(t) {
		if n != own {
			out[tid] = n
		}
	}
	return out
}

// processNice returns the nice value of the process: its main thread's,
// whose thread ID is the process ID.
func processNice(t *testing.T) int {
	own, ok := journaldtest.ThreadNices(t)[os.Getpid()]
	if !ok {
		t.Fatal("no main thread in /proc/self/task")
	}
	if own > 12 {
		t.Fatalf("the tests run at nice %d: run them at nice 12 or less, so that nice+7 can be told apart", own)
	}
	return own
}

// expectLowered checks that exactly one thread (the reader) runs by nice
// levels below the process's own, capped at 19; with by 0, that none is
// lowered.
func expectLowered(t *testing.T, own, by int) {
	t.Helper()
	l := lowered(t, own)
	if by == 0 {
		if len(l) != 0 {
			t.Fatalf("threads at another nice value than the process's %d: %v, want none", own, l)
		}
		return
	}
	want := min(own+by, 19)
	if len(l) != 1 {
		t.Fatalf("threads at another nice value than the process's %d while reading: %v, want one at %d", own, l, want)
	}
	for _, n := range l {
		if n != want {
			t.Errorf("reader thread at nice %d, want %d", n, want)
		}
	}
}

// runLowered runs a source with reader_nice 7 and checks that the thread
// that reads the journal, and only it, runs 7 nice levels below the
// process while the source runs.
func runLowered(t *testing.T, own int) {
	if l := lowered(t, own); len(l) > 0 {
		t.Fatalf("threads at another nice value than the process's %d before the source started: %v", own, l)
	}
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) { c.ReaderNice = new(7) })
	h.start()
	h.sendSeq(0, 100)
	checkSeqs(t, h.collect(100, 20*time.Second), 100)
	expectLowered(t, own, 7)
	h.stop()

	h.cfg.ReaderNice = new(0)
	h.start()
	h.sendSeq(100, 200)
	checkSeqs(t, h.collect(200, 20*time.Second), 200)
	h.stop()
}

// TestReaderPriority: with reader_nice the thread that reads the journal,
// and only it, runs that many nice levels below the process; when the
// source stops, its priority is restored (the tests run as root, who may)
// before it runs other goroutines. With reader_nice 0 no thread is
// lowered.
func TestReaderPriority(t *testing.T) {
	own := processNice(t)
	runLowered(t, own)
	if l := lowered(t, own); len(l) > 0 {
		t.Errorf("threads still lowered after the sources stopped: %v", l)
	}
}

// TestReaderPriorityDefault: SetReaderNiceDefault gives the reading
// thread DefaultReaderNice levels below the process for a bus that
// publishes to JetStream (the embedded server's storing sets the rate),
// and the process's priority in core-NATS mode (reading sets the rate). A
// reader_nice left unset reads at the process's priority whatever the
// bus: the source does not guess the mode from its sink.
func TestReaderPriorityDefault(t *testing.T) {
	own := processNice(t)
	for _, c := range []struct {
		name     string
		core     bool // the bus in core-NATS mode
		defaults bool // SetReaderNiceDefault called
		want     int  // nice levels below the process; 0: no thread lowered
	}{
		{"jetstream", false, true, journald.DefaultReaderNice},
		{"core", true, true, 0},
		{"jetstream unset", false, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var opts harnessOpts
			if c.core {
				opts.bus = []func(*bus.Config){bustest.CoreMode}
			}
			h := newHarness(t, opts, func(cfg *journald.Config) {
				cfg.ReaderNice = nil
				if c.defaults {
					cfg.SetReaderNiceDefault(!c.core)
				}
			})
			h.start() // returns once the source follows the journal: after it lowered its thread
			expectLowered(t, own, c.want)
			h.stop()
		})
	}
}

// TestReaderPriorityUnprivileged: without CAP_SYS_NICE (as logstreamd.service
// runs) the reading thread's priority cannot be restored, so the thread
// ends with the source instead of running other goroutines lowered. The
// test runs itself again under setpriv without that capability.
func TestReaderPriorityUnprivileged(t *testing.T) {
	if os.Getenv("LOGSTREAM_TEST_NO_SYS_NICE") == "" {
		journaldtest.Need(t, "setpriv")
		cmd := exec.Command("setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice",
			os.Args[0], "-test.run=^TestReaderPriorityUnprivileged$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "LOGSTREAM_TEST_NO_SYS_NICE=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestReaderPriorityUnprivileged") {
			t.Fatalf("the test without CAP_SYS_NICE: %v\n%s", err, out)
		}
		return
	}
	if capEff(t)&(1<<23) != 0 {
		t.Fatal("setpriv did not take CAP_SYS_NICE away")
	}
	own := processNice(t)
	runLowered(t, own)
	// The main thread cannot end: Go parks it for good instead, so it may
	// stay lowered without running anything.
	bustest.WaitFor(t, 10*time.Second, "the lowered reader thread to end", func() bool {
		l := lowered(t, own)
		delete(l, os.Getpid())
		return len(l) == 0
	})
}

// capEff returns the effective capability set of this process.
func capEff(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return 0
}
