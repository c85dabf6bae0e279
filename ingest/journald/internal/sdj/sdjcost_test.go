//go:build cgo && linux

package sdj_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// TestSdjcost builds ingest/journald/bench/sdjcost.c, the program
// BENCHMARKS.md takes libsystemd's cost an entry from, warnings as errors,
// and runs it on a journal: every kind of pass reads every entry.
func TestSdjcost(t *testing.T) {
	journaldtest.Need(t, "gcc", "journalctl")
	bin := filepath.Join(t.TempDir(), "sdjcost")
	out, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin,
		filepath.Join("..", "..", "bench", "sdjcost.c"), "-lsystemd").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc sdjcost.c (needs the Debian package libsystemd-dev): %v\n%s", err, out)
	}
	jd := journaldtest.Start(t)
	id := fmt.Sprint(time.Now().UnixNano())
	const n = 50
	for i := range n {
		if err := jd.Send(fmt.Sprint("MESSAGE=cost ", i), "TEST_ID="+id, "PRIORITY=6"); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until journald has written them all.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("journalctl", "-D", jd.Dir, "-o", "cat", "TEST_ID="+id).Output()
		if strings.Count(string(out), "\n") >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journald wrote %d of %d entries", strings.Count(string(out), "\n"), n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, err = exec.Command(bin, jd.Dir, "1", "TEST_ID="+id).CombinedOutput()
	if err != nil {
		t.Fatalf("sdjcost: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	if got := len(regexp.MustCompile(`(?m)^ *\d+ ns/entry +\S`).FindAll(out, -1)); got != 5 {
		t.Errorf("%d lines of figures, want 5", got)
	}
	m := regexp.MustCompile(`\((\d+) entries, best of 1 passes each\)`).FindSubmatch(out)
	if m == nil {
		t.Fatal("no entry count in the output")
	}
	if c, _ := strconv.Atoi(string(m[1])); c != n {
		t.Errorf("read %d entries with the match, want %d", c, n)
	}
	if out, err := exec.Command(bin).CombinedOutput(); err == nil || !strings.Contains(string(out), "usage") {
		t.Errorf("without arguments: err %v, output %q; want a usage message and a failure", err, out)
	}
}
