// Package daemontest runs the real logstreamd binary for tests: built once
// (internal/testbin), on free loopback ports with its own state directory,
// syslog on UDP and TCP, journald off. A Daemon is used from the test's
// goroutine; its log is collected concurrently.
package daemontest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/internal/testbin"
)

// Daemon is a logstreamd process.
type Daemon struct {
	t          testing.TB
	Config     string // the configuration file
	NATSPort   int
	HTTPPort   int
	SyslogPort int // UDP and TCP
	env        []string
	cmd        *exec.Cmd
	done       chan error
	mu         sync.Mutex
	stderr     bytes.Buffer
}

// Start runs logstreamd and waits until /readyz answers; extra is YAML
// appended to its configuration (a websocket section, say), env extra
// environment of the process. It is stopped when the test ends.
func Start(t testing.TB, extra string, env ...string) *Daemon {
	t.Helper()
	d := &Daemon{t: t, env: env, NATSPort: bustest.FreePort(t), HTTPPort: bustest.FreePort(t), SyslogPort: bustest.FreePort(t)}
	dir := t.TempDir()
	d.Config = filepath.Join(dir, "logstreamd.yaml")
	cfg := fmt.Sprintf(`state_dir: %s
shutdown_timeout: 10s
log:
  level: info
bus:
  embedded:
    listen: 127.0.0.1:%d
http:
  listen: 127.0.0.1:%d
grpc:
  listen: 127.0.0.1:%d
journald:
  enabled: false
syslog:
  enabled: true
  listeners:
    - protocol: udp
      address: 127.0.0.1:%d
    - protocol: tcp
      address: 127.0.0.1:%d
`, filepath.Join(dir, "state"), d.NATSPort, d.HTTPPort, bustest.FreePort(t), d.SyslogPort, d.SyslogPort) + extra
	if err := os.WriteFile(d.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(d.Stop)
	return d
}

// URL is the daemon's HTTP address, "http://127.0.0.1:PORT".
func (d *Daemon) URL() string { return "http://127.0.0.1:" + strconv.Itoa(d.HTTPPort) }

// PID is the running process's ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Metric reads one sample of the daemon's /metrics, by its full name with
// labels as printed (e.g. `x_total{reason="slow"}`); 0 when absent.
func (d *Daemon) Metric(name string) float64 {
	d.t.Helper()
	resp, err := http.Get(d.URL() + "/metrics")
	if err != nil {
		d.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				d.t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// Start runs the daemon (again, after Stop) and waits until /readyz
// answers 200.
func (d *Daemon) Start() {
	t := d.t
	t.Helper()
	d.cmd = exec.Command(testbin.Daemon(t), "-config", d.Config)
	d.cmd.Env = append(os.Environ(), d.env...)
	d.done = make(chan error, 1)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func(cmd *exec.Cmd, done chan error) {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.stderr.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		done <- cmd.Wait()
	}(d.cmd, d.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-d.done:
			d.cmd = nil
			t.Fatalf("logstreamd exited: %v\n%s", err, d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("logstreamd not ready after 60s:\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit; it reports one that is
// not, or that takes over 20 s.
func (d *Daemon) Stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("logstreamd exit: %v\n%s", err, d.Log())
		}
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("logstreamd still running 20s after SIGTERM:\n%s", d.Log())
	}
	d.cmd = nil
}

// Log returns what the daemon wrote to stderr so far.
func (d *Daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// BusClient connects to the daemon's NATS as a client (for publishing or
// reading what the daemon stored); it is closed when the test ends.
func (d *Daemon) BusClient() *bus.Bus {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(d.NATSPort)}}, "", bustest.Logger(t), nil)
	if err != nil {
		t.Fatalf("connect to the daemon's NATS: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Publisher().Close(cctx)
		b.Close()
	})
	return b
}
