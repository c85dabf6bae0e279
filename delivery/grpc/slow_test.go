package grpc_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// soakDuration is how long the stalled stream is fed in
// TestSlowStreamBounded: LOGSTREAM_SOAK (e.g. "30s"), else 6s; longer when
// the machine is too busy to publish enough to show the bound.
func soakDuration(t testing.TB) time.Duration {
	if v := os.Getenv("LOGSTREAM_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LOGSTREAM_SOAK: %v", err)
		}
		return d
	}
	return 6 * time.Second
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// smallWindow makes a client's HTTP/2 receive windows 64KiB, so that a
// client that stops reading holds little in this (shared) process and
// the server's queue is what absorbs the difference.
var smallWindow = []grpclib.DialOption{grpclib.WithInitialWindowSize(64 << 10), grpclib.WithInitialConnWindowSize(64 << 10)}

// TestSlowStreamBounded: a stream stops reading while 5,000 entries/s of
// 1KB are published. (1) The server's heap stays bounded by that
// stream's queue. (2) Meanwhile another stream reads every entry, in
// order, with its latency logged. (3) When the stalled stream reads
// again it is told exactly how many entries it missed.
func TestSlowStreamBounded(t *testing.T) {
	const (
		size      = 1000
		rate      = 5000
		queueSize = 3 << 20
	)
	d := soakDuration(t)
	// nats-server runs as its own process, so that its caches are not
	// counted in this process's heap.
	ns := bustest.StartProcess(t)
	e := startEnv(t, envOpt{
		cfg: func(c *lsgrpc.Config) {
			c.QueueEntries = 3000
			c.QueueBytes = queueSize
		},
		bus: []func(*bus.Config){func(c *bus.Config) { c.URLs = []string{ns.URL()} }},
	})
	body := strings.Repeat("x", size)
	total := 0
	ctx := t.Context()
	publish := func(host string) error {
		en := entry(total)
		en.Host = host
		en.Message = "message " + body[:10] + " " + en.Message
		en.Fields = map[string]string{"pad": body}
		total++
		return e.bus.Publisher().Publish(ctx, en)
	}
	// publishAt publishes at rate for at least d, and on until min bytes
	// are published or 4d have passed. It returns what it published.
	publishAt := func(rate int, d time.Duration, minBytes int64, host string, each func()) (n int, took time.Duration) {
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for time.Since(start) < d || int64(n)*size < minBytes && time.Since(start) < 4*d {
			<-tick.C
			for want := int(time.Since(start).Seconds() * float64(rate)); n < want; n++ {
				if err := publish(host); err != nil {
					t.Fatal(err)
				}
			}
			if each != nil {
				each()
			}
		}
		if err := e.bus.Publisher().Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return n, time.Since(start)
	}

	slowCli := pb.NewLogServiceClient(e.client(smallWindow...))
	slow, err := slowCli.StreamLogs(ctx, &pb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitStreams(t, e.srv, 1, 20*time.Second)
	if c := collect(t, slow, 0, true, 10*time.Second); c.caughtUpAt != 0 {
		t.Fatal("no caught_up")
	}

	// Warm up: fill the bus's ring of recent entries (16MB), so that its
	// growth is not counted; the stalled stream misses these already.
	// What remains in this process: the bus client, the gRPC server and
	// its clients.
	for range 10000 {
		if err := publish("warm"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.bus.Publisher().Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// (1) The heap may grow by the stalled stream's queue and its
	// subscription's buffer, plus slack (gRPC's and the bus client's
	// buffers). Publish at least 1.5 times that.
	limit := int64(2*queueSize + 8<<20)
	base := heapAlloc()
	var maxHeap uint64
	lastSample := time.Now()
	n, took := publishAt(rate, d, limit*3/2, "a", func() {
		if time.Since(lastSample) >= time.Second {
			lastSample = time.Now()
			maxHeap = max(maxHeap, heapAlloc())
		}
	})
	maxHeap = max(maxHeap, heapAlloc())
	if f := os.Getenv("LOGSTREAM_HEAPPROFILE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(w)
		w.Close()
	}
	growth := int64(maxHeap) - int64(base)
	published := int64(n) * size
	t.Logf("stalled stream: %d entries (%d MB) published in %v (%.0f/s); heap %d MB at start, growth at most %d MB (limit %d MB)",
		n, published>>20, took.Round(time.Millisecond), float64(n)/took.Seconds(), base>>20, growth>>20, limit>>20)
	if growth > limit {
		t.Errorf("heap grew by %d MB while %d MB were published to a stalled stream (limit %d MB)", growth>>20, published>>20, limit>>20)
	}
	if published < limit*5/4 {
		t.Errorf("only %d MB published: too little to show the bound of %d MB", published>>20, limit>>20)
	}

	// (2) Another stream reads while the first is still stalled. It is a
	// lossless client: should this machine be too busy for it to keep up
	// (it is shared, and the race detector slows it), it is disconnected
	// and resumes from history with after_seq. That is not counted as a
	// failure: it happens when other processes take the CPU, stalled
	// stream or not.
	fastCli := pb.NewLogServiceClient(e.client())
	fastReq := &pb.LogRequest{DisconnectWhenSlow: true}
	fast, err := fastCli.StreamLogBatches(ctx, fastReq)
	if err != nil {
		t.Fatal(err)
	}
	waitStreams(t, e.srv, 2, 20*time.Second)
	var (
		mu         sync.Mutex
		fastN      int
		fastSeq    uint64
		fastDrops  uint64
		reconnects int
		lat        []time.Duration
	)
	fastDone := make(chan error, 1)
	go func() {
		for {
			b, err := fast.Recv()
			if status.Code(err) == codes.ResourceExhausted {
				mu.Lock()
				reconnects++
				fastReq.Start = &pb.LogRequest_AfterSeq{AfterSeq: fastSeq}
				mu.Unlock()
				if fast, err = fastCli.StreamLogBatches(ctx, fastReq); err == nil {
					continue
				}
			}
			if err != nil {
				fastDone <- err
				return
			}
			now := time.Now()
			mu.Lock()
			for _, m := range b.GetEntries() {
				if c := m.GetControl(); c != nil {
					fastDrops += c.GetDropped()
					continue
				}
				if m.GetSeq() <= fastSeq {
					t.Errorf("fast stream: seq %d after %d", m.GetSeq(), fastSeq)
				}
				fastSeq = m.GetSeq()
				if m.GetHost() != "b" {
					continue // the end of phase 1, still on its way
				}
				fastN++
				lat = append(lat, now.Sub(m.GetTime().AsTime()))
			}
			mu.Unlock()
		}
	}()
	rateB := rate
	if raceEnabled {
		rateB = 2000 // what the race-instrumented reader sustains here
	}
	nb, took := publishAt(rateB, 3*time.Second, 0, "b", nil)
	bustestWait(t, 30*time.Second, "the reading stream to receive every entry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fastN >= nb
	})
	mu.Lock()
	slices.Sort(lat)
	t.Logf("reading stream: %d entries at %.0f/s, latency p50 %v p99 %v max %v; it fell behind and resumed %d times",
		fastN, float64(nb)/took.Seconds(), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond),
		lat[len(lat)-1].Round(time.Microsecond), reconnects)
	if fastN != nb || fastDrops != 0 {
		t.Errorf("reading stream: %d entries and %d dropped, want %d and 0", fastN, fastDrops, nb)
	}
	mu.Unlock()

	// (3) The stalled stream reads again: entries plus dropped account
	// for every entry, and it is told of the drop.
	var got int
	var dropped uint64
	var lastSeq uint64
	for got+int(dropped) < total {
		m, err := slow.Recv()
		if err != nil {
			t.Fatalf("slow stream after %d entries and %d dropped of %d: %v", got, dropped, total, err)
		}
		if c := m.GetControl(); c != nil {
			if c.GetKind() != pb.Control_KIND_DROPPED || c.GetReason() != bus.ReasonSlow {
				t.Fatalf("unexpected control %v", c)
			}
			dropped += c.GetDropped()
			continue
		}
		if m.GetSeq() <= lastSeq {
			t.Fatalf("seq %d after %d", m.GetSeq(), lastSeq)
		}
		lastSeq = m.GetSeq()
		got++
	}
	t.Logf("stalled stream: %d entries, %d dropped", got, dropped)
	if dropped == 0 || got+int(dropped) != total {
		t.Errorf("stalled stream: %d entries + %d dropped, want %d in all with some dropped", got, dropped, total)
	}
	e.cancel()
	if err := <-fastDone; status.Code(err) != codes.Unavailable {
		t.Errorf("reading stream ended with %v, want UNAVAILABLE", err)
	}
}

func bustestWait(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowStreamDisconnected: with the disconnect policy (the server's,
// or asked for by the client) a stream that falls behind ends with
// RESOURCE_EXHAUSTED, and resuming with after_seq reads what it missed
// from history: nothing is lost.
func TestSlowStreamDisconnected(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy string
		ask    bool
	}{
		{"server policy", lsgrpc.PolicyDisconnect, false},
		{"client asks", lsgrpc.PolicyDrop, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: func(cfg *lsgrpc.Config) {
				cfg.QueueEntries = 200
				cfg.SlowPolicy = c.policy
			}})
			cli := pb.NewLogServiceClient(e.client(smallWindow...))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			st, err := cli.StreamLogs(ctx, &pb.LogRequest{DisconnectWhenSlow: c.ask})
			if err != nil {
				t.Fatal(err)
			}
			waitStreams(t, e.srv, 1, 20*time.Second)
			pad := strings.Repeat("y", 1000)
			const n = 3000
			for i := range n {
				en := entry(i)
				en.Fields = map[string]string{"pad": pad}
				if err := e.bus.Publisher().Publish(ctx, en); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.bus.Publisher().Flush(ctx); err != nil {
				t.Fatal(err)
			}
			waitStreams(t, e.srv, 0, 20*time.Second) // the server ended it
			var seen []*pb.LogEntry
			for {
				m, err := st.Recv()
				if err != nil {
					if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "after_seq") {
						t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED naming after_seq", err)
					}
					break
				}
				if m.GetControl() == nil {
					seen = append(seen, m)
				}
			}
			if len(seen) >= n {
				t.Fatalf("received all %d entries: the stream was never slow", len(seen))
			}
			var after uint64
			if len(seen) > 0 {
				after = seen[len(seen)-1].GetSeq()
			}
			st, err = cli.StreamLogs(ctx, &pb.LogRequest{Start: &pb.LogRequest_AfterSeq{AfterSeq: after}, DisconnectWhenSlow: c.ask})
			if err != nil {
				t.Fatal(err)
			}
			rest := collect(t, st, n-len(seen), true, 30*time.Second)
			all := append(seen, rest.entries...)
			checkSeqs(t, all)
			if len(all) != n || rest.dropped != 0 {
				t.Fatalf("got %d entries (%d then %d), %d dropped; want %d, none dropped", len(all), len(seen), len(rest.entries), rest.dropped, n)
			}
			t.Logf("disconnected after %d entries; resumed and read the other %d from history", len(seen), len(rest.entries))
		})
	}
}
