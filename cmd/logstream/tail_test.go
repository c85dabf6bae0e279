package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/testbin"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// tailBinaries builds logstream and logstreamd once for these tests.
func tailBinaries(t *testing.T) (client, daemon string) {
	t.Helper()
	return testbin.Client(t), testbin.Daemon(t)
}

// tailFreeTCPUDP returns a port free a moment ago for both TCP and UDP on
// 127.0.0.1.
func tailFreeTCPUDP(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func tailFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tailDaemon is a logstreamd process with its own ports and state
// directory, which a test can stop and start again.
type tailDaemon struct {
	t       *testing.T
	bin     string
	config  string
	grpc    string
	syslog  int
	cmd     *exec.Cmd
	mu      sync.Mutex
	stderr  bytes.Buffer
	exited  chan error
	stopped bool
	creds   credentials.TransportCredentials
}

func newTailDaemon(t *testing.T) *tailDaemon {
	t.Helper()
	return newTailDaemonWith(t, nil, nil)
}

// newTailDaemonWith lets mod change the configuration; creds are those
// to check the daemon's health with (nil: plaintext).
func newTailDaemonWith(t *testing.T, mod func(string) string, creds credentials.TransportCredentials) *tailDaemon {
	t.Helper()
	_, bin := tailBinaries(t)
	dir := t.TempDir()
	d := &tailDaemon{t: t, bin: bin, grpc: "127.0.0.1:" + strconv.Itoa(tailFreePort(t)), syslog: tailFreeTCPUDP(t)}
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: 10s
bus:
  embedded:
    listen: 127.0.0.1:%d
http:
  listen: 127.0.0.1:%d
grpc:
  listen: %s
  shutdown_grace: 3s
syslog:
  enabled: true
  listeners:
    - {name: udp, protocol: udp, address: "127.0.0.1:%d"}
    - {name: tcp, protocol: tcp, address: "127.0.0.1:%d"}
journald:
  enabled: false
`, filepath.Join(dir, "state"), tailFreePort(t), tailFreePort(t), d.grpc, d.syslog, d.syslog)
	if mod != nil {
		cfg = mod(cfg)
	}
	d.creds = creds
	if d.creds == nil {
		d.creds = insecure.NewCredentials()
	}
	d.config = filepath.Join(dir, "logstreamd.yaml")
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd != nil && !d.stopped {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	d.start()
	return d
}

// start runs the daemon and waits until its gRPC health service says
// SERVING.
func (d *tailDaemon) start() {
	t := d.t
	t.Helper()
	d.cmd = exec.Command(d.bin, "-config", d.config)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	d.stopped = false
	d.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.stderr.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		exited <- cmd.Wait()
	}(d.cmd, d.exited)
	cc, err := grpclib.NewClient(d.grpc, grpclib.WithTransportCredentials(d.creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case err := <-d.exited:
			t.Fatalf("logstreamd exited: %v\n%s", err, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("logstreamd not serving after 60s: %v\n%s", err, d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a tailClean exit.
func (d *tailDaemon) stop() {
	t := d.t
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.stopped = true
		if err != nil {
			t.Fatalf("logstreamd exited with %v\n%s", err, d.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("logstreamd still running 20s after SIGTERM\n%s", d.log())
	}
}

func (d *tailDaemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// sendSyslog sends one message per line to the daemon's syslog port
// with util-linux logger, over TCP, as RFC 5424 with tag tag.
func (d *tailDaemon) sendSyslog(tag, priority string, msgs ...string) {
	t := d.t
	t.Helper()
	if _, err := exec.LookPath("logger"); err != nil {
		t.Fatal("logger not found: apt-get install bsdutils")
	}
	args := []string{"-n", "127.0.0.1", "-P", strconv.Itoa(d.syslog), "-T", "--rfc5424", "-t", tag, "-p", priority}
	for _, m := range msgs {
		if out, err := exec.Command("logger", append(args, m)...).CombinedOutput(); err != nil {
			t.Fatalf("logger: %v\n%s", err, out)
		}
	}
}

// tailProc is a running logstream tail.
type tailProc struct {
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

func startTail(t *testing.T, args ...string) *tailProc {
	t.Helper()
	bin, _ := tailBinaries(t)
	p := &tailProc{cmd: exec.Command(bin, append([]string{"tail"}, args...)...), lines: make(chan string, 10000), exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "NO_COLOR=", "LOGSTREAM_SERVER=", "LOGSTREAM_TOKEN=")
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &tailLockedWriter{mu: &p.mu, w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	return p
}

type tailLockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *tailLockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

func (p *tailProc) errors() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// read returns the next n lines.
func (p *tailProc) read(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("logstream tail exited after %d of %d lines: %v\nstderr:\n%s", len(out), n, out, p.errors())
			}
			out = append(out, l)
		case <-deadline:
			t.Fatalf("timed out after %v with %d of %d lines: %v\nstderr:\n%s", timeout, len(out), n, out, p.errors())
		}
	}
	return out
}

// interrupt sends SIGINT (Ctrl-C) and checks for a tailClean, quick exit.
func (p *tailProc) interrupt(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	for range p.lines {
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("logstream tail exited with %v after Ctrl-C\nstderr:\n%s", err, p.errors())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logstream tail still running 5s after Ctrl-C")
	}
	if e := p.errors(); strings.Contains(e, "error") || strings.Contains(e, "panic") {
		t.Errorf("stderr after Ctrl-C:\n%s", e)
	}
}

type tailJSONLine struct {
	Seq      uint64            `json:"seq"`
	Time     time.Time         `json:"time"`
	Host     string            `json:"host"`
	Service  string            `json:"service"`
	Level    string            `json:"level"`
	Severity int               `json:"severity"`
	Facility string            `json:"facility"`
	Message  string            `json:"message"`
	Source   string            `json:"source"`
	Fields   map[string]string `json:"fields"`
}

func tailParseJSON(t *testing.T, lines []string) []tailJSONLine {
	t.Helper()
	out := make([]tailJSONLine, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		var e bus.Entry
		if err := e.UnmarshalJSON([]byte(l)); err != nil {
			t.Fatalf("line %q is not the entry schema: %v", l, err)
		}
	}
	return out
}

// TestTailJSON runs logstream tail --json against the daemon and sends
// syslog to the daemon's port with logger: every message comes out, as
// the entry schema with its sequence, filtered by service and level.
func TestTailJSON(t *testing.T) {
	d := newTailDaemon(t)
	d.sendSyslog("before", "daemon.err", "sent before tail started")
	p := startTail(t, "--server", d.grpc, "--json", "-s", "tailtest", "-s", "before", "-l", "warning")
	got := tailParseJSON(t, p.read(t, 1, 30*time.Second))
	if got[0].Service != "before" || got[0].Message != "sent before tail started" {
		t.Fatalf("backlog: %+v", got[0])
	}
	d.sendSyslog("tailtest", "local3.err", "one")
	d.sendSyslog("tailtest", "local3.info", "info is filtered out")
	d.sendSyslog("othersvc", "local3.err", "other services are filtered out")
	d.sendSyslog("tailtest", "local3.warning", "two", "three")
	got = append(got, tailParseJSON(t, p.read(t, 3, 30*time.Second))...)
	// Entries of different levels go to different subjects, which the
	// bus may store in either order: compare sets, and the sequence order.
	want := map[string]string{"sent before tail started": "err", "one": "err", "two": "warning", "three": "warning"}
	for i, g := range got {
		if want[g.Message] != g.Level || g.Source != "syslog" || g.Host == "" || g.Seq == 0 || g.Time.IsZero() {
			t.Errorf("line %d: %+v, want one of %v", i, g, want)
		}
		delete(want, g.Message)
		if i > 0 && g.Seq <= got[i-1].Seq {
			t.Errorf("line %d: seq %d after %d", i, g.Seq, got[i-1].Seq)
		}
	}
	if got[3].Facility != "local3" || got[3].Service != "tailtest" {
		t.Errorf("facility/service: %+v", got[3])
	}
	p.interrupt(t)
}

// TestTailText: plain, aligned text when piped; colours when asked.
func TestTailText(t *testing.T) {
	d := newTailDaemon(t)
	d.sendSyslog("web", "daemon.err", "connection refused")
	d.sendSyslog("a-much-longer-service", "daemon.info", "started")
	d.sendSyslog("web", "daemon.debug", "escape \x1b[2J here")
	p := startTail(t, "--server", d.grpc, "-n", "10")
	lines := p.read(t, 3, 30*time.Second)
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (\S+) +(\S+) +(\S+) +(.*)$`)
	want := map[string][2]string{
		"connection refused":  {"web", "err"},
		"started":             {"a-much-longer-service", "info"},
		`escape \x1b[2J here`: {"web", "debug"},
	}
	col := -1
	for _, l := range lines {
		if strings.Contains(l, "\x1b") {
			t.Errorf("line %q has an escape sequence", l)
		}
		m := re.FindStringSubmatch(l)
		if m == nil || want[m[4]] != [2]string{m[2], m[3]} {
			t.Errorf("line %q, want one of %v", l, want)
			continue
		}
		// The level column lines up from the line where the widest
		// service appeared on.
		if m[2] == "a-much-longer-service" || col >= 0 {
			c := strings.Index(l, " "+m[3]+" ")
			if col >= 0 && c != col {
				t.Errorf("line %q: level at column %d, want %d", l, c, col)
			}
			col = c
		}
	}
	p.interrupt(t)

	// --color=always, --no-follow: coloured, and it exits by itself.
	p = startTail(t, "--server", d.grpc, "--color=always", "--no-follow", "-s", "web", "-l", "err")
	lines = p.read(t, 1, 30*time.Second)
	if !strings.Contains(lines[0], "\x1b[31merr") || !strings.Contains(lines[0], "connection refused") {
		t.Errorf("coloured line %q", lines[0])
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("--no-follow exited with %v\n%s", err, p.errors())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--no-follow did not exit")
	}
}

// TestTailResumesAcrossRestart stops and restarts the daemon under a
// running tail: it reconnects and prints every entry exactly once — the
// daemon's stream keeps history in its state directory.
func TestTailResumesAcrossRestart(t *testing.T) {
	d := newTailDaemon(t)
	p := startTail(t, "--server", d.grpc, "--json", "-s", "resume", "-n", "0")
	// -n 0 starts with new entries: wait until the stream is open by
	// sending until one arrives.
	var got []tailJSONLine
	for i := 0; len(got) == 0; i++ {
		if i == 100 {
			t.Fatalf("tail printed nothing\n%s", p.errors())
		}
		d.sendSyslog("resume", "user.notice", "probe "+strconv.Itoa(i))
		select {
		case l := <-p.lines:
			got = tailParseJSON(t, []string{l})
		case <-time.After(200 * time.Millisecond):
		}
	}
	first := got[0].Message
	d.sendSyslog("resume", "user.notice", "m1", "m2", "m3")
	got = append(got, tailParseJSON(t, p.read(t, 3, 30*time.Second))...)

	d.stop()
	tailWaitFor(t, 30*time.Second, "tail to notice", func() bool { return strings.Contains(p.errors(), "retrying") })
	d.start()
	// Sent at once: likely before tail has reconnected.
	d.sendSyslog("resume", "user.notice", "m4", "m5", "m6")
	got = append(got, tailParseJSON(t, p.read(t, 3, 30*time.Second))...)
	var msgs []string
	for i, g := range got {
		msgs = append(msgs, g.Message)
		if i > 0 && g.Seq <= got[i-1].Seq {
			t.Errorf("seq %d after %d", g.Seq, got[i-1].Seq)
		}
	}
	if want := []string{first, "m1", "m2", "m3", "m4", "m5", "m6"}; strings.Join(msgs, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", msgs, want)
	}
	// Nothing more: no duplicate of m4-m6 after the reconnection.
	d.sendSyslog("resume", "user.notice", "m7")
	if l := p.read(t, 1, 30*time.Second); tailParseJSON(t, l)[0].Message != "m7" {
		t.Fatalf("after m6: %v", l)
	}
	if !strings.Contains(p.errors(), "reconnected") {
		t.Errorf("stderr does not say it reconnected:\n%s", p.errors())
	}
	p.interrupt(t)
}

func tailWaitFor(t *testing.T, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTailUsage: --help explains, bad flags and refused requests fail
// with a clear message and exit status 1.
func TestTailUsage(t *testing.T) {
	bin, _ := tailBinaries(t)
	out, err := exec.Command(bin, "tail", "--help").CombinedOutput()
	for _, want := range []string{"Usage: logstream tail", "--service", "--since", "--json", "--server", "Examples:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out)
		}
	}
	_ = err
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-l", "loud"}, "--level"},
		{[]string{"-g", "("}, "--grep"},
		{[]string{"--since", "yesterday-ish"}, "--since"},
		{[]string{"-n", "5", "--since", "1h"}, "one of"},
		{[]string{"nginx"}, "unexpected argument"},
		{[]string{"--color", "sometimes"}, "--color"},
	} {
		out, err := exec.Command(bin, append([]string{"tail"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("tail %v: %v\n%s", c.args, err, out)
		}
	}
	out, err = exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "logstream ") {
		t.Errorf("version: %v %s", err, out)
	}
}

// TestTailRefused: a request the server refuses ends tail with the
// reason instead of retrying.
func TestTailRefused(t *testing.T) {
	d := newTailDaemon(t)
	bin, _ := tailBinaries(t)
	many := make([]string, 0, 140)
	for i := range 70 {
		many = append(many, "-H", "h"+strconv.Itoa(i))
	}
	cmd := exec.Command(bin, append([]string{"tail", "--server", d.grpc}, many...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refused the request") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"10m", "1d", "1.5d", "2026-01-02T15:04:05Z", "2026-01-02 15:04", "2026-01-02", "", "-5m", "1e400d"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if tm, err := tailParseSince(s, now); err == nil && tm.IsZero() {
			t.Fatalf("%q: zero time without error", s)
		}
	})
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"10m", now.Add(-10 * time.Minute)},
		{"1d", now.Add(-24 * time.Hour)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2025-12-31T23:00:00Z", time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)},
		{"2025-12-31 23:00", time.Date(2025, 12, 31, 23, 0, 0, 0, time.Local)},
	} {
		got, err := tailParseSince(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("%q: %v %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-5m", "soon", "1e400d"} {
		if _, err := tailParseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
