package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats-server and nats.go keep a few process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.startSignalProcessing"),
	)
}

func entry(i int) bus.Entry {
	now := time.Now()
	return bus.Entry{
		Time: now, Received: now, Host: "host1", Service: "svc" + strconv.Itoa(i%3),
		Level: bus.Level(i % 8), Message: "message " + strconv.Itoa(i), Source: bus.SourceSyslog,
	}
}

func publishN(t testing.TB, p *bus.Publisher, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		if err := p.Publish(ctx, entry(i)); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return
		}
	}
}

// checkEntries checks that evs hold exactly entries from..from+n-1, each
// once, with its fields intact, and each service's entries in publishing
// order (the publisher spreads services over connections, so the stream
// interleaves services freely).
func checkEntries(t testing.TB, evs []bus.Event, from, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("got %d entries, want %d", len(evs), n)
	}
	seen := make(map[int]bool, n)
	lastBySvc := map[string]int{}
	for _, ev := range evs {
		e, err := ev.Entry()
		if err != nil {
			t.Fatal(err)
		}
		i, err := strconv.Atoi(e.Message[len("message "):])
		if err != nil || i < from || i >= from+n || seen[i] {
			t.Fatalf("unexpected or duplicate entry %q", e.Message)
		}
		seen[i] = true
		want := entry(i)
		if e.Level != want.Level || e.Service != want.Service || e.Host != want.Host || e.Source != want.Source {
			t.Fatalf("entry %d: got %+v want %+v", i, e, want)
		}
		if ev.Subject != bus.EntrySubject("logs", &want) {
			t.Fatalf("entry %d on subject %q", i, ev.Subject)
		}
		if last, ok := lastBySvc[e.Service]; ok && i < last {
			t.Fatalf("service %s: entry %d after %d", e.Service, i, last)
		}
		lastBySvc[e.Service] = i
	}
}

// collect reads entry events until n have arrived, checking order.
func collect(t testing.TB, s *bus.Subscription, n int, timeout time.Duration) []bus.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []bus.Event
	var last uint64
	for len(out) < n {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d entries: %v", len(out), n, err)
		}
		if ev.Kind != bus.EventEntry {
			if ev.Kind == bus.EventDropped {
				t.Fatalf("unexpected dropped notice: %+v", ev)
			}
			continue
		}
		if ev.Seq <= last {
			t.Fatalf("sequence went from %d to %d", last, ev.Seq)
		}
		last = ev.Seq
		out = append(out, ev)
	}
	return out
}

func TestPublishSubscribe(t *testing.T) {
	for _, mode := range []string{"jetstream", "core"} {
		t.Run(mode, func(t *testing.T) {
			var b *bus.Bus
			if mode == "core" {
				b = bustest.Open(t, bustest.CoreMode)
			} else {
				b = bustest.Open(t)
			}
			sub, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			publishN(t, b.Publisher(), 0, 100)
			if err := b.Publisher().Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			evs := collect(t, sub, 100, 10*time.Second)
			checkEntries(t, evs, 0, 100)
		})
	}
}

// TestHistoryLiveSeam: 10,000 stored, a subscriber from sequence 0 while
// 10,000 more are published receives exactly 20,000 in order.
func TestHistoryLiveSeam(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	publishN(t, p, 0, 10000)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var wg sync.WaitGroup
	wg.Go(func() { publishN(t, p, 10000, 10000) })
	evs := collect(t, sub, 20000, 60*time.Second)
	wg.Wait()
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has sequence %d", i, ev.Seq)
		}
	}
	checkEntries(t, evs, 0, 20000)
	// Nothing more arrives: no duplicate after the seam.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			break
		}
		if ev.Kind == bus.EventEntry {
			t.Fatalf("extra entry after 20000: seq %d", ev.Seq)
		}
	}
}

func TestDedupByID(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	e := entry(1)
	e.ID = "boot-1:seq-42"
	for range 3 {
		if err := p.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func streamMsgs(t testing.TB, b *bus.Bus) uint64 {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), "LOGS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestFilterSubscription(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	f := bus.Filter{Services: []string{"svc1"}, Levels: bus.LevelsUpTo(bus.LevelErr)}
	live, err := b.Subscribe(t.Context(), f, bus.StartAtNew(), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	publishN(t, p, 0, 240)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 240 {
		e := entry(i)
		if f.Match(&e) {
			want = append(want, e.Message)
		}
	}
	check := func(name string, s *bus.Subscription) {
		evs := collect(t, s, len(want), 10*time.Second)
		for i, ev := range evs {
			e, _ := ev.Entry()
			if e.Message != want[i] {
				t.Fatalf("%s: entry %d is %q, want %q", name, i, e.Message, want[i])
			}
		}
	}
	check("live", live)
	hist, err := b.Subscribe(t.Context(), f, bus.StartAfterSeq(0), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	check("history", hist)

	last, err := b.Subscribe(t.Context(), f, bus.StartAtLast(5), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	evs := collect(t, last, 5, 10*time.Second)
	for i, ev := range evs {
		e, _ := ev.Entry()
		if e.Message != want[len(want)-5+i] {
			t.Fatalf("last 5: entry %d is %q, want %q", i, e.Message, want[len(want)-5+i])
		}
	}
}

func TestCaughtUpAndResume(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	publishN(t, p, 0, 50)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAfterSeq(20), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var seqs []uint64
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == bus.EventCaughtUp {
			break
		}
		seqs = append(seqs, ev.Seq)
	}
	if len(seqs) != 30 || seqs[0] != 21 || seqs[29] != 50 {
		t.Fatalf("resume after 20 gave %v", seqs)
	}
}

func TestSlowSubscriberDropsAndIsTold(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	slow, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	publishN(t, p, 0, 1000)
	collect(t, fast, 1000, 20*time.Second) // the fast one gets everything
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var dropped uint64
	got := 0
	for got+int(dropped) < 1000 {
		ev, err := slow.Next(ctx)
		if err != nil {
			t.Fatalf("slow: got %d, dropped %d: %v", got, dropped, err)
		}
		switch ev.Kind {
		case bus.EventDropped:
			if ev.Reason != bus.ReasonSlow {
				t.Fatalf("reason %q", ev.Reason)
			}
			dropped += ev.Dropped
		case bus.EventEntry:
			got++
		}
	}
	if dropped == 0 || got > 101 {
		t.Fatalf("slow subscriber got %d and dropped %d of 1000; want a bounded buffer of 100", got, dropped)
	}
}

func TestPublisherBlocksWhenNotAcknowledged(t *testing.T) {
	srv := bustest.StartProcess(t)
	cfg := bus.Config{URLs: []string{srv.URL()}}
	cfg.Publish.MaxInFlight = 64
	cfg.Publish.Connections = 1
	cfg.Publish.GenerateIDs = true
	reg := prometheus.NewRegistry()
	b, err := bus.Open(t.Context(), cfg, t.TempDir(), bustest.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := b.Publisher()
	publishN(t, p, 0, 10)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	// With the server gone nothing is acknowledged: exactly the window
	// fits, then Publish blocks until its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	n := 0
	for ; n < 1000; n++ {
		if err = p.Publish(ctx, entry(10+n)); err != nil {
			break
		}
	}
	if n != 64 || err != context.DeadlineExceeded {
		t.Fatalf("published %d before blocking (err %v); want the window of 64", n, err)
	}
	if p.InFlight() != 64 {
		t.Fatalf("in flight %d", p.InFlight())
	}
	srv.Start()
	fctx, fcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer fcancel()
	if err := p.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if got, dups := countDistinct(t, srv.URL()); got != 74 || dups != 0 {
		t.Fatalf("stream holds %d distinct entries and %d duplicates, want 74 and 0", got, dups)
	}
	// The failures and the resends are counted, not silent: whether the
	// ack timeout or the reconnection comes first, each of the 64 is
	// counted a failure (timeout or disconnect) and resent.
	failures, resends := 0.0, 0.0
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "logstream_bus_publish_failures_total":
				failures += m.GetCounter().GetValue()
			case "logstream_bus_publish_retries_total":
				resends += m.GetCounter().GetValue()
			}
		}
	}
	if failures < 64 || resends < 64 {
		t.Fatalf("counted %v failures and %v resends for 64 entries sent during the outage", failures, resends)
	}
}

// countDistinct reads the whole stream and returns the number of distinct
// messages and of duplicates.
func countDistinct(t testing.TB, url string) (distinct, dups int) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range bustest.ReadStream(t, url, "LOGS") {
		var e bus.Entry
		if err := e.UnmarshalJSON(m.Data); err != nil {
			t.Fatal(err)
		}
		if seen[e.Message] {
			dups++
		}
		seen[e.Message] = true
	}
	return len(seen), dups
}

// TestExternalServerRestart: the nats-server process is killed and
// restarted while entries are published; in JetStream mode every entry
// ends up in the stream — exactly once with generated IDs, at least once
// without.
func TestExternalServerRestart(t *testing.T) {
	for _, gen := range []bool{true, false} {
		t.Run(fmt.Sprintf("generate_ids=%v", gen), func(t *testing.T) { testExternalServerRestart(t, gen) })
	}
}

func testExternalServerRestart(t *testing.T, generateIDs bool) {
	srv := bustest.StartProcess(t)
	b := bustest.Open(t, func(c *bus.Config) {
		c.URLs = []string{srv.URL()}
		c.Publish.AckTimeout = time.Second
		c.Publish.GenerateIDs = generateIDs
	})
	p := b.Publisher()
	const total = 20000
	var wg sync.WaitGroup
	wg.Go(func() { publishN(t, p, 0, total) })
	bustest.WaitFor(t, 30*time.Second, "some entries acknowledged", func() bool {
		return streamCount(srv.URL()) > 2000
	})
	restartThenFlush(t, srv, &wg, p)
	got, dups := countDistinct(t, srv.URL())
	if got != total {
		t.Fatalf("stream holds %d distinct entries, want %d", got, total)
	}
	if generateIDs && dups != 0 {
		t.Fatalf("%d duplicates despite generated IDs", dups)
	}
	t.Logf("%d entries, %d stored twice", got, dups)
}

func streamCount(url string) uint64 {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "LOGS")
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestPublisherSlotBuffers: the ring slots keep their encoding buffers
// from entry to entry. Entries of mixed sizes (some past what a slot
// keeps) from four goroutines through a window of 8, with the server
// killed and restarted in the middle so that the retry loop resends:
// every stored message is the entry its Nats-Msg-Id names, once.
func TestPublisherSlotBuffers(t *testing.T) {
	srv := bustest.StartProcess(t)
	cfg := bus.Config{URLs: []string{srv.URL()}}
	cfg.Publish.MaxInFlight = 8
	cfg.Publish.Connections = 2
	cfg.Publish.AckTimeout = time.Second
	b, err := bus.Open(t.Context(), cfg, t.TempDir(), bustest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := b.Publisher()
	const workers, each = 4, 1500
	body := func(i int) string { // 7 KiB for every seventh entry, else 0–299 bytes
		if i%7 == 0 {
			return strings.Repeat(strconv.Itoa(i%10), 7<<10)
		}
		return strings.Repeat("x", (i*37)%300)
	}
	var published atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * each; i < (w+1)*each; i++ {
				e := entry(i)
				e.ID = "slot-" + strconv.Itoa(i)
				e.Message = "message " + strconv.Itoa(i) + " " + body(i)
				if err := p.Publish(t.Context(), e); err != nil {
					t.Errorf("publish %d: %v", i, err)
					return
				}
				published.Add(1)
			}
		})
	}
	bustest.WaitFor(t, 30*time.Second, "1000 entries published", func() bool { return published.Load() >= 1000 })
	restartThenFlush(t, srv, &wg, p)
	seen := map[int]bool{}
	for _, m := range bustest.ReadStream(t, srv.URL(), "LOGS") {
		var e bus.Entry
		if err := e.UnmarshalJSON(m.Data); err != nil {
			t.Fatalf("stream seq %d: %v: %q", m.StreamSeq, err, m.Data)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m.MsgID, "slot-"))
		if err != nil || e.ID != m.MsgID || e.Message != "message "+strconv.Itoa(i)+" "+body(i) {
			t.Fatalf("stream seq %d: Nats-Msg-Id %q holds entry %q: %.60q", m.StreamSeq, m.MsgID, e.ID, e.Message)
		}
		if seen[i] {
			t.Fatalf("entry %d stored twice", i)
		}
		seen[i] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("stream holds %d of %d entries", len(seen), workers*each)
	}
}

// restartThenFlush kills and restarts the server while the publishing
// goroutines of wg run, waits for them, and then for every acknowledgement.
func restartThenFlush(t *testing.T, srv *bustest.Process, wg *sync.WaitGroup, p *bus.Publisher) {
	t.Helper()
	srv.Kill()
	srv.Start()
	wg.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
