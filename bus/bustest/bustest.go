// Package bustest runs real NATS for tests: the bus with its embedded
// nats-server on a free port and a private store, or a nats-server
// process built from the module's own nats-server version, which a test
// can stop and restart. Helpers take testing.TB and clean up after
// themselves.
package bustest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/testbin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Logger returns a slog.Logger writing to t.Log at warn level, or debug
// when LOGSTREAM_TEST_DEBUG is set.
func Logger(t testing.TB) *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("LOGSTREAM_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// Open starts a Bus with its embedded server listening on a free
// loopback port and its store in a temporary directory. mods adjust the
// configuration first. The bus is closed when the test ends.
func Open(t testing.TB, mods ...func(*bus.Config)) *bus.Bus {
	t.Helper()
	cfg := bus.Config{}
	cfg.Embedded.Listen = "127.0.0.1:-1"
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, cfg, t.TempDir(), Logger(t), nil)
	if err != nil {
		t.Fatalf("bustest: open bus: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Publisher().Close(cctx)
		b.Close()
	})
	return b
}

// CoreMode sets bus.jetstream: false.
func CoreMode(c *bus.Config) {
	f := false
	c.JetStream = &f
}

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bustest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond until it holds or the timeout passes, then fails the
// test with msg.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// NATSServerBinary builds the nats-server command of the module's own
// nats-server version (once per test binary) and returns its path.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "github.com/nats-io/nats-server/v2")
}

// Process is a nats-server running as a separate process with JetStream,
// on a fixed port and store so that it can be stopped and started again.
type Process struct {
	t        testing.TB
	bin      string
	Port     int
	StoreDir string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// StartProcess starts a nats-server process with JetStream on a free
// port; args are extra nats-server flags (e.g. "--user", "u", "--pass",
// "p"). It is killed when the test ends.
func StartProcess(t testing.TB, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, bin: NATSServerBinary(t), Port: FreePort(t), StoreDir: t.TempDir(), args: args}
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// URL is the client URL.
func (p *Process) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.Port) }

// Start starts the process (again) and waits until it accepts clients.
func (p *Process) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-js", "-sd", p.StoreDir}, p.args...)...)
	if os.Getenv("LOGSTREAM_TEST_DEBUG") != "" {
		p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("bustest: start nats-server: %v", err)
	}
	p.exited = make(chan struct{})
	go func(c *exec.Cmd, ch chan struct{}) { _ = c.Wait(); close(ch) }(p.cmd, p.exited)
	WaitFor(p.t, 20*time.Second, "nats-server to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p.Port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// Stop ends the process with SIGTERM (a clean shutdown) and waits.
func (p *Process) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// Kill ends the process with SIGKILL and waits.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// StoredMsg is a message read from a stream by ReadStream.
type StoredMsg struct {
	Data      []byte
	MsgID     string // the Nats-Msg-Id header, "" for none
	StreamSeq uint64
	Time      time.Time // when the server stored it
}

// ReadStream reads every message of stream at url with nats.go's
// JetStream client (an ordered consumer), as a program outside the bus
// would, within a minute.
func ReadStream(t testing.TB, url, stream string) []StoredMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	var out []StoredMsg
	if total == 0 {
		return out
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(out) < total {
		// Ask for no more than remain, so that each batch completes at
		// once and leaves no goroutine behind.
		batch, err := cons.Fetch(min(4096, total-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, StoredMsg{Data: m.Data(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), StreamSeq: md.Sequence.Stream, Time: md.Timestamp})
		}
		if n == 0 {
			t.Fatalf("fetch from %s: nothing after %d of %d messages: %v", stream, len(out), total, batch.Error())
		}
	}
	return out
}
