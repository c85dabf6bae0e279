package web

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/internal/testbin"
)

func daemonBinary(t testing.TB) string { return testbin.Daemon(t) }

// daemon is a logstreamd process on free ports with its own state.
type daemon struct {
	t          testing.TB
	config     string
	natsPort   int
	httpPort   int
	syslogPort int
	cmd        *exec.Cmd
	done       chan error
	mu         sync.Mutex
	stderr     bytes.Buffer
}

func newDaemon(t testing.TB) *daemon {
	t.Helper()
	d := &daemon{t: t, natsPort: bustest.FreePort(t), httpPort: bustest.FreePort(t), syslogPort: bustest.FreePort(t)}
	dir := t.TempDir()
	d.config = filepath.Join(dir, "logstreamd.yaml")
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
`, filepath.Join(dir, "state"), d.natsPort, d.httpPort, bustest.FreePort(t), d.syslogPort, d.syslogPort)
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) url() string { return "http://127.0.0.1:" + strconv.Itoa(d.httpPort) }

// start runs the daemon and waits until /readyz answers 200.
func (d *daemon) start() {
	t := d.t
	t.Helper()
	d.cmd = exec.Command(daemonBinary(t), "-config", d.config)
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
		resp, err := http.Get(d.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-d.done:
			d.cmd = nil
			t.Fatalf("logstreamd exited: %v\n%s", err, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("logstreamd not ready after 60s:\n%s", d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit.
func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("logstreamd exit: %v\n%s", err, d.log())
		}
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("logstreamd still running 20s after SIGTERM:\n%s", d.log())
	}
	d.cmd = nil
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// busClient connects to the daemon's NATS as a client and returns its
// publisher's bus.
func (d *daemon) busClient() *bus.Bus {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(d.natsPort)}}, "", bustest.Logger(t), nil)
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
