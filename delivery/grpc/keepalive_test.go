package grpc_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// childEnv, when set to a server address, makes the test binary a legacy
// client process: it streams every entry and prints each message.
const childEnv = "LOGSTREAM_GRPC_TEST_CHILD"

func childClient(addr string) int {
	cc, err := grpclib.NewClient(addr, grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer cc.Close()
	st, err := legacypb.NewLogServiceClient(cc).StreamLogs(context.Background(), &legacypb.LogRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for {
		m, err := st.Recv()
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		fmt.Fprintf(w, "%s %s\n", m.GetLevel(), m.GetMessage())
		w.Flush()
	}
}

// startChild runs the test binary as a legacy client of addr and returns
// it with the lines it prints.
func startChild(t *testing.T, addr string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads only the first lines
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for range lines {
		}
	})
	return cmd, lines
}

// TestDeadClientReleased runs a real client process and makes it die: a
// SIGKILLed client closes its socket and is released at once; a frozen
// one (SIGSTOP, as a host that vanished: its socket stays open but nothing
// answers) is detected by keepalive within time + timeout. Either way its
// stream and subscription are released and no goroutine is left (goleak
// in TestMain).
func TestDeadClientReleased(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		t.Run(sig.String(), func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) {
				c.Keepalive.Time = time.Second
				c.Keepalive.Timeout = time.Second
			}})
			cmd, lines := startChild(t, e.addr)
			waitStreams(t, e.srv, 1, 20*time.Second)
			e.publish(0, 1)
			select {
			case l := <-lines:
				if l != "emerg message 0" {
					t.Fatalf("child printed %q", l)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the child client received nothing")
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			// Keep entries coming so that the server has something to
			// write to the dead client (it fills the socket's buffers).
			ctx, cancel := context.WithCancel(t.Context())
			pubDone := make(chan struct{})
			go func() {
				defer close(pubDone)
				big := strings.Repeat("x", 4000)
				for i := 1; ctx.Err() == nil && i < 20000; i++ {
					en := entry(i)
					en.Message = big
					if err := e.bus.Publisher().Publish(ctx, en); err != nil {
						return
					}
					if i%100 == 0 {
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
			waitStreams(t, e.srv, 0, 10*time.Second)
			cancel()
			<-pubDone
			took := time.Since(killed)
			t.Logf("%v: stream released %v after the signal", sig, took.Round(time.Millisecond))
			if sig == syscall.SIGSTOP && took > 5*time.Second {
				t.Errorf("a frozen client was detected after %v; keepalive time + timeout is 2s", took)
			}
		})
	}
}

func waitStreams(t testing.TB, s *lsgrpc.Server, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.Streams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %d open streams (have %d)", timeout, n, s.Streams())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = bus.LevelEmerg
