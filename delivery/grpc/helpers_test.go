package grpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"github.com/logstream/logstream/internal/auth"
	"go.uber.org/goleak"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(childEnv); addr != "" {
		os.Exit(childClient(addr))
	}
	goleak.VerifyTestMain(m,
		// nats-server and nats.go keep a few process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.startSignalProcessing"),
		// grpc's process-wide callback serializer of the health/resolver.
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// env is a bus with its embedded server and a gRPC server on a free
// loopback port, both stopped when the test ends.
type env struct {
	t      testing.TB
	bus    *bus.Bus
	srv    *lsgrpc.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
}

type envOpt struct {
	cfg      func(*lsgrpc.Config)
	bus      []func(*bus.Config)
	verifier *auth.Verifier
}

func startEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	b := bustest.Open(t, o.bus...)
	cfg := lsgrpc.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	srv, err := lsgrpc.New(cfg, b, o.verifier, bustest.Logger(t), nil)
	if err != nil {
		t.Fatalf("grpc.New: %v", err)
	}
	e := &env{t: t, bus: b, srv: srv, addr: srv.Addr().String(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() { e.stop() })
	return e
}

// stop ends Run and waits for it.
func (e *env) stop() {
	e.t.Helper()
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.done <- nil
	case <-time.After(30 * time.Second):
		e.t.Fatalf("Run did not return within 30s of its context ending")
	}
}

func (e *env) client(opts ...grpclib.DialOption) *grpclib.ClientConn {
	e.t.Helper()
	return dial(e.t, e.addr, opts...)
}

func dial(t testing.TB, addr string, opts ...grpclib.DialOption) *grpclib.ClientConn {
	t.Helper()
	opts = append([]grpclib.DialOption{grpclib.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpclib.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// entry is the i-th test entry: two hosts (one with dots), three
// services, every level in turn.
func entry(i int) bus.Entry {
	now := time.Now()
	host := "h" + strconv.Itoa(i%2)
	if i%2 == 1 {
		host = "web1.example.com"
	}
	return bus.Entry{
		Time: now, Received: now, Host: host, Service: "svc" + strconv.Itoa(i%3),
		Level: bus.Level(i % 8), Facility: bus.FacilityFromCode(3), PID: 100 + i,
		Message: "message " + strconv.Itoa(i), Source: bus.SourceSyslog,
		Fields: map[string]string{"i": strconv.Itoa(i)},
	}
}

func entryIndex(t testing.TB, msg string) int {
	t.Helper()
	i, err := strconv.Atoi(strings.TrimPrefix(msg, "message "))
	if err != nil {
		t.Fatalf("unexpected message %q", msg)
	}
	return i
}

func (e *env) publish(from, n int) {
	e.t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		if err := e.bus.Publisher().Publish(ctx, entry(i)); err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.bus.Publisher().Flush(fctx); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
}

// recv is what a stream delivered: entries and control messages in
// order.
type recv struct {
	entries  []*pb.LogEntry
	controls []*pb.Control
	// caughtUpAt is len(entries) when caught_up arrived, -1 before.
	caughtUpAt int
	dropped    uint64
	err        error
}

// collect reads until it has n entries (and caught_up when wantCaughtUp),
// the stream ends, or the timeout passes.
func collect(t testing.TB, st grpclib.ServerStreamingClient[pb.LogEntry], n int, wantCaughtUp bool, timeout time.Duration) *recv {
	t.Helper()
	r := &recv{caughtUpAt: -1}
	got := make(chan struct{})
	var progress atomic.Value // "n of m (caught up at k)", for a timeout
	progress.Store("0 entries")
	go func() {
		defer close(got)
		for len(r.entries) < n || wantCaughtUp && r.caughtUpAt < 0 {
			progress.Store(fmt.Sprintf("%d of %d entries (caught up at %d)", len(r.entries), n, r.caughtUpAt))
			m, err := st.Recv()
			if err != nil {
				r.err = err
				return
			}
			if c := m.GetControl(); c != nil {
				r.controls = append(r.controls, c)
				switch c.GetKind() {
				case pb.Control_KIND_CAUGHT_UP:
					r.caughtUpAt = len(r.entries)
				case pb.Control_KIND_DROPPED:
					r.dropped += c.GetDropped()
				}
				continue
			}
			r.entries = append(r.entries, m)
		}
	}()
	select {
	case <-got:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v with %s", timeout, progress.Load())
	}
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		t.Fatalf("stream ended after %d of %d entries: %v", len(r.entries), n, r.err)
	}
	return r
}

// checkSeqs checks that the entries' sequences strictly increase.
func checkSeqs(t testing.TB, es []*pb.LogEntry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].GetSeq() <= es[i-1].GetSeq() {
			t.Fatalf("entry %d has seq %d after %d", i, es[i].GetSeq(), es[i-1].GetSeq())
		}
	}
}

func indexes(t testing.TB, es []*pb.LogEntry) []int {
	t.Helper()
	out := make([]int, len(es))
	for i, m := range es {
		out[i] = entryIndex(t, m.GetMessage())
	}
	return out
}

func fmtInts(v []int) string {
	if len(v) > 40 {
		return fmt.Sprint(v[:20], "...", v[len(v)-20:])
	}
	return fmt.Sprint(v)
}
