//go:build cgo && linux

package journald_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// sendRetry writes entries SEQ=from..to-1, retrying while journald is
// down (restarting).
func (h *harness) sendRetry(from, to int) {
	h.t.Helper()
	for i := from; i < to; i++ {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := h.jd.Send(fmt.Sprintf("MESSAGE=entry %d", i), fmt.Sprintf("SEQ=%d", i), "SYSLOG_IDENTIFIER=seqtest", "TEST_ID="+h.id)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				h.t.Errorf("send SEQ=%d: %v", i, err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// journalSeqs returns the SEQ values of this test's entries in the
// journal, read by journalctl.
func journalSeqs(t *testing.T, h *harness) map[string]int {
	t.Helper()
	out, err := runOut("journalctl", "-D", h.jd.Dir, "-o", "export", "TEST_ID="+h.id)
	if err != nil {
		t.Fatalf("journalctl: %v: %.500s", err, out)
	}
	seqs := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "SEQ="); ok {
			seqs[v]++
		}
	}
	return seqs
}

// TestRotation: journalctl --rotate, repeatedly, and size-based rotation
// while 20,000 entries are written and followed: nothing lost, nothing
// twice, no gap in journald's sequence numbers.
func TestRotation(t *testing.T) {
	journaldNeed(t)
	const n = 20000
	h := newHarness(t, harnessOpts{journald: journaldtest.Options{SystemMaxFileSize: "1M"}}, func(c *journald.Config) { c.Start = "tail" })
	// Only this test's entries, so that entries_published_total counts
	// them exactly (journald logs each rotation): a second copy would be
	// hidden by the stream's deduplication but not from the counter.
	h.cfg.Matches.Fields = []string{"TEST_ID=" + h.id}
	h.start()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	rotations := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			h.jd.Rotate()
			rotations++
		}
	}()
	h.sendRetry(0, n)
	waitJournal(t, h, n)
	close(stop)
	wg.Wait()
	checkSeqs(t, h.collect(n, 60*time.Second), n)
	h.waitMetric(n, "logstream_journald_entries_published_total")
	t.Logf("%d rotations, %d journal files", rotations, len(h.jd.Files()))
	if len(h.jd.Files()) < 5 {
		t.Errorf("only %d journal files: rotation did not happen", len(h.jd.Files()))
	}
}

// TestJournaldRestart: journald killed (SIGKILL: it starts a new file and
// a new sequence) and stopped (SIGTERM) while entries are written and
// followed. Every entry that is in the journal reaches the bus once.
func TestJournaldRestart(t *testing.T) {
	journaldNeed(t)
	const n = 6000
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) { c.Start = "tail" })
	h.cfg.Matches.Fields = []string{"TEST_ID=" + h.id}
	h.start()
	h.sendRetry(0, 1000)
	h.jd.Restart(true)
	h.sendRetry(1000, 2000)
	h.jd.Restart(false)
	h.sendRetry(2000, 3000)
	h.jd.Restart(true)
	h.sendRetry(3000, n)
	inJournal := journalSeqs(t, h)
	if len(inJournal) < n-100 {
		t.Fatalf("the journal holds only %d of %d entries", len(inJournal), n)
	}
	got := h.collect(len(inJournal), 30*time.Second)
	onBus := map[string]int{}
	ids := map[string]bool{}
	for _, r := range got {
		onBus[r.Entry.Fields["SEQ"]]++
		if ids[r.Entry.ID] {
			t.Errorf("ID %s twice", r.Entry.ID)
		}
		ids[r.Entry.ID] = true
	}
	for s := range inJournal {
		if onBus[s] != 1 {
			t.Errorf("SEQ %s in the journal is %d times on the bus", s, onBus[s])
		}
	}
	if len(onBus) != len(inJournal) {
		t.Errorf("%d entries on the bus, %d in the journal", len(onBus), len(inJournal))
	}
	h.waitMetric(float64(len(inJournal)), "logstream_journald_entries_published_total")
	t.Logf("%d of %d entries in the journal (journald drops what is queued when killed)", len(inJournal), n)
}

// TestBackpressureAndVacuum: the bus stops acknowledging (its server is
// down): the source stops reading after a bounded amount and the cursor
// does not move; journal files are rotated and vacuumed meanwhile. When
// the server is back every entry arrives, or is counted lost.
func TestBackpressureAndVacuum(t *testing.T) {
	journaldNeed(t)
	ns := bustest.StartProcess(t)
	h := newHarness(t, harnessOpts{bus: []func(*bus.Config){func(c *bus.Config) {
		c.URLs = []string{ns.URL()}
		c.Publish.MaxInFlight = 50
		c.Publish.AckTimeout = 500 * time.Millisecond
		c.Publish.Connections = 1
	}}}, func(c *journald.Config) { c.Start = "tail" })
	h.start()
	h.sendSeq(0, 10)
	checkSeqs(t, h.collect(10, 20*time.Second), 10)
	bustest.WaitFor(t, 10*time.Second, "the cursor at SEQ 9", func() bool {
		return h.savedCursor() != "" && !strings.Contains(journalctlAfter(t, h, h.savedCursor()), "SEQ=")
	})
	ns.Stop()
	cursorBefore := h.savedCursor()
	const n = 5010
	h.sendSeq(10, n)
	waitJournal(t, h, n)
	// The reader stops: at most the publisher's window plus the read-ahead.
	var read float64
	bustest.WaitFor(t, 20*time.Second, "reading to stop", func() bool {
		r := h.metric("logstream_journald_entries_read_total")
		if r == read && r > 10 {
			return true
		}
		read = r
		time.Sleep(200 * time.Millisecond)
		return false
	})
	if limit := float64(10 + 50 + 5*256 + 10); read > limit {
		t.Errorf("read %v entries with the bus down, want at most %v", read, limit)
	}
	if c := h.savedCursor(); c != cursorBefore {
		t.Errorf("cursor moved while the bus was down: %s -> %s", cursorBefore, c)
	}
	bustest.WaitFor(t, 10*time.Second, "cursor_lag_seconds above 0 while the bus is down", func() bool {
		return h.metric("logstream_journald_cursor_lag_seconds") > 0
	})
	h.jd.Rotate()
	h.sendSeq(n, n+10)
	waitJournal(t, h, n+10)
	h.jd.Vacuum(1)
	ns.Start()
	// Every entry arrives, or is counted as lost.
	bustest.WaitFor(t, 60*time.Second, "every entry published or counted lost", func() bool {
		return h.metric("logstream_journald_entries_published_total")+h.metric("logstream_journald_entries_lost_total") >= n+10
	})
	lost := int(h.metric("logstream_journald_entries_lost_total"))
	got := h.collect(n+10-lost, 30*time.Second)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Entry.Fields["SEQ"]]++
	}
	for s, c := range seen {
		if c != 1 {
			t.Errorf("SEQ %s %d times", s, c)
		}
	}
	if len(seen)+lost != n+10 {
		t.Errorf("%d entries on the bus + %d counted lost, want %d", len(seen), lost, n+10)
	}
	t.Logf("%d on the bus, %d lost to vacuuming", len(seen), lost)
	bustest.WaitFor(t, 10*time.Second, "no cursor lag", func() bool {
		return h.metric("logstream_journald_cursor_lag_seconds") == 0
	})
}

// TestIdle: a caught-up source sleeps in poll(2): it uses next to no CPU
// and writes no cursor.
func TestIdle(t *testing.T) {
	h := newHarness(t, harnessOpts{}, nil)
	h.sendSeq(0, 10)
	h.start()
	checkSeqs(t, h.collect(10, 20*time.Second), 10)
	bustest.WaitFor(t, 10*time.Second, "the cursor saved", func() bool { return h.metric("logstream_journald_cursor_saves_total") > 0 })
	time.Sleep(200 * time.Millisecond) // let the last commit finish
	saves := h.metric("logstream_journald_cursor_saves_total")
	st, _ := os.Stat(h.cursorFile())
	before := cpuTime()
	start := time.Now()
	time.Sleep(2 * time.Second) // measuring idleness: nothing to wait for
	used := cpuTime() - before
	if frac := used.Seconds() / time.Since(start).Seconds(); frac > 0.05 {
		t.Errorf("idle process used %v CPU in %v (%.1f%%)", used, time.Since(start), 100*frac)
	}
	if s := h.metric("logstream_journald_cursor_saves_total"); s != saves {
		t.Errorf("%v cursor saves while idle", s-saves)
	}
	if st2, _ := os.Stat(h.cursorFile()); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("cursor file written while idle")
	}
	// Still following.
	h.sendSeq(10, 11)
	checkSeqs(t, h.collect(11, 20*time.Second), 11)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestStart: tail, head and a time, used when there is no cursor.
func TestStart(t *testing.T) {
	jd := journaldtest.Start(t)
	id := newTestID()
	sent := 0
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if err := jd.Send(fmt.Sprintf("MESSAGE=entry %d", i), fmt.Sprintf("SEQ=%d", i), "TEST_ID="+id); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		if err := waitEntries(jd.Dir, "TEST_ID="+id, sent, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	send(0, 5)
	mid := time.Now()
	send(5, 10)
	cases := []struct {
		start string
		want  int // entries read of the 10 written before mid, plus 1 after
	}{
		{"tail", 1},
		{"head", 11},
		{mid.Format(time.RFC3339Nano), 6},
		{"1h", 11},
	}
	for i, c := range cases {
		if c.want > 1 {
			c.want += i // the earlier cases' entries
		}
		t.Run(c.start, func(t *testing.T) {
			h := newHarness(t, harnessOpts{jd: jd}, func(cfg *journald.Config) { cfg.Start = c.start })
			h.id = id
			h.start()
			send(100+i, 101+i)
			got := h.collect(c.want, 20*time.Second)
			if len(got) != c.want {
				t.Errorf("start %s: %d entries, want %d", c.start, len(got), c.want)
			}
		})
	}
}

// TestNamespace reads a journald namespace by name.
func TestNamespace(t *testing.T) {
	jd := journaldtest.Start(t)
	h := newHarness(t, harnessOpts{jd: jd}, func(c *journald.Config) {
		c.Path = ""
		c.Namespace = jd.Namespace
	})
	h.sendSeq(0, 5)
	h.start()
	checkSeqs(t, h.collect(5, 20*time.Second), 5)
}
