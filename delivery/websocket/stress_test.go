package websocket

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

// TestStress runs 200 clients against one handler under the race
// detector while entries flow: pings every 100 ms, clients that close
// cleanly or drop the TCP connection, stop reading (closed by the server
// for a missed pong or a write timeout), change filters, send garbage or
// oversized messages, or stay until the server shuts down. Nothing may
// panic or race, and every goroutine must be gone at the end (goleak in
// TestMain).
func TestStress(t *testing.T) {
	e := newEnv(t, Config{
		PingInterval: 100 * time.Millisecond, PongTimeout: 150 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, QueueEntries: 64, QueueBytes: 16 << 10,
		MaxMessageBytes: 1024, SubscribeRate: 50, SendBuffer: 8 << 10,
	}, nil)
	ctx, stopPublishing := context.WithCancel(context.Background())
	var pubWG sync.WaitGroup
	pubWG.Go(func() {
		p := e.bus.Publisher()
		for i := 0; ctx.Err() == nil; i++ {
			en := entry("h"+strconv.Itoa(i%3), "s"+strconv.Itoa(i%5), bus.Level(i%8), "stress "+strconv.Itoa(i))
			en.Time, en.Received = time.Now(), time.Now()
			if err := p.Publish(ctx, en); err != nil {
				return
			}
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond) // about 5,000 entries a second at most
			}
		}
	})

	const clients = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	slowest := map[string]time.Duration{}
	began := time.Now()
	count := func(s string) {
		mu.Lock()
		outcomes[s]++
		slowest[s] = max(slowest[s], time.Since(began).Round(time.Millisecond))
		mu.Unlock()
	}
	queries := []string{"", "level=err", "hosts=h1&services=s*", "regex=stress%20%5Cd*7$", "backlog=20", "after=1"}
	for i := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 42))
			c, _, err := e.dial(queries[i%len(queries)], nil)
			if err != nil {
				count("dial error")
				return
			}
			defer c.Close()
			deadline := time.Now().Add(time.Duration(200+r.IntN(1500)) * time.Millisecond)
			readUntil := func(d time.Time) error {
				_ = c.SetReadDeadline(d)
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						return err
					}
				}
			}
			switch behaviour := i % 8; behaviour {
			case 0: // read, then close cleanly
				_ = readUntil(deadline)
				_ = c.WriteControl(gorillaws.CloseMessage, gorillaws.FormatCloseMessage(gorillaws.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
				_ = readUntil(time.Now().Add(2 * time.Second))
				count("client close")
			case 1: // read, then drop the TCP connection
				_ = readUntil(deadline)
				c.NetConn().Close()
				count("client reset")
			case 2: // stop reading: the server must close it
				time.Sleep(time.Until(deadline))
				_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(c.NetConn())
				count("server closed a stalled client")
			case 3: // change filters and ping while reading
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = readUntil(deadline.Add(time.Second))
				}()
				for j := 0; time.Now().Before(deadline); j++ {
					msg := `{"type":"subscribe","level":"` + bus.Level(j%8).String() + `","backlog":` + strconv.Itoa(j%10) + `}`
					if j%3 == 0 {
						msg = `{"type":"ping","id":"` + strconv.Itoa(j) + `"}`
					}
					if c.WriteMessage(gorillaws.TextMessage, []byte(msg)) != nil {
						break
					}
					time.Sleep(time.Duration(5+r.IntN(30)) * time.Millisecond)
				}
				c.NetConn().Close()
				<-done
				count("filters changed")
			case 4: // garbage, then an oversized message
				_ = c.WriteMessage(gorillaws.TextMessage, []byte(`{"type":`))
				_ = c.WriteMessage(gorillaws.BinaryMessage, []byte{0, 1, 2})
				_ = c.WriteMessage(gorillaws.TextMessage, bytes.Repeat([]byte("z"), 4096))
				_ = readUntil(time.Now().Add(5 * time.Second))
				count("oversized")
			default: // stay until the server shuts down
				_ = readUntil(time.Now().Add(30 * time.Second))
				count("stayed")
			}
		})
	}
	// Let the short-lived behaviours play out, then shut down while the
	// rest are connected.
	bustest.WaitFor(t, 30*time.Second, "the short-lived clients to finish", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k, v := range outcomes {
			if k != "stayed" {
				n += v
			}
		}
		return n >= clients*5/8
	})
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.h.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	stopPublishing()
	pubWG.Wait()
	t.Logf("outcomes: %v (last at %v); evictions: pong %v write %v read_limit %v",
		outcomes, slowest, e.metric("logstream_websocket_evictions_total", "reason=pong_timeout"),
		e.metric("logstream_websocket_evictions_total", "reason=write_timeout"),
		e.metric("logstream_websocket_evictions_total", "reason=read_limit"))
	if outcomes["dial error"] > 0 || outcomes["stayed"] != clients*3/8 {
		t.Fatalf("outcomes %v", outcomes)
	}
	if e.h.Clients() != 0 {
		t.Fatalf("%d clients left after Shutdown", e.h.Clients())
	}
}
