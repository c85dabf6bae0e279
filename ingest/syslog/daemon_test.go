package syslog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testbin"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

// logstreamd builds the daemon once per test binary.
func logstreamd(t testing.TB) string { return testbin.Daemon(t) }

// daemonConfig is a logstreamd configuration with every port free (or
// off) and the given syslog listeners section.
func daemonConfig(t testing.TB, natsPort int, jetstream bool, syslogYAML string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`state_dir: %q
http: {listen: ""}
grpc: {listen: ""}
journald: {enabled: false}
bus:
  jetstream: %v
  embedded: {listen: "127.0.0.1:%d"}
syslog:
%s`, filepath.Join(dir, "state"), jetstream, natsPort, syslogYAML)
	p := filepath.Join(dir, "logstreamd.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is a started process whose output is kept for failure messages.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM\n%s", p.output())
	}
}

// replay reads n entries from the daemon's stream, from the start.
func replay(t testing.TB, natsPort, n int, p *proc) []got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b *bus.Bus
	var err error
	for {
		b, err = bus.Open(ctx, bus.Config{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(natsPort)}}, "", bustest.Logger(t), nil)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("connect to the daemon's bus: %v\n%s", err, p.output())
	}
	defer b.Close()
	sub, err := b.Subscribe(ctx, bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	return collect(t, sub, n, 30*time.Second)
}

// TestSocketActivation runs the built logstreamd under systemd's
// systemd-socket-activate, which binds the sockets, waits for the first
// message and only then starts the daemon with them: listeners whose
// name matches a passed socket use it (no address configured at all),
// and the message sent before the daemon ran is not lost.
func TestSocketActivation(t *testing.T) {
	activate := need(t, "systemd-socket-activate", "systemd")
	bin := logstreamd(t)
	for _, tc := range []struct {
		name     string
		datagram bool
	}{{"stream: tcp and unix", false}, {"datagram: udp and unixgram", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			natsPort, port := bustest.FreePort(t), bustest.FreePort(t)
			sock := filepath.Join(dir, "syslog.sock")
			inet, unix, names := "tcp", "unix", "syslog-tcp:syslog-unix"
			if tc.datagram {
				inet, unix, names = "udp", "unixgram", "syslog-udp:syslog-dgram"
			}
			first, second, _ := strings.Cut(names, ":")
			cfg := daemonConfig(t, natsPort, true, fmt.Sprintf(`  listeners:
    - {name: %s, protocol: %s}
    - {name: %s, protocol: %s}
`, first, inet, second, unix))
			args := []string{"-l", "127.0.0.1:" + strconv.Itoa(port), "-l", sock, "--fdname=" + names}
			if tc.datagram {
				args = append([]string{"-d"}, args...)
			}
			args = append(args, bin, "-config", cfg)
			p := startProc(t, activate, args...)
			addr := "127.0.0.1:" + strconv.Itoa(port)
			// systemd-socket-activate reports each socket once it listens
			// (the unix socket's file exists from bind, before listen).
			waitFor(t, "the activation sockets", func() bool {
				return strings.Contains(p.output(), "Listening on "+sock+" as ")
			})
			// The first message starts the daemon.
			c := dial(t, inet, addr)
			write(t, c, "<14>1 - host1 app1 1 - - before the daemon ran\n")
			u := dial(t, unix, sock)
			write(t, u, "<14>Mar 10 11:59:58 app2[2]: over the unix socket\n")
			entries := replay(t, natsPort, 2, p)
			msgs := map[string]string{}
			for _, e := range entries {
				msgs[e.Service] = e.Message
			}
			if msgs["app1"] != "before the daemon ran" || msgs["app2"] != "over the unix socket" {
				t.Fatalf("entries %v\n%s", msgs, p.output())
			}
			if !strings.Contains(p.output(), "socket-activated") {
				t.Fatalf("daemon did not report socket-activated listeners:\n%s", p.output())
			}
			p.stop(t)
		})
	}
}

// TestDaemon runs the built logstreamd with its syslog section on free
// ports and checks a message from logger end to end, and that an address
// in use stops the start with the key named.
func TestDaemon(t *testing.T) {
	logger := need(t, "logger", "bsdutils (util-linux logger)")
	bin := logstreamd(t)
	natsPort, port := bustest.FreePort(t), bustest.FreePort(t)
	cfg := daemonConfig(t, natsPort, true, fmt.Sprintf(`  listeners:
    - {protocol: udp, address: "127.0.0.1:%d"}
    - {protocol: tcp, address: "127.0.0.1:%d"}
`, port, port))
	p := startProc(t, bin, "-config", cfg)
	waitFor(t, "daemon ready", func() bool { return strings.Contains(p.output(), "logstreamd ready") })
	if out, err := exec.Command(logger, "-T", "--octet-count", "-n", "127.0.0.1", "-P", strconv.Itoa(port), "-t", "daemontest", "-p", "local0.warning", "via the daemon").CombinedOutput(); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
	e := replay(t, natsPort, 1, p)[0]
	if e.Service != "daemontest" || e.Level != bus.LevelWarning || e.Message != "via the daemon" || !strings.HasSuffix(e.subject, ".daemontest.warning") {
		t.Fatalf("entry on %s: %s", e.subject, e.AppendJSON(nil))
	}

	// A second daemon on the same syslog port fails before ready.
	busy := exec.Command(bin, "-config", daemonConfig(t, bustest.FreePort(t), false, fmt.Sprintf(`  listeners:
    - {protocol: tcp, address: "127.0.0.1:%d"}
`, port)))
	out, err := busy.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "syslog.listeners[0].address") || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("second daemon on a busy port: %v\n%s", err, out)
	}
	p.stop(t)
}
