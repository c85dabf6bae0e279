//go:build cgo && linux

package journald_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
	"github.com/logstream/logstream/internal/testbin"
)

// These tests run the real logstreamd binary, built by the test, with a
// configuration that enables only the journald source on a private
// journald, and free ports for everything.

// buildDaemon builds logstreamd (once per environment); env adds to the
// build's environment (CGO_ENABLED=0).
func buildDaemon(t testing.TB, env ...string) string {
	t.Helper()
	return testbin.Build(t, "github.com/logstream/logstream/cmd/logstreamd", env...)
}

// daemonConfig writes a configuration: only journald on, every port free.
func daemonConfig(t testing.TB, dir string, extra string) (path string, natsPort int) {
	t.Helper()
	natsPort = bustest.FreePort(t)
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: 3s
log: {level: debug}
bus:
  embedded: {listen: 127.0.0.1:%d}
syslog: {enabled: false}
http: {listen: 127.0.0.1:%d}
grpc: {listen: ""}
%s`, filepath.Join(dir, "state"), natsPort, bustest.FreePort(t), extra)
	path = filepath.Join(dir, "logstreamd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, natsPort
}

// daemon is a running logstreamd.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    strings.Builder
	exited chan struct{}
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.Write(p)
}

func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// startDaemon starts logstreamd and waits until it is ready.
func startDaemon(t testing.TB, bin, config string) *daemon {
	t.Helper()
	d := &daemon{t: t, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "-config", config)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start logstreamd: %v", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop(syscall.SIGKILL) })
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(d.output(), "logstreamd ready") {
		select {
		case <-d.exited:
			t.Fatalf("logstreamd exited at start:\n%s", d.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("logstreamd not ready after 90s:\n%s", d.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return d
}

func (d *daemon) stop(sig syscall.Signal) {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("logstreamd did not stop on %v within 30s", sig)
	}
}

// stored is one message of the LOGS stream.
type stored struct {
	SEQ       string
	ID        string
	StreamSeq uint64
	Time      time.Time // when the server stored it
}

// readStream reads the whole LOGS stream at url with a plain JetStream
// client.
func readStream(t testing.TB, url string) []stored {
	t.Helper()
	var out []stored
	for _, m := range bustest.ReadStream(t, url, "LOGS") {
		var e bus.Entry
		if err := e.UnmarshalJSON(m.Data); err != nil {
			t.Fatalf("stream seq %d: %v", m.StreamSeq, err)
		}
		out = append(out, stored{SEQ: e.Fields["SEQ"], ID: e.ID, StreamSeq: m.StreamSeq, Time: m.Time})
	}
	return out
}

// checkStored fails unless the stream holds SEQ 0..n-1 exactly once.
func checkStored(t testing.TB, msgs []stored, n int) {
	t.Helper()
	rs := make([]received, len(msgs))
	for i, m := range msgs {
		rs[i].Entry.Fields = map[string]string{"SEQ": m.SEQ}
	}
	checkSeqs(t, rs, n)
}

// TestDaemonCrash: logstreamd is killed with SIGKILL at 10 random points
// while 20,000 sequenced entries are written, and started again each time;
// afterwards the stream holds every sequence number exactly once.
func TestDaemonCrash(t *testing.T) {
	const n = 20000
	bin := buildDaemon(t)
	jd := journaldtest.Start(t)
	id := newTestID()
	dir := t.TempDir()
	config, natsPort := daemonConfig(t, dir, fmt.Sprintf(`journald:
  enabled: true
  path: %s
  start: head
  commit_interval: 100ms
  fields: [TEST_ID, SEQ]
  matches: {fields: ["TEST_ID=%s"]}
`, jd.Dir, id))
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill points from seed %d", seed)

	w := jd.StartWriter(journaldtest.WriterSpec{TestID: id, Identifier: "crashtest", Count: n, Rate: 2000})
	writerDone := make(chan error, 1)
	go func() { writerDone <- w.Wait() }()
	for i := range 10 {
		d := startDaemon(t, bin, config)
		// A random point while entries flow.
		time.Sleep(time.Duration(100+rng.IntN(800)) * time.Millisecond)
		d.stop(syscall.SIGKILL)
		t.Logf("kill %d: %s", i+1, lastCursorSeq(dir))
	}
	d := startDaemon(t, bin, config)
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	var msgs []stored
	bustest.WaitFor(t, 60*time.Second, "every entry in the stream", func() bool {
		msgs = readStream(t, url)
		return len(msgs) >= n
	})
	checkStored(t, msgs, n)
	d.stop(syscall.SIGTERM)
	if !strings.Contains(d.output(), "stopped") {
		t.Errorf("no clean stop:\n%s", d.output())
	}
}

// lastCursorSeq describes the saved cursor, for the log.
func lastCursorSeq(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "state", "journald.cursor"))
	if err != nil {
		return "no cursor"
	}
	c := strings.TrimSpace(string(b))
	i, j := strings.Index(c, ";i="), strings.Index(c, ";b=")
	if i < 0 || j < i {
		return "cursor " + c
	}
	return "cursor at seqnum " + c[i+3:j]
}

// TestDaemonOutage: the bus stops acknowledging (the external nats-server
// is stopped) while entries keep arriving, and logstreamd is restarted in
// the middle of it. After the server returns, every entry is on the bus,
// and every cursor the daemon saved named an entry whose predecessors
// were all stored before the save.
func TestDaemonOutage(t *testing.T) {
	const n = 5000
	bin := buildDaemon(t)
	jd := journaldtest.Start(t)
	ns := bustest.StartProcess(t)
	id := newTestID()
	dir := t.TempDir()
	config, _ := daemonConfig(t, dir, fmt.Sprintf(`journald:
  enabled: true
  path: %s
  start: head
  commit_interval: 50ms
  fields: [TEST_ID, SEQ]
  matches: {fields: ["TEST_ID=%s"]}
`, jd.Dir, id))
	// bus.urls replaces the embedded server.
	b, _ := os.ReadFile(config)
	cfg := strings.Replace(string(b), "bus:\n", fmt.Sprintf("bus:\n  urls: [%q]\n  publish: {max_in_flight: 200, ack_timeout: 500ms}\n", ns.URL()), 1)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cursorFile := filepath.Join(dir, "state", "journald.cursor")

	// Record every version of the cursor file with the time it was seen:
	// at or after it was written. (The file's own mtime comes from the
	// kernel's coarse clock, which lags by milliseconds, more than the gap
	// between an acknowledgement and the save: too coarse to judge by.)
	type version struct {
		cursor string
		seen   time.Time
	}
	var versions []version
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		last := ""
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
			b, err := os.ReadFile(cursorFile)
			seen := time.Now()
			c := strings.TrimSpace(string(b))
			if err != nil || c == last {
				continue
			}
			last = c
			versions = append(versions, version{c, seen})
		}
	}()

	d := startDaemon(t, bin, config)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if err := jd.Send(fmt.Sprintf("MESSAGE=entry %d", i), fmt.Sprintf("SEQ=%d", i), "SYSLOG_IDENTIFIER=outage", "TEST_ID="+id); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 1000; i += 100 {
		send(i, i+100)
		bustest.WaitFor(t, 30*time.Second, "entries stored", func() bool { return len(readStream(t, ns.URL())) >= i+100 })
	}
	ns.Stop()
	send(1000, 2500)
	d.stop(syscall.SIGTERM) // its last flush fails: the cursor must stay
	d2 := make(chan *daemon, 1)
	go func() { d2 <- startDaemon(t, bin, config) }() // waits for the bus
	send(2500, n)
	if err := waitEntries(jd.Dir, "TEST_ID="+id, n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	seqOf := cursorSeqs(t, jd, id) // the journal is complete: map its cursors once
	ns.Start()
	d = <-d2
	var msgs []stored
	bustest.WaitFor(t, 60*time.Second, "every entry in the stream", func() bool {
		msgs = readStream(t, ns.URL())
		return len(msgs) >= n
	})
	// The last commit comes a moment after the last acknowledgement.
	bustest.WaitFor(t, 10*time.Second, "the cursor at the last entry", func() bool {
		return seqOf[lastOf(cursorFile)] == fmt.Sprint(n-1)
	})
	close(stopWatch)
	<-watchDone
	checkStored(t, msgs, n)

	// Every saved cursor: the entries up to it were stored (stamped by the
	// server) before the cursor file was seen with it. A cursor saved
	// before the acknowledgement would be seen long before the entries
	// are stored: the server was down for seconds.
	storedAt := map[string]time.Time{}
	for _, m := range msgs {
		storedAt[m.SEQ] = m.Time
	}
	if len(versions) < 3 {
		t.Errorf("only %d cursor versions seen", len(versions))
	}
	for _, v := range versions {
		s, ok := seqOf[v.cursor]
		if !ok {
			t.Errorf("saved cursor %s names no entry of this test", v.cursor)
			continue
		}
		var k int
		if _, err := fmt.Sscan(s, &k); err != nil {
			t.Fatal(err)
		}
		for i := 0; i <= k; i++ {
			at, ok := storedAt[fmt.Sprint(i)]
			if !ok || at.After(v.seen) {
				t.Errorf("cursor at SEQ %d seen at %v, but SEQ %d was stored at %v", k, v.seen, i, at)
				break
			}
		}
	}
	t.Logf("%d cursor versions checked", len(versions))
	d.stop(syscall.SIGTERM)
}

func lastOf(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// cursorSeqs maps each cursor of the test's entries to its SEQ, read by
// journalctl.
func cursorSeqs(t testing.TB, jd *journaldtest.Journald, id string) map[string]string {
	t.Helper()
	out, err := runOut("journalctl", "-D", jd.Dir, "-o", "export", "TEST_ID="+id)
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	m := map[string]string{}
	cursor := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "__CURSOR="); ok {
			cursor = c
		} else if s, ok := strings.CutPrefix(line, "SEQ="); ok {
			m[cursor] = s
		}
	}
	return m
}

// TestDaemonWithoutCgo: logstreamd built with CGO_ENABLED=0 runs; the
// journald source says once, clearly, that it is unavailable.
func TestDaemonWithoutCgo(t *testing.T) {
	bin := buildDaemon(t, "CGO_ENABLED=0")
	for _, c := range []struct{ enabled, line string }{
		{"true", `level=WARN msg="journald source unavailable: entries from the journal will not be collected"`},
		{"auto", `level=INFO msg="journald source off (enabled: auto)"`},
	} {
		dir := t.TempDir()
		config, _ := daemonConfig(t, dir, "journald: {enabled: "+c.enabled+"}\n")
		d := startDaemon(t, bin, config)
		d.stop(syscall.SIGTERM)
		out := d.output()
		if n := strings.Count(out, c.line); n != 1 {
			t.Errorf("enabled: %s: %d lines %q, want 1:\n%s", c.enabled, n, c.line, out)
		}
		if !strings.Contains(out, "CGO_ENABLED=0") {
			t.Errorf("enabled: %s: the line does not say why:\n%s", c.enabled, out)
		}
	}
}
