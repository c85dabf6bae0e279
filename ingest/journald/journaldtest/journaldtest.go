// Package journaldtest runs a private systemd-journald for tests, in a
// journald namespace of its own, so that tests neither need nor touch the
// host's journal and never see each other's entries.
//
// How it works (root is required):
//
//   - Start runs /lib/systemd/systemd-journald with the namespace name as
//     its only argument, as systemd-journald@.service does. The process
//     creates its sockets in /run/systemd/journal.<ns>/ (socket, stdout,
//     dev-log) and writes its files to /var/log/journal/<machine-id>.<ns>/
//     (Dir). Its configuration, /etc/systemd/journald@<ns>.conf, is
//     written by Start: persistent storage, rate limiting off, and the
//     Options. Everything is removed when the test ends.
//   - Send writes an entry over the native protocol straight to the
//     namespace's socket, from the test process.
//   - Command runs a program (logger --journald, systemd-cat, or the test
//     binary itself as a go-systemd/journal writer, see Writer) inside a
//     private mount namespace (unshare -m) where the namespace's socket
//     directory is bind-mounted over /run/systemd/journal: programs that
//     only know the default socket path write to the private journald.
//     The host's /run/systemd is not changed: the mount namespace gets a
//     tmpfs there.
//   - Readers open Dir (sd_journal_open_directory) or the namespace.
package journaldtest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options adjust the private journald's configuration.
type Options struct {
	// SystemMaxFileSize rotates files at this size, e.g. "1M"; journald's
	// minimum is 512K. Empty: journald's default.
	SystemMaxFileSize string
	// Extra lines for the [Journal] section.
	Extra []string
}

// Journald is a private systemd-journald process.
type Journald struct {
	t         testing.TB
	Namespace string
	// SocketDir holds the sockets: socket (native), stdout, dev-log.
	SocketDir string
	// Dir holds the journal files.
	Dir  string
	conf string
	bin  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	conn   *net.UnixConn
}

// Binary returns the path of systemd-journald, or fails the test naming
// the Debian package to install.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("journaldtest: systemd-journald not found: install the Debian package systemd")
	return ""
}

// Need fails the test unless every named program is on PATH, naming the
// Debian package that provides it.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	pkgs := map[string]string{
		"journalctl": "systemd", "systemd-cat": "systemd", "logger": "bsdutils",
		"unshare": "util-linux", "setpriv": "util-linux", "mount": "mount", "gcc": "gcc",
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("journaldtest: %s not found: install the Debian package %s", p, pkgs[p])
		}
	}
}

func machineID(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/etc/machine-id")
	id := strings.TrimSpace(string(b))
	if err != nil || len(id) != 32 {
		t.Fatalf("journaldtest: journald needs a machine ID in /etc/machine-id (run systemd-machine-id-setup): %v", err)
	}
	return id
}

// Start starts a private journald and stops it, removing its files,
// when the test ends.
func Start(t testing.TB, opts ...Options) *Journald {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("journaldtest: a private systemd-journald needs root (it creates /run/systemd/journal.<ns> and /var/log/journal/<id>.<ns>)")
	}
	bin := Binary(t)
	machineID(t)
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	j, err := New(bin, o)
	if err != nil {
		t.Fatal(err)
	}
	j.t = t
	t.Cleanup(j.Close)
	return j
}

// New starts a private journald with the binary bin, for programs that
// are not tests (benchmarks); Close stops it and removes its files.
func New(bin string, o Options) (*Journald, error) {
	id, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return nil, fmt.Errorf("journaldtest: machine ID: %w", err)
	}
	removeStale(strings.TrimSpace(string(id)))
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	ns := "lstest-" + hex.EncodeToString(rb[:])
	j := &Journald{
		Namespace: ns,
		SocketDir: "/run/systemd/journal." + ns,
		Dir:       filepath.Join("/var/log/journal", strings.TrimSpace(string(id))+"."+ns),
		conf:      "/etc/systemd/journald@" + ns + ".conf",
		bin:       bin,
	}
	lines := []string{"[Journal]", "Storage=persistent", "RateLimitIntervalSec=0", "RateLimitBurst=0",
		"ForwardToSyslog=no", "ForwardToWall=no", "ForwardToConsole=no", "ForwardToKMsg=no"}
	if o.SystemMaxFileSize != "" {
		lines = append(lines, "SystemMaxFileSize="+o.SystemMaxFileSize)
	}
	lines = append(lines, o.Extra...)
	if err := os.MkdirAll("/etc/systemd", 0o755); err != nil {
		return nil, fmt.Errorf("journaldtest: %w", err)
	}
	if err := os.WriteFile(j.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("journaldtest: write %s: %w", j.conf, err)
	}
	if err := j.startE(); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// Close stops journald and removes its files, sockets and configuration.
func (j *Journald) Close() {
	j.Stop()
	j.mu.Lock()
	if j.conn != nil {
		j.conn.Close()
		j.conn = nil
	}
	j.mu.Unlock()
	os.Remove(j.conf)
	os.RemoveAll(j.Dir)
	os.RemoveAll(j.SocketDir)
	os.RemoveAll("/run/log/journal/" + filepath.Base(j.Dir))
}

func (j *Journald) start() {
	j.t.Helper()
	if err := j.startE(); err != nil {
		j.t.Fatal(err)
	}
}

func (j *Journald) startE() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd != nil {
		return nil
	}
	// A socket left by a killed journald would make the readiness check
	// pass early.
	os.Remove(filepath.Join(j.SocketDir, "socket"))
	cmd := exec.Command(j.bin, j.Namespace)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group (a ^C to the test does not stop it before the
	// test's cleanup), and stopped if the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// The kernel sends Pdeathsig when the thread that forked the child
	// ends, not the process, and Go ends the thread of a goroutine that
	// exits locked to it (the journald source's reader does when it cannot
	// restore its priority). So fork from a thread this goroutine holds
	// until journald has exited.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("journaldtest: start systemd-journald: %w", err)
	}
	j.cmd, j.exited = cmd, exited
	deadline := time.Now().Add(20 * time.Second)
	for {
		// journald opens its sockets before it creates its journal
		// directory: a reader that opens Dir right after Start must find it.
		if ready(filepath.Join(j.SocketDir, "socket"), filepath.Join(j.SocketDir, "stdout"), j.Dir) {
			break
		}
		select {
		case <-exited:
			j.cmd = nil
			return fmt.Errorf("journaldtest: systemd-journald %s exited at start: %s", j.Namespace, out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("journaldtest: systemd-journald %s did not create its sockets and journal directory in 20s: %s", j.Namespace, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if j.conn != nil {
		j.conn.Close()
		j.conn = nil
	}
	return nil
}

// ready reports whether every path exists.
func ready(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// PID returns the journald process's PID, 0 when stopped.
func (j *Journald) PID() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd == nil {
		return 0
	}
	return j.cmd.Process.Pid
}

func (j *Journald) stop(sig syscall.Signal) {
	j.mu.Lock()
	cmd, exited := j.cmd, j.exited
	j.cmd = nil
	j.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Stop ends journald with SIGTERM (it closes its files cleanly).
func (j *Journald) Stop() { j.stop(syscall.SIGTERM) }

// Kill ends journald with SIGKILL (its active file is left dirty, and the
// next journald renames it *.journal~ and starts a new one).
func (j *Journald) Kill() { j.stop(syscall.SIGKILL) }

// Restart stops journald (SIGKILL when kill, else SIGTERM) and starts it
// again on the same namespace.
func (j *Journald) Restart(kill bool) {
	j.t.Helper()
	if kill {
		j.Kill()
	} else {
		j.Stop()
	}
	j.start()
}

// Rotate asks journald to rotate its files (journalctl --rotate).
func (j *Journald) Rotate() {
	j.t.Helper()
	Need(j.t, "journalctl")
	out, err := exec.Command("journalctl", "--namespace="+j.Namespace, "--rotate").CombinedOutput()
	if err != nil {
		j.t.Fatalf("journaldtest: journalctl --rotate: %v: %s", err, out)
	}
}

// Vacuum deletes archived journal files until at most files remain
// (journalctl --vacuum-files).
func (j *Journald) Vacuum(files int) {
	j.t.Helper()
	Need(j.t, "journalctl")
	out, err := exec.Command("journalctl", "--namespace="+j.Namespace, fmt.Sprintf("--vacuum-files=%d", files)).CombinedOutput()
	if err != nil {
		j.t.Fatalf("journaldtest: journalctl --vacuum-files: %v: %s", err, out)
	}
}

// Files lists the journal files in Dir.
func (j *Journald) Files() []string {
	m, _ := filepath.Glob(filepath.Join(j.Dir, "*.journal*"))
	return m
}

// Send writes one entry over journald's native protocol to the private
// socket. fields are "NAME=value"; values may hold newlines and any byte.
func (j *Journald) Send(fields ...string) error {
	var b []byte
	for _, f := range fields {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("journaldtest: field %q has no '='", f)
		}
		b = AppendNative(b, name, value)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: filepath.Join(j.SocketDir, "socket"), Net: "unixgram"})
		if err != nil {
			return fmt.Errorf("journaldtest: %w", err)
		}
		_ = c.SetWriteBuffer(8 << 20)
		j.conn = c
	}
	if _, err := j.conn.Write(b); err != nil {
		j.conn.Close()
		j.conn = nil
		return fmt.Errorf("journaldtest: send: %w", err)
	}
	return nil
}

// AppendNative appends one field in journald's native format: NAME=value
// and a newline, or, for a value with a newline, NAME, a newline, the
// length as 64-bit little endian, the value and a newline.
func AppendNative(b []byte, name, value string) []byte {
	if !strings.ContainsRune(value, '\n') {
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, name...)
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

// Command returns a command running name with args inside a private mount
// namespace where this journald's sockets are at /run/systemd/journal:
// logger --journald, systemd-cat and go-systemd's journal package then
// write to it.
func (j *Journald) Command(name string, args ...string) *exec.Cmd {
	j.t.Helper()
	Need(j.t, "unshare", "mount")
	stage := j.t.TempDir()
	// $0: the socket directory, $1: a staging directory; then the command.
	script := `set -e
mount --bind "$0" "$1"
mount -t tmpfs -o mode=0755 logstream-test /run/systemd
mkdir -p /run/systemd/journal
mount --bind "$1" /run/systemd/journal
shift
exec "$@"`
	all := append([]string{"-m", "--propagation", "private", "sh", "-c", script, j.SocketDir, stage, name}, args...)
	return exec.Command("unshare", all...)
}

// Run runs Command(name, args...) with stdin as its input and fails the
// test if it fails.
func (j *Journald) Run(stdin string, name string, args ...string) {
	j.t.Helper()
	cmd := j.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		j.t.Fatalf("journaldtest: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// removeStale removes what killed test processes left behind: namespaces
// named lstest-* whose configuration is over a minute old and whose socket
// no journald listens on.
func removeStale(machineID string) {
	confs, _ := filepath.Glob("/etc/systemd/journald@lstest-*.conf")
	for _, conf := range confs {
		st, err := os.Stat(conf)
		if err != nil || time.Since(st.ModTime()) < time.Minute {
			continue
		}
		ns := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(conf), "journald@"), ".conf")
		sock := "/run/systemd/journal." + ns
		if c, err := net.Dial("unixgram", filepath.Join(sock, "socket")); err == nil {
			c.Close()
			continue // alive
		}
		os.Remove(conf)
		os.RemoveAll(sock)
		os.RemoveAll(filepath.Join("/var/log/journal", machineID+"."+ns))
		os.RemoveAll(filepath.Join("/run/log/journal", machineID+"."+ns))
	}
}

// ThreadNices returns the nice value of every thread of this process, by
// thread ID, from /proc/self/task/<tid>/stat.
func ThreadNices(t testing.TB) map[int]int {
	t.Helper()
	dirs, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	nices := map[int]int{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", d.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		// Fields after the command name (in parentheses, which may hold
		// spaces): state is field 3, nice field 19.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		nice, err := strconv.Atoi(f[19-3])
		if err != nil {
			t.Fatalf("%s: %q", d.Name(), s)
		}
		tid, _ := strconv.Atoi(d.Name())
		nices[tid] = nice
	}
	return nices
}
