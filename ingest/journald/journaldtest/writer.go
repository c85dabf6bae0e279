package journaldtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

const writerEnv = "LOGSTREAM_JOURNALDTEST_WRITER"

// WriterSpec says what a writer process writes: Count entries with SEQ
// First, First+1, … through go-systemd's journal package (the native
// protocol).
type WriterSpec struct {
	TestID     string            // TEST_ID field
	Identifier string            // SYSLOG_IDENTIFIER
	First      int               // first SEQ
	Count      int               // entries
	Rate       int               // entries a second; 0: as fast as journald takes them
	Priority   int               // PRIORITY, 0-7
	Message    string            // MESSAGE, a format with one %d for SEQ
	Fields     map[string]string // more fields
	// Cgroups are cgroup.procs files (see Cgroup) the writer moves itself
	// into first, so that journald gives its entries that unit.
	Cgroups []string
	// Linger keeps the writer alive this long after its last entry, so that
	// journald can still read its process's metadata (_COMM, cgroup).
	Linger time.Duration
}

// MaybeWriter makes the test binary a writer when StartWriter started it:
// call it first in TestMain. In a writer it writes and exits; otherwise it
// returns at once.
func MaybeWriter() {
	spec := os.Getenv(writerEnv)
	if spec == "" {
		return
	}
	var w WriterSpec
	if err := json.Unmarshal([]byte(spec), &w); err != nil {
		fmt.Fprintln(os.Stderr, "journaldtest writer:", err)
		os.Exit(2)
	}
	if err := w.write(); err != nil {
		fmt.Fprintln(os.Stderr, "journaldtest writer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func (w *WriterSpec) write() error {
	for _, f := range w.Cgroups {
		if err := os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	defer time.Sleep(w.Linger)
	vars := map[string]string{"TEST_ID": w.TestID, "SYSLOG_IDENTIFIER": w.Identifier}
	for k, v := range w.Fields {
		vars[k] = v
	}
	msg := w.Message
	if msg == "" {
		msg = "entry %d"
	}
	start := time.Now()
	for i := range w.Count {
		seq := w.First + i
		vars["SEQ"] = strconv.Itoa(seq)
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			// journald may be restarting: retry for a while.
			if err = journal.Send(fmt.Sprintf(msg, seq), journal.Priority(w.Priority), vars); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("send SEQ=%d: %w", seq, err)
		}
		if w.Rate > 0 {
			if d := time.Duration(i+1) * time.Second / time.Duration(w.Rate); time.Since(start) < d {
				time.Sleep(d - time.Since(start))
			}
		}
	}
	return nil
}

// StartWriter starts the test binary as a writer (see MaybeWriter) inside
// j's mount namespace. The caller waits for it.
func (j *Journald) StartWriter(spec WriterSpec) *exec.Cmd {
	j.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		j.t.Fatalf("journaldtest: %v", err)
	}
	b, _ := json.Marshal(spec)
	cmd := j.Command(exe)
	cmd.Env = append(os.Environ(), writerEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		j.t.Fatalf("journaldtest: start writer: %v", err)
	}
	return cmd
}

// Cgroup creates the cgroup of a systemd unit path such as
// "system.slice/logstreamd.service" in every hierarchy journald may read
// it from (cgroup v2 at /sys/fs/cgroup, or the unified and name=systemd
// hierarchies of a hybrid setup), and returns their cgroup.procs files for
// WriterSpec.Cgroups. They are removed when the test ends (after its
// writers exited).
func Cgroup(t testing.TB, unitPath string) []string {
	t.Helper()
	var procs []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		dir := filepath.Join(root, unitPath)
		var created []string // innermost first
		for d := dir; d != root; d = filepath.Dir(d) {
			if _, err := os.Stat(d); err == nil {
				break
			}
			created = append(created, d)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("journaldtest: create cgroup %s: %v", dir, err)
		}
		t.Cleanup(func() {
			for _, d := range created {
				_ = os.Remove(d)
			}
		})
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	if len(procs) == 0 {
		t.Fatal("journaldtest: no writable cgroup hierarchy under /sys/fs/cgroup")
	}
	return procs
}
