//go:build cgo && linux

package journald_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/ingest/journald"
)

// threadNices returns the nice value of every thread of this process, by
// thread ID, from /proc/self/task/<tid>/stat.
func threadNices(t *testing.T) map[int]int {
	t.Helper()
	dirs, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	nices := map[int]int{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", d.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		// Fields after the command name (in parentheses, which may hold
		// spaces): state is field 3, nice field 19.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		nice, err := strconv.Atoi(f[19-3])
		if err != nil {
			t.Fatalf("%s: %q", d.Name(), s)
		}
		tid, _ := strconv.Atoi(d.Name())
		nices[tid] = nice
	}
	return nices
}

// lowered returns the threads whose nice value is not the process's.
func lowered(t *testing.T, own int) map[int]int {
	out := map[int]int{}
	for tid, n := range threadNices(t) {
		if n != own {
			out[tid] = n
		}
	}
	return out
}

// TestReaderPriority: with reader_nice the thread that reads the journal,
// and only it, runs that many nice levels below the process; when the
// source stops, its priority is restored (the tests run as root, who may)
// before it runs other goroutines. With reader_nice 0 no thread is
// lowered.
func TestReaderPriority(t *testing.T) {
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	own := 20 - raw
	if own > 12 {
		t.Fatalf("the tests run at nice %d: run them at nice 12 or less, so that nice+7 can be told apart", own)
	}
	if l := lowered(t, own); len(l) > 0 {
		t.Fatalf("threads at another nice value than the process's %d before the source started: %v", own, l)
	}
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) { c.ReaderNice = new(7) })
	h.start()
	h.sendSeq(0, 100)
	checkSeqs(t, h.collect(100, 20*time.Second), 100)
	l := lowered(t, own)
	if len(l) != 1 {
		t.Fatalf("threads at another nice value than the process's %d while reading: %v, want one at %d", own, l, own+7)
	}
	for _, n := range l {
		if n != own+7 {
			t.Errorf("reader thread at nice %d, want %d", n, own+7)
		}
	}
	h.stop()
	if l := lowered(t, own); len(l) > 0 {
		t.Errorf("threads still lowered after the source stopped: %v", l)
	}

	h.cfg.ReaderNice = new(0)
	h.start()
	h.sendSeq(100, 200)
	checkSeqs(t, h.collect(200, 20*time.Second), 200)
	if l := lowered(t, own); len(l) > 0 {
		t.Errorf("reader_nice 0, yet threads at another nice value than the process's %d: %v", own, l)
	}
}
