package websocket

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
)

// BenchmarkEncode measures encoding one batch of 256 entries into an
// entries frame (the per-entry cost of the writer, without the socket).
func BenchmarkEncode(b *testing.B) {
	h, err := New(Config{}, nil, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := &client{h: h}
	evs := make([]bus.Event, 256)
	for i := range evs {
		e := entry("web1", "nginx", bus.LevelInfo, strings.Repeat("x", 200)+strconv.Itoa(i))
		e.Time, e.Received = time.Now(), time.Now()
		evs[i] = bus.Event{Kind: bus.EventEntry, Seq: uint64(i + 1), Data: e.AppendJSON(nil)}
	}
	buf := make([]byte, 0, 256<<10)
	var marks [8]frameMark
	b.ReportAllocs()
	for b.Loop() {
		out, _, _ := c.encode(buf[:0], marks[:0], evs)
		buf = out
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/entry")
}

// BenchmarkFanout publishes entries to 100 in-process WebSocket clients
// of a real bus and handler and reports deliveries a second (the clients
// share the CPU with the server; the publisher keeps at most 1000 entries
// ahead of them).
func BenchmarkFanout(b *testing.B) {
	const clients = 100
	e := newEnv(b, Config{}, nil)
	var received atomic.Int64
	var wg sync.WaitGroup
	var conns []*gorillaws.Conn
	for range clients {
		c := e.mustDial("")
		waitType(b, c, "caught_up")
		conns = append(conns, c)
		wg.Go(func() {
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				received.Add(int64(bytes.Count(data, []byte(`,"seq":`))))
			}
		})
	}
	p := e.bus.Publisher()
	msg := strings.Repeat("m", 200)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for b.Loop() {
		en := entry("bench", "app", bus.LevelInfo, msg)
		en.Time, en.Received = time.Now(), time.Now()
		if err := p.Publish(ctx, en); err != nil {
			b.Fatal(err)
		}
		n++
		// Flow control: at most 1000 entries ahead of the slowest
		// client, well inside its queue, so that nothing is dropped.
		if n%500 == 0 {
			for received.Load() < int64(n-1000)*clients {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	want := int64(n) * clients
	deadline := time.Now().Add(time.Minute)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got := received.Load(); got < want {
		b.Fatalf("delivered %d of %d", got, want)
	}
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
