//go:build cgo && linux

package journald_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald"
)

// TestCursorResume: stopped and started again, the source continues after
// the last entry it published — the entry the cursor names is not sent
// again (SeekCursor lands on it: TestCursor skips it) and nothing written
// while it was stopped is missed.
func TestCursorResume(t *testing.T) {
	h := newHarness(t, harnessOpts{}, nil)
	h.sendSeq(0, 100)
	h.start()
	checkSeqs(t, h.collect(100, 20*time.Second), 100)
	h.stop()
	saved := h.savedCursor()
	if saved == "" {
		t.Fatal("no cursor saved at stop")
	}
	// The cursor names the last entry: journalctl finds nothing after it.
	if out := journalctlAfter(t, h, saved); strings.Contains(out, "SEQ=") {
		t.Errorf("entries after the saved cursor: %s", out)
	}
	h.sendSeq(100, 200)
	h.start()
	checkSeqs(t, h.collect(200, 20*time.Second), 200)
	// Exactly the new ones (the first run also read journald's own
	// messages, written before the test's).
	h.waitMetric(100, "logstream_journald_entries_published_total")
	if n := h.metric("logstream_journald_cursor_invalid_total"); n != 0 {
		t.Errorf("cursor_invalid_total = %v", n)
	}
}

// journalctlAfter lists this test's entries after cursor.
func journalctlAfter(t *testing.T, h *harness, cursor string) string {
	t.Helper()
	args := []string{"-D", h.jd.Dir, "-o", "export", "TEST_ID=" + h.id}
	if cursor != "" {
		args = append(args, "--after-cursor", cursor)
	}
	out, err := runOut("journalctl", args...)
	if err != nil {
		t.Fatalf("journalctl --after-cursor: %v: %s", err, out)
	}
	return out
}

// TestCursorInvalid: an empty, corrupt, foreign or vanished cursor gives
// one warning, a counter, and the documented fallback; the source keeps
// following.
func TestCursorInvalid(t *testing.T) {
	const foreign = "s=0123456789abcdef0123456789abcdef;i=5;b=fedcba9876543210fedcba9876543210;m=1;t=1;x=1"
	cases := []struct {
		name, content string
		start         string
		reason        string
		wantOld       bool // entries written before the start are read
	}{
		{"empty", "", "tail", "empty", false},
		{"blank lines", "\n\n", "head", "empty", true},
		{"corrupt", "not a cursor at all", "tail", "corrupt", false},
		{"corrupt hex", "s=zz;i=1;b=2", "head", "corrupt", true},
		// A cursor of another journal: journald positions by its time
		// (here the epoch), so reading starts at the oldest entry.
		{"foreign", foreign, "tail", "foreign", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{}, func(cfg *journald.Config) { cfg.Start = c.start })
			if err := os.WriteFile(h.cursorFile(), []byte(c.content), 0o644); err != nil {
				t.Fatal(err)
			}
			h.sendSeq(0, 5)
			waitJournal(t, h, 5)
			h.start()
			bustest.WaitFor(t, 10*time.Second, "the reader to start", func() bool {
				return strings.Contains(h.log.String(), "saved journal cursor unusable")
			})
			h.sendSeq(5, 10)
			want := 5
			if c.wantOld {
				want = 10
			}
			got := h.collect(want, 20*time.Second)
			if len(got) != want {
				t.Fatalf("got %d entries, want %d", len(got), want)
			}
			if !c.wantOld {
				for _, r := range got {
					if r.Entry.Fields["SEQ"] < "5" {
						t.Errorf("entry %s before the start was read", r.Entry.Fields["SEQ"])
					}
				}
			}
			h.waitMetric(1, "logstream_journald_cursor_invalid_total", "reason="+c.reason)
			if n := h.log.count("saved journal cursor unusable"); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, h.log.String())
			}
			// The source saves a good cursor from now on.
			bustest.WaitFor(t, 10*time.Second, "a new cursor", func() bool { return strings.HasPrefix(h.savedCursor(), "s=") })
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		h := newHarness(t, harnessOpts{}, nil)
		if err := os.Mkdir(h.cursorFile(), 0o755); err != nil { // a directory: reading fails
			t.Fatal(err)
		}
		h.sendSeq(0, 3)
		h.start()
		checkSeqs(t, h.collect(3, 20*time.Second), 3)
		h.waitMetric(1, "logstream_journald_cursor_invalid_total", "reason=unreadable")
		bustest.WaitFor(t, 10*time.Second, "a failed cursor save", func() bool {
			return h.metric("logstream_journald_cursor_save_errors_total") >= 1
		})
	})
}

// TestCursorVanished: the cursor's entry was vacuumed with others while
// the source was stopped. It resumes at the oldest entry left, warns once
// and counts the entries it never saw.
func TestCursorVanished(t *testing.T) {
	journaldNeed(t)
	h := newHarness(t, harnessOpts{}, nil)
	h.sendSeq(0, 10)
	h.start()
	checkSeqs(t, h.collect(10, 20*time.Second), 10)
	h.stop()
	h.sendSeq(10, 15) // never read: vacuumed below
	waitJournal(t, h, 15)
	h.jd.Rotate()
	h.sendSeq(15, 20)
	waitJournal(t, h, 20)
	h.jd.Vacuum(1)
	if out := journalctlAfter(t, h, ""); strings.Contains(out, "SEQ=10\n") {
		t.Fatalf("vacuum left the old entries")
	}
	h.start()
	got := h.collect(15, 20*time.Second)
	seqs := map[string]bool{}
	for _, r := range got {
		seqs[r.Entry.Fields["SEQ"]] = true
	}
	for i := 15; i < 20; i++ {
		if !seqs[fmt.Sprint(i)] {
			t.Errorf("SEQ %d missing", i)
		}
	}
	h.waitMetric(1, "logstream_journald_cursor_invalid_total", "reason=vanished")
	if n := h.metric("logstream_journald_entries_lost_total"); n < 5 {
		t.Errorf("entries_lost_total = %v, want ≥ 5", n)
	}
	if n := h.log.count("saved journal cursor unusable"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

// TestCommitBatching: with a long commit_interval, commit_entries alone
// makes the cursor follow; fewer entries than that wait for the interval.
func TestCommitBatching(t *testing.T) {
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) {
		c.CommitInterval = time.Hour
		c.CommitEntries = 10
		c.Start = "tail"
	})
	h.start()
	saves := func() float64 { return h.metric("logstream_journald_cursor_saves_total") }
	bustest.WaitFor(t, 10*time.Second, "the start position saved", func() bool { return saves() == 1 })
	h.sendSeq(0, 30)
	checkSeqs(t, h.collect(30, 20*time.Second), 30)
	bustest.WaitFor(t, 10*time.Second, "the cursor at SEQ 29", func() bool {
		return !strings.Contains(journalctlAfter(t, h, h.savedCursor()), "SEQ=")
	})
	n := saves()
	h.sendSeq(30, 35) // fewer than commit_entries: no save before the hour
	checkSeqs(t, h.collect(35, 20*time.Second), 35)
	time.Sleep(300 * time.Millisecond) // a commit would have happened by now
	if saves() != n {
		t.Errorf("%v saves for 5 entries with commit_entries 10", saves()-n)
	}
	// At stop, the last position is saved.
	h.stop()
	if out := journalctlAfter(t, h, h.savedCursor()); strings.Contains(out, "SEQ=") {
		t.Errorf("entries after the cursor saved at stop: %.300s", out)
	}
}
