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

// soakDuration is how long the slow-stream test publishes:
// LOGSTREAM_SOAK (e.g. "30s"), else 6s (8s with the race detector).
func soakDuration(t testing.TB) time.Duration {
	if v := os.Getenv("LOGSTREAM_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LOGSTREAM_SOAK: %v", err)
		}
		return d
	}
	if raceEnabled {
		return 8 * time.Second
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

// TestSlowStreamBounded publishes 5,000 entries/s of 1KB while one
// stream stops reading and another reads: the server's heap stays bounded
// by the stalled stream's queue, the reading stream gets every entry with
// no drop, and the stalled one, when it reads again, is told exactly how
// many entries it missed.
func TestSlowStreamBounded(t *testing.T) {
	const (
		size      = 1000
		queueSize = 2 << 20
	)
	rate := 5000
	if raceEnabled {
		rate = 2500 // what the race-instrumented stream sustains here
	}
	d := soakDuration(t)
	// nats-server runs as its own process, so that its caches are not
	// counted in this process's heap.
	ns := bustest.StartProcess(t)
	e := startEnv(t, envOpt{
		cfg: func(c *lsgrpc.Config) {
			c.QueueEntries = 2000
			c.QueueBytes = queueSize
		},
		bus: []func(*bus.Config){func(c *bus.Config) { c.URLs = []string{ns.URL()} }},
	})
	body := strings.Repeat("x", size)
	mk := func(i int) bus.Entry {
		en := entry(i)
		en.Message = "message " + body[:10] + " " + en.Message
		en.Fields = map[string]string{"pad": body}
		return en
	}
	ctx := t.Context()
	slowCli := pb.NewLogServiceClient(e.client(smallWindow...))
	slow, err := slowCli.StreamLogs(ctx, &pb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fastCli := pb.NewLogServiceClient(e.client())
	fast, err := fastCli.StreamLogs(ctx, &pb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitStreams(t, e.srv, 2, 20*time.Second)
	if c := collect(t, slow, 0, true, 10*time.Second); c.caughtUpAt != 0 {
		t.Fatal("no caught_up")
	}

	// The fast reader counts entries and their latency.
	var (
		mu        sync.Mutex
		fastN     int
		fastDrops uint64
		lat       []time.Duration
	)
	fastDone := make(chan error, 1)
	go func() {
		for {
			m, err := fast.Recv()
			if err != nil {
				fastDone <- err
				return
			}
			now := time.Now()
			mu.Lock()
			if c := m.GetControl(); c != nil {
				fastDrops += c.GetDropped()
			} else {
				fastN++
				if m.GetHost() != "warm" {
					lat = append(lat, now.Sub(m.GetTime().AsTime()))
				}
			}
			mu.Unlock()
		}
	}()

	// Warm up: fill the bus's ring of recent entries (16MB) so that its
	// growth is not counted. What remains in this process: the bus client,
	// the gRPC server and its two clients.
	const warm = 10000
	for i := range warm {
		en := mk(i)
		en.Host = "warm"
		if err := e.bus.Publisher().Publish(ctx, en); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.bus.Publisher().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	bustestWait(t, 20*time.Second, "the fast stream to read the warm-up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fastN+int(fastDrops) >= warm
	})
	mu.Lock() // the burst may have overflowed its queue: count from here
	fastN, fastDrops = 0, 0
	mu.Unlock()

	base := heapAlloc()
	var maxHeap uint64
	total := warm
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	lastSample := start
	for time.Since(start) < d {
		<-tick.C
		want := warm + int(time.Since(start).Seconds()*float64(rate))
		for ; total < want; total++ {
			if err := e.bus.Publisher().Publish(ctx, mk(100000+total)); err != nil {
				t.Fatal(err)
			}
		}
		if time.Since(lastSample) >= time.Second {
			lastSample = time.Now()
			maxHeap = max(maxHeap, heapAlloc())
		}
	}
	tick.Stop()
	if err := e.bus.Publisher().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	maxHeap = max(maxHeap, heapAlloc())
	if f := os.Getenv("HEAPPROF"); f != "" {
		w, _ := os.Create(f)
		pprof.WriteHeapProfile(w)
		w.Close()
	}
	elapsed := time.Since(start)
	growth := int64(maxHeap) - int64(base)
	published := int64(total-warm) * int64(size)
	t.Logf("published %d entries (%d MB) in %v (%.0f/s); heap %d MB at start, growth at most %d MB",
		total-warm, published>>20, elapsed.Round(time.Millisecond), float64(total-warm)/elapsed.Seconds(), base>>20, growth>>20)

	// The reading stream got everything, promptly, with no drop.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n, drops := fastN, fastDrops
		mu.Unlock()
		if n+int(drops) >= total-warm {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: the fast stream received %d entries and %d dropped of %d", n, drops, total-warm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	t.Logf("fast stream: %d entries, %d dropped, latency p50 %v p99 %v max %v", fastN, fastDrops,
		lat[len(lat)/2].Round(time.Microsecond), p99.Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if fastN != total-warm || fastDrops != 0 {
		t.Errorf("fast stream: %d entries and %d dropped, want %d and 0", fastN, fastDrops, total-warm)
	}
	mu.Unlock()

	// The server's memory did not follow what the stalled stream missed.
	if limit := int64(12 << 20); growth > limit || growth > published/2 {
		t.Errorf("heap grew by %d MB while %d MB were published to a stalled stream (limit %d MB)", growth>>20, published>>20, limit>>20)
	}

	// The stalled stream reads again: entries plus dropped account for
	// every entry, and it is told of the drop.
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
	t.Logf("slow stream: %d entries, %d dropped", got, dropped)
	if dropped == 0 || got+int(dropped) != total {
		t.Errorf("slow stream: %d entries + %d dropped, want %d in all with some dropped", got, dropped, total)
	}
	e.cancel()
	if err := <-fastDone; status.Code(err) != codes.Unavailable {
		t.Errorf("fast stream ended with %v, want UNAVAILABLE", err)
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
