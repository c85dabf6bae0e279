package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testbin"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "logstreamd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/logstream:/other")
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/var/lib/logstream" {
		t.Errorf("state dir %q", cfg.StateDir)
	}
	if cfg.Bus.Embedded.Listen != "127.0.0.1:4222" || cfg.HTTP.Listen != "127.0.0.1:8514" || cfg.GRPC.Listen != "127.0.0.1:9514" {
		t.Errorf("listen defaults: %+v %q %q", cfg.Bus.Embedded, cfg.HTTP.Listen, cfg.GRPC.Listen)
	}
	if cfg.Bus.Stream.MaxAge != 24*time.Hour || cfg.Bus.Stream.MaxBytes != 1<<30 || cfg.Bus.Stream.DuplicateWindow != 2*time.Minute || cfg.Bus.Stream.Replicas != 1 {
		t.Errorf("stream defaults: %+v", cfg.Bus.Stream)
	}
	if !cfg.Bus.UseJetStream() || cfg.Bus.Embedded.StoreDir != "/var/lib/logstream/nats" {
		t.Errorf("bus defaults: %+v", cfg.Bus)
	}
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("HOME", "/home/x")
	cfg, err = loadConfig("")
	if err != nil || cfg.StateDir != "/home/x/.local/state/logstream" {
		t.Errorf("home state dir %q %v", cfg.StateDir, err)
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", t.TempDir())
	tests := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "bus:\n  prefix: logs\n  nope: 1\n", []string{"line 3", "nope"}},
		{"unknown section", "log:\n  level: info\nfoo: {}\n", []string{"line 3", "foo"}},
		{"bad duration", "bus:\n  stream:\n    max_age: forever\n", []string{"line 3"}},
		{"bad size", "bus:\n  stream:\n    max_bytes: lots\n", []string{"line 3", "lots"}},
		{"bad value", "bus:\n  stream:\n    replicas: 3\n", []string{"line 3", "bus.stream.replicas"}},
		{"bad prefix", "bus:\n  prefix: 'logs.*'\n", []string{"line 2", "bus.prefix"}},
		{"bad level", "log:\n  level: loud\n", []string{"line 2", "log.level"}},
		{"bad listen", "bus:\n  embedded:\n    listen: nowhere\n", []string{"line 3", "bus.embedded.listen"}},
		{"not yaml", "bus: [\n", []string{"yaml"}},
		{"wrong type", "bus:\n  urls: nats://x\n", []string{"line 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(writeFile(t, tt.body))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", t.TempDir())
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"-check-config", "../../configs/logstreamd.yaml"}, &out, &errb); err != nil {
		t.Fatalf("configs/logstreamd.yaml: %v", err)
	}
	if err := run(t.Context(), []string{"-check-config", writeFile(t, "bus:\n  stream:\n    replicas: 0\n    bogus: 1\n")}, &out, &errb); err == nil {
		t.Fatal("bad config accepted")
	}
	// An empty file is every default.
	if err := run(t.Context(), []string{"-check-config", writeFile(t, "")}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	// The printed defaults are a valid configuration themselves.
	out.Reset()
	if err := run(t.Context(), []string{"-print-defaults"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), []string{"-check-config", writeFile(t, out.String())}, &bytes.Buffer{}, &errb); err != nil {
		t.Fatalf("printed defaults do not check: %v\n%s", err, out.String())
	}
}

// binary builds logstreamd once for the tests.
func binary(t *testing.T) string { return testbin.Daemon(t) }

// daemonProc is a running logstreamd with its stderr collected.
type daemonProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

func startDaemon(t *testing.T, env []string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{cmd: exec.Command(binary(t), args...), done: make(chan error, 1)}
	d.cmd.Env = append(os.Environ(), env...)
	pr, pw, _ := os.Pipe()
	d.cmd.Stderr = pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.stderr.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		d.done <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
		}
	})
	return d
}

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// TestDaemonDefaultsStartAndStop starts the built binary with no
// configuration, waits until it is ready, and stops it with SIGTERM: it
// exits 0 within 5 s.
func TestDaemonDefaultsStartAndStop(t *testing.T) {
	home := t.TempDir()
	d := startDaemon(t, []string{"HOME=" + home, "STATE_DIRECTORY="})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:8514/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited early: %v\n%s", err, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 30s:\n%s", d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The embedded NATS server listens on its default port.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err != nil {
		t.Errorf("embedded NATS not on 127.0.0.1:4222: %v", err)
	} else {
		c.Close()
	}
	if _, err := os.Stat(filepath.Join(home, ".local/state/logstream/nats")); err != nil {
		t.Errorf("state dir: %v", err)
	}
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, d.log())
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("took %v to stop", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM:\n%s", d.log())
	}
}

// TestDaemonStartupErrors: a port in use or an unusable state directory
// end the start with a non-zero exit and one clear line.
func TestDaemonStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o600)
	// Sources off: these starts must not touch the default syslog port.
	const quiet = "syslog: {enabled: false}\njournald: {enabled: false}\n"
	tests := []struct {
		name, cfg, want string
	}{
		{"http port in use", fmt.Sprintf(quiet+"http: {listen: %q}\ngrpc: {listen: \"\"}\nbus: {embedded: {listen: \"\"}}\n", busy.Addr().String()), "http.listen"},
		{"nats port in use", fmt.Sprintf(quiet+"http: {listen: \"\"}\ngrpc: {listen: \"\"}\nbus: {embedded: {listen: %q}}\n", busy.Addr().String()), "nats-server"},
		{"state dir unusable", fmt.Sprintf(quiet+"state_dir: %q\nhttp: {listen: \"\"}\ngrpc: {listen: \"\"}\nbus: {embedded: {listen: \"\"}}\n", filepath.Join(notDir, "state")), "state_dir"},
		{"grpc port in use after others bound", fmt.Sprintf(quiet+"http: {listen: \"127.0.0.1:0\"}\ngrpc: {listen: %q}\nbus: {embedded: {listen: \"\"}}\n", busy.Addr().String()), "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t), "-config", writeFile(t, tt.cfg))
			cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("started anyway:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "logstreamd: ") || !strings.Contains(last, tt.want) {
				t.Fatalf("last line %q does not name %q; output:\n%s", last, tt.want, out)
			}
		})
	}
}
