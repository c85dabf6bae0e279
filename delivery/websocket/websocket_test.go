package websocket

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/internal/auth"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestFilters checks that every filter is applied on the server: a
// filtered client receives the matching entries and not one byte of the
// others.
func TestFilters(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	all := []bus.Entry{
		entry("web1", "nginx", bus.LevelErr, "web1 nginx err upstream timed out"),
		entry("web2", "nginx", bus.LevelInfo, "web2 nginx info GET /"),
		entry("db1", "postgres", bus.LevelWarning, "db1 postgres warning slow query"),
		entry("db1", "postgres", bus.LevelCrit, "db1 postgres crit panic"),
		entry("web1.example.com", "sshd", bus.LevelNotice, "fqdn sshd notice accepted key"),
		entry("web2", "cron", bus.LevelDebug, "web2 cron debug tick 42"),
	}
	cases := []struct {
		name  string
		query string
		want  []int // indexes into all
	}{
		{"everything", "", []int{0, 1, 2, 3, 4, 5}},
		{"host", "hosts=web1", []int{0}},
		{"host glob", "hosts=web*", []int{0, 1, 4, 5}},
		{"host sanitised", "host=web1.example.com", []int{4}},
		{"two hosts", "host=web2&host=db1", []int{1, 2, 3, 5}},
		{"service", "services=nginx,cron", []int{0, 1, 5}},
		{"level err and above", "level=err", []int{0, 3}},
		{"level alias", "level=warn", []int{0, 2, 3}},
		{"contains", "contains=slow", []int{2}},
		{"regex", "regex=" + "%5Eweb2%20.*%20%5Cd%2B%24", []int{5}},
		{"combined", "hosts=db*&level=warning&regex=query", []int{2}},
	}
	conns := make([]*gorillaws.Conn, len(cases))
	for i, c := range cases {
		conns[i] = e.mustDial(c.query)
		if f := mustFrame(t, conns[i]); f.Type != "subscribed" {
			t.Fatalf("%s: first frame %s", c.name, f.raw)
		}
		if f := mustFrame(t, conns[i]); f.Type != "caught_up" {
			t.Fatalf("%s: second frame %s", c.name, f.raw)
		}
	}
	e.publish(all...)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var want []string
			for _, j := range c.want {
				want = append(want, all[j].Message)
			}
			got, frames := collect(t, conns[i], len(want), 10*time.Second)
			// Entries of different subjects may be stored in any order
			// (the publisher spreads subjects over connections).
			slices.Sort(want)
			if gotMsgs := msgs(got); !slices.Equal(slices.Sorted(slices.Values(gotMsgs)), want) {
				t.Fatalf("got %q\nwant %q", gotMsgs, want)
			}
			expectQuiet(t, conns[i], 300*time.Millisecond)
			var raw []byte
			for _, f := range frames {
				raw = append(raw, f.raw...)
			}
			for j, en := range all {
				if !slices.Contains(c.want, j) && bytes.Contains(raw, []byte(en.Message)) {
					t.Errorf("bytes of entry %q reached the client", en.Message)
				}
			}
		})
	}
}

// TestHistoryThenLive checks backlog=N: the last N entries, caught_up,
// then live entries, with no gap and no duplicate at the seam.
func TestHistoryThenLive(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.publish(numbered("old", 50)...)
	c := e.mustDial("backlog=20")
	if f := mustFrame(t, c); f.Type != "subscribed" || !strings.Contains(string(f.Filter), `"backlog":20`) {
		t.Fatalf("first frame: %s", f.raw)
	}
	// Publish live entries while the history is being sent.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 30 {
			e.publish(entry("h1", "app", bus.LevelInfo, "live-"+strconv.Itoa(i)))
		}
	}()
	got, frames := collect(t, c, 50, 20*time.Second)
	<-done
	var want []string
	for i := 30; i < 50; i++ {
		want = append(want, "old-"+strconv.Itoa(i))
	}
	for i := range 30 {
		want = append(want, "live-"+strconv.Itoa(i))
	}
	if !slices.Equal(msgs(got), want) {
		t.Fatalf("got %q\nwant %q", msgs(got), want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Fatalf("seq %d after %d: a gap or duplicate", got[i].seq, got[i-1].seq)
		}
	}
	caught := 0
	for _, f := range frames {
		if f.Type == "caught_up" {
			caught++
		}
	}
	if caught != 1 {
		t.Fatalf("%d caught_up frames, want 1", caught)
	}
	expectQuiet(t, c, 200*time.Millisecond)
}

// TestResume checks after=<seq>: a client that reconnects receives
// exactly the entries after the last one it saw, once.
func TestResume(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	e.publish(numbered("a", 100)...)
	c := e.mustDial("after=0")
	got, _ := collect(t, c, 40, 10*time.Second)
	got = got[:40]
	last := got[39].seq
	c.Close()
	e.publish(numbered("b", 50)...)
	c2 := e.mustDial("after=" + strconv.FormatUint(last, 10))
	rest, frames := collect(t, c2, 110, 10*time.Second)
	if len(rest) != 110 {
		t.Fatalf("got %d entries, want 110", len(rest))
	}
	for i, g := range rest {
		if g.seq != last+1+uint64(i) {
			t.Fatalf("entry %d has seq %d, want %d", i, g.seq, last+1+uint64(i))
		}
	}
	if rest[0].entry.Message != "a-40" || rest[109].entry.Message != "b-49" {
		t.Fatalf("first %q last %q", rest[0].entry.Message, rest[109].entry.Message)
	}
	for _, f := range frames {
		if f.Type == "dropped" {
			t.Fatalf("unexpected %s", f.raw)
		}
	}
	expectQuiet(t, c2, 200*time.Millisecond)
}

// TestResumeGone checks that entries no longer in the stream are told
// with a dropped frame (reason gone), followed by what remains.
func TestResumeGone(t *testing.T) {
	e := newEnv(t, Config{}, nil, func(c *bus.Config) { c.Stream.MaxBytes = 32 << 10 })
	e.publish(numbered("x", 600)...)
	c := e.mustDial("after=5")
	mustFrame(t, c) // subscribed
	f := mustFrame(t, c)
	if f.Type != "dropped" || f.Reason != "gone" || f.Count == 0 {
		t.Fatalf("want a dropped frame with reason gone, got %s", f.raw)
	}
	first := 6 + f.Count
	n := int(601 - first) // sequences 1..600 were published
	got, _ := collect(t, c, n, 10*time.Second)
	if got[0].seq != first || got[len(got)-1].seq != 600 || len(got) != n {
		t.Fatalf("got %d entries %d..%d, want %d..600", len(got), got[0].seq, got[len(got)-1].seq, first)
	}
	if e.metric("logstream_websocket_dropped_total", "reason=gone") != float64(f.Count) {
		t.Fatalf("dropped_total{gone} = %v, want %d", e.metric("logstream_websocket_dropped_total", "reason=gone"), f.Count)
	}
}

// TestBadRequest checks that a bad filter gets an error frame and a close
// code with the reason, not a silent empty stream.
func TestBadRequest(t *testing.T) {
	e := newEnv(t, Config{MaxBacklog: 100}, nil)
	cases := []struct{ query, want string }{
		{"regex=%28unclosed", "regex: error parsing regexp"},
		{"level=loud", `level: "loud" is not a level`},
		{"levle=err", `unknown parameter "levle"`},
		{"backlog=-1", "backlog: -1 is negative"},
		{"backlog=1000", "more than this server allows (100)"},
		{"backlog=x", "backlog: \"x\" is not a number"},
		{"backlog=5&after=3", "give at most one start"},
		{"since=yesterday", "since: \"yesterday\" is neither"},
		{"after=-3", "after: \"-3\" is not a stream sequence"},
		{"level=err&level=info", "level: given 2 times"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			conn := e.mustDial(c.query)
			ce, frames := closeCode(t, conn)
			if ce.Code != CodeBadRequest || !strings.Contains(ce.Text, c.want) {
				t.Fatalf("close %d %q, want %d with %q", ce.Code, ce.Text, CodeBadRequest, c.want)
			}
			if len(frames) != 1 || frames[0].Type != "error" || frames[0].Code != CodeBadRequest || !strings.Contains(frames[0].Message, c.want) {
				t.Fatalf("frames %v, want one error frame with %q", frames, c.want)
			}
		})
	}
	if got := e.metric("logstream_websocket_rejected_total", "reason=bad_request"); got != float64(len(cases)) {
		t.Fatalf("rejected_total{bad_request} = %v, want %d", got, len(cases))
	}
}

// TestOrigin checks the Origin allow-list: same-origin by default,
// anything else refused with 403 before the upgrade.
func TestOrigin(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	for _, c := range []struct {
		origin string
		status int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + host, http.StatusSwitchingProtocols},
		{"http://evil.example", http.StatusForbidden},
		{"http://" + host + ".evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		hdr := http.Header{}
		if c.origin != "" {
			hdr.Set("Origin", c.origin)
		}
		conn, resp, err := e.dial("", hdr)
		if resp == nil {
			t.Fatalf("origin %q: no response: %v", c.origin, err)
		}
		if resp.StatusCode != c.status {
			t.Fatalf("origin %q: HTTP %d, want %d", c.origin, resp.StatusCode, c.status)
		}
		if conn != nil {
			conn.Close()
		}
	}
	if got := e.metric("logstream_websocket_rejected_total", "reason=origin"); got != 3 {
		t.Fatalf("rejected_total{origin} = %v, want 3", got)
	}

	e2 := newEnv(t, Config{AllowedOrigins: []string{"https://logs.example.com"}}, nil)
	for origin, status := range map[string]int{
		"https://logs.example.com":                            http.StatusSwitchingProtocols,
		"https://LOGS.example.com":                            http.StatusSwitchingProtocols,
		"http://logs.example.com":                             http.StatusForbidden,
		"http://" + strings.TrimPrefix(e2.srv.URL, "http://"): http.StatusForbidden,
	} {
		conn, resp, _ := e2.dial("", http.Header{"Origin": {origin}})
		if resp == nil || resp.StatusCode != status {
			t.Fatalf("origin %q: response %v, want %d", origin, resp, status)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// TestControlMessages checks changing the filter on an open socket, ping,
// and that a bad control message is answered without ending the stream.
func TestControlMessages(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	c := e.mustDial("level=err")
	waitType(t, c, "caught_up")
	e.publish(entry("h", "a", bus.LevelErr, "err-1"), entry("h", "b", bus.LevelInfo, "info-1"))
	if got, _ := collect(t, c, 1, 10*time.Second); got[0].entry.Message != "err-1" {
		t.Fatalf("got %q", got[0].entry.Message)
	}
	send := func(s string) {
		t.Helper()
		if err := c.WriteMessage(gorillaws.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"type":"subscribe","regex":"(","id":"r1"}`)
	f := waitType(t, c, "error")
	if f.Code != CodeBadRequest || f.ID != "r1" || !strings.Contains(f.Message, "regex:") {
		t.Fatalf("error frame %s", f.raw)
	}
	send(`{"type":"ping","id":"p1"}`)
	if f := waitType(t, c, "pong"); f.ID != "p1" {
		t.Fatalf("pong %s", f.raw)
	}
	send(`not json`)
	if f := waitType(t, c, "error"); !strings.Contains(f.Message, "invalid JSON") {
		t.Fatalf("error frame %s", f.raw)
	}
	send(`{"type":"subscribe","bogus":1}`)
	if f := waitType(t, c, "error"); !strings.Contains(f.Message, "bogus") {
		t.Fatalf("error frame %s", f.raw)
	}
	// The old filter still applies.
	e.publish(entry("h", "b", bus.LevelInfo, "info-2"), entry("h", "a", bus.LevelCrit, "crit-2"))
	if got, _ := collect(t, c, 1, 10*time.Second); got[0].entry.Message != "crit-2" {
		t.Fatalf("got %q", got[0].entry.Message)
	}
	// A new filter, with a backlog.
	send(`{"type":"subscribe","services":["b"],"backlog":5,"id":"r2"}`)
	f = waitType(t, c, "subscribed")
	if f.ID != "r2" || !strings.Contains(string(f.Filter), `"services":["b"]`) {
		t.Fatalf("subscribed frame %s", f.raw)
	}
	got, _ := collect(t, c, 2, 10*time.Second)
	if !slices.Equal(msgs(got), []string{"info-1", "info-2"}) {
		t.Fatalf("backlog %q", msgs(got))
	}
	waitType(t, c, "caught_up")
	e.publish(entry("h", "a", bus.LevelErr, "err-3"), entry("h", "b", bus.LevelDebug, "debug-3"))
	if got, _ := collect(t, c, 1, 10*time.Second); got[0].entry.Message != "debug-3" {
		t.Fatalf("got %q", got[0].entry.Message)
	}
	// Binary messages are refused with an error frame.
	if err := c.WriteMessage(gorillaws.BinaryMessage, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if f := waitType(t, c, "error"); !strings.Contains(f.Message, "binary") {
		t.Fatalf("error frame %s", f.raw)
	}
	// A message over the read limit closes with 1009.
	if err := c.WriteMessage(gorillaws.TextMessage, bytes.Repeat([]byte("x"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	if ce, _ := closeCode(t, c); ce.Code != gorillaws.CloseMessageTooBig {
		t.Fatalf("close %v, want 1009", ce)
	}
	bustest.WaitFor(t, 5*time.Second, "eviction counted", func() bool {
		return e.metric("logstream_websocket_evictions_total", "reason=read_limit") == 1
	})
}

// TestAuth checks bearer tokens from each place a client can put them,
// and that the token's scope narrows the client's filter.
func TestAuth(t *testing.T) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{HMACSecretFile: file})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(hex.EncodeToString(secret)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e := newEnv(t, Config{}, v)
	nginx := sign(jwt.MapClaims{"services": []string{"nginx"}})

	for name, q := range map[string]string{"no token": "", "bad token": "token=abc.def.ghi"} {
		c := e.mustDial(q)
		if ce, _ := closeCode(t, c); ce.Code != CodeUnauthorized {
			t.Fatalf("%s: close %v, want %d", name, ce, CodeUnauthorized)
		}
	}
	// Scope excluding everything asked.
	c := e.mustDial("services=sshd&token=" + nginx)
	if ce, _ := closeCode(t, c); ce.Code != CodeForbidden {
		t.Fatalf("close %v, want %d", ce, CodeForbidden)
	}

	d := gorillaws.Dialer{Subprotocols: []string{Subprotocol, "bearer." + nginx}}
	viaProto, resp, err := d.Dial(e.wsURL(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProto.Close()
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != Subprotocol {
		t.Fatalf("subprotocol %q, want %q", p, Subprotocol)
	}
	viaHeader, _, err := e.dial("", http.Header{"Authorization": {"Bearer " + nginx}})
	if err != nil {
		t.Fatal(err)
	}
	defer viaHeader.Close()
	viaQuery := e.mustDial("token=" + nginx)
	for _, c := range []*gorillaws.Conn{viaProto, viaHeader, viaQuery} {
		waitType(t, c, "caught_up")
	}
	e.publish(entry("h", "sshd", bus.LevelErr, "secret sshd"), entry("h", "nginx", bus.LevelErr, "nginx line"))
	for _, c := range []*gorillaws.Conn{viaProto, viaHeader, viaQuery} {
		got, frames := collect(t, c, 1, 10*time.Second)
		if got[0].entry.Message != "nginx line" {
			t.Fatalf("got %q", got[0].entry.Message)
		}
		for _, f := range frames {
			if bytes.Contains(f.raw, []byte("secret sshd")) {
				t.Fatal("an entry outside the token's scope reached the client")
			}
		}
	}
}

// TestSlowClient checks both policies on a client that reads too slowly:
// drop tells it how many it missed; disconnect closes it with 4008.
func TestSlowClient(t *testing.T) {
	for _, policy := range []string{PolicyDrop, PolicyDisconnect} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, Config{QueueEntries: 4096, QueueBytes: 2 << 20, SlowPolicy: policy, WriteTimeout: 30 * time.Second}, nil)
			slow := dialSmallBuffer(t, e.wsURL(""))
			fast := e.mustDial("")
			waitType(t, slow, "caught_up")
			waitType(t, fast, "caught_up")
			// The slow client does not read while the server fills the
			// socket buffers and then its queue.
			const n = 20000
			big := strings.Repeat("y", 200)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := readSeqs(fast, n, 60*time.Second); err != nil {
					t.Errorf("fast client: %v", err)
				}
			}()
			batch := make([]bus.Entry, 0, 100)
			for i := range n {
				batch = append(batch, entry("h", "app", bus.LevelInfo, big+strconv.Itoa(i)))
				if len(batch) == cap(batch) {
					e.publish(batch...)
					batch = batch[:0]
				}
			}
			<-done
			if policy == PolicyDisconnect {
				ce, frames := closeCode(t, slow)
				if ce.Code != CodeSlow {
					t.Fatalf("close %v, want %d", ce, CodeSlow)
				}
				if f := frames[len(frames)-1]; f.Type != "error" || f.Code != CodeSlow {
					t.Fatalf("last frame %s", f.raw)
				}
				if got := e.metric("logstream_websocket_evictions_total", "reason=slow"); got != 1 {
					t.Fatalf("evictions_total{slow} = %v", got)
				}
				return
			}
			var received, dropped uint64
			for received+dropped < n {
				f := mustFrame(t, slow)
				received += uint64(len(f.Entries))
				if f.Type == "dropped" {
					if f.Reason != "slow" {
						t.Fatalf("dropped frame %s", f.raw)
					}
					dropped += f.Count
				}
			}
			if received+dropped != n || dropped == 0 {
				t.Fatalf("received %d + dropped %d, want %d with some dropped", received, dropped, n)
			}
			if got := e.metric("logstream_websocket_dropped_total", "reason=slow"); got != float64(dropped) {
				t.Fatalf("dropped_total{slow} = %v, want %d", got, dropped)
			}
		})
	}
}

// TestPingTimeout checks that a peer that stops answering pings is closed
// within ping_interval + pong_timeout.
func TestPingTimeout(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 200 * time.Millisecond, PongTimeout: 200 * time.Millisecond}, nil)
	live := e.mustDial("")
	// A client that reads (and so answers pings) stays.
	liveDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				liveDone <- err
				return
			}
		}
	}()
	dead := e.mustDial("")
	start := time.Now()
	bustest.WaitFor(t, 5*time.Second, "the silent client to be closed", func() bool {
		return e.metric("logstream_websocket_evictions_total", "reason=pong_timeout") == 1
	})
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v, want about 400ms", d)
	}
	_ = dead
	select {
	case err := <-liveDone:
		t.Fatalf("the client answering pings was closed: %v", err)
	default:
	}
	bustest.WaitFor(t, 5*time.Second, "one client left", func() bool { return e.h.Clients() == 1 })
}

// TestShutdown checks that Shutdown closes every socket with 1001 and
// refuses new clients.
func TestShutdown(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	var conns []*gorillaws.Conn
	for range 10 {
		c := e.mustDial("")
		waitType(t, c, "caught_up")
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		ce, _ := closeCode(t, c)
		if ce.Code != gorillaws.CloseGoingAway {
			t.Fatalf("close %v, want 1001", ce)
		}
	}
	_, resp, err := e.dial("", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", resp, err)
	}
	if e.h.Clients() != 0 {
		t.Fatalf("%d clients left", e.h.Clients())
	}
}

// readSeqs reads n entries with consecutive sequences, cheaply: it looks
// only at the "seq" keys of each frame.
func readSeqs(c *gorillaws.Conn, n int, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	var last uint64
	for got := 0; got < n; {
		_, data, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("after %d of %d entries: %v", got, n, err)
		}
		if !bytes.HasPrefix(data, framePrefixEntries) {
			if bytes.Contains(data, []byte(`"dropped"`)) {
				return fmt.Errorf("after %d entries: %s", got, data)
			}
			continue
		}
		for {
			i := bytes.Index(data, []byte(`,"seq":`))
			if i < 0 {
				break
			}
			data = data[i+7:]
			j := bytes.IndexByte(data, '}')
			seq, err := strconv.ParseUint(string(data[:j]), 10, 64)
			if err != nil {
				return err
			}
			if last != 0 && seq != last+1 {
				return fmt.Errorf("seq %d after %d", seq, last)
			}
			last = seq
			got++
		}
	}
	return nil
}

// dialSmallBuffer connects with a 4KiB receive buffer, so that a client
// that stops reading is soon seen as slow.
func dialSmallBuffer(t testing.TB, url string) *gorillaws.Conn {
	t.Helper()
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	d := gorillaws.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMaxClients(t *testing.T) {
	e := newEnv(t, Config{MaxClients: 2}, nil)
	a, b := e.mustDial(""), e.mustDial("")
	_, resp, err := e.dial("", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third client: %v %v", resp, err)
	}
	waitType(t, a, "caught_up")
	waitType(t, b, "caught_up")
	a.Close()
	bustest.WaitFor(t, 5*time.Second, "a slot to free", func() bool { return e.h.Clients() == 1 })
	e.mustDial("")
}

func TestCoreModeNoHistory(t *testing.T) {
	e := newEnv(t, Config{}, nil, bustest.CoreMode)
	c := e.mustDial("backlog=10")
	if ce, _ := closeCode(t, c); ce.Code != CodeBadRequest || !strings.Contains(ce.Text, "no history") {
		t.Fatalf("close %v", ce)
	}
	live := e.mustDial("")
	waitType(t, live, "caught_up")
	e.publish(entry("h", "s", bus.LevelInfo, "core"))
	if got, _ := collect(t, live, 1, 10*time.Second); got[0].entry.Message != "core" {
		t.Fatalf("got %q", got[0].entry.Message)
	}
}

// TestFrameInterval checks the batching of frame_interval: an entry after
// a quiet period is written at once, and a burst within the interval
// shares frames.
func TestFrameInterval(t *testing.T) {
	e := newEnv(t, Config{FrameInterval: time.Second}, nil)
	c := e.mustDial("")
	waitType(t, c, "caught_up")
	start := time.Now()
	e.publish(entry("h", "s", bus.LevelInfo, "first"))
	got, _ := collect(t, c, 1, 10*time.Second)
	if d := time.Since(start); d > 800*time.Millisecond || got[0].entry.Message != "first" {
		t.Fatalf("the first entry took %v", d)
	}
	// Ten entries published one by one right after: at most two frames.
	for i := range 10 {
		e.publish(entry("h", "s", bus.LevelInfo, "burst-"+strconv.Itoa(i)))
	}
	got, frames := collect(t, c, 10, 10*time.Second)
	if len(got) != 10 || len(frames) > 2 {
		t.Fatalf("%d entries in %d frames, want 10 in at most 2", len(got), len(frames))
	}
}
