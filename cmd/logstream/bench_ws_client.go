package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gorillaws "github.com/gorilla/websocket"
	"golang.org/x/sync/errgroup"
)

const (
	wsClientFast = iota
	wsClientSlow
	wsClientStalled
)

// wsClient is one benchmark client. The fast and slow ones read in their
// own goroutine; a stalled one never reads.
type wsClient struct {
	t    wsTarget
	conn *gorillaws.Conn
	kind int

	mu            sync.Mutex
	measuring     bool
	entries       int64
	windowEntries int64
	windowFrames  int64
	dropped       int64
	lat           []time.Duration
	closed        bool  // the server ended the connection
	closeErr      error // how
}

var wsReceivedKey = []byte(`"received":"`)

// read reads frames until the connection ends.
func (c *wsClient) read(stopping *atomic.Bool) {
	buf := make([]byte, 0, 64<<10)
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			c.mu.Lock()
			c.closed, c.closeErr = !stopping.Load(), err
			c.mu.Unlock()
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				c.mu.Lock()
				c.closed, c.closeErr = !stopping.Load(), err
				c.mu.Unlock()
				return
			}
		}
		now := time.Now()
		n, first, dropped, reply := c.t.count(buf)
		var lat time.Duration
		if first != nil {
			if ts, err := time.Parse(time.RFC3339Nano, string(first)); err == nil {
				lat = now.Sub(ts)
			}
		}
		c.mu.Lock()
		c.entries += int64(n)
		if dropped {
			c.dropped++
		}
		if c.measuring && n > 0 {
			c.windowEntries += int64(n)
			c.windowFrames++
			c.lat = append(c.lat, lat)
		}
		c.mu.Unlock()
		if reply != nil {
			if err := c.conn.WriteMessage(gorillaws.TextMessage, reply); err != nil {
				return
			}
		}
		if c.kind == wsClientSlow {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// wsFirstReceived returns the value of the first "received" key in b.
func wsFirstReceived(b []byte) []byte {
	i := bytes.Index(b, wsReceivedKey)
	if i < 0 {
		return nil
	}
	rest := b[i+len(wsReceivedKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// closedByServer reports whether a stalled client's connection was ended
// by the server: it reads what is buffered and looks for the end.
func (c *wsClient) closedByServer() bool {
	nc := c.conn.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// wsConnectAll connects the fast, slow and stalled clients, each subscribed
// (ready) before it returns.
func wsConnectAll(ctx context.Context, c *wsBenchConfig, t wsTarget) (*wsClientSet, error) {
	cs := &wsClientSet{}
	total := c.clients + c.slow + c.stalled
	clients := make([]*wsClient, total)
	for i := range clients {
		kind := wsClientFast
		switch {
		case i >= c.clients+c.slow:
			kind = wsClientStalled
		case i >= c.clients:
			kind = wsClientSlow
		}
		clients[i] = &wsClient{t: t, kind: kind}
	}
	stopping := new(atomic.Bool)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i, cl := range clients {
		g.Go(func() error {
			conn, err := wsDial(gctx, t.clientURL(i), cl.kind != wsClientFast)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			cl.conn = conn
			if h := t.hello(i); h != nil {
				if err := conn.WriteMessage(gorillaws.TextMessage, h); err != nil {
					return fmt.Errorf("client %d: hello: %w", i, err)
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				_, frame, err := conn.ReadMessage()
				if err != nil {
					return fmt.Errorf("client %d: waiting for the subscription: %w", i, err)
				}
				if _, _, _, reply := t.count(frame); reply != nil {
					_ = conn.WriteMessage(gorillaws.TextMessage, reply)
				}
				if t.ready(frame) {
					break
				}
			}
			_ = conn.SetReadDeadline(time.Time{})
			return nil
		})
	}
	err := g.Wait()
	for _, cl := range clients {
		if cl.conn == nil {
			continue
		}
		cs.all = append(cs.all, cl)
		switch cl.kind {
		case wsClientFast:
			cs.fast = append(cs.fast, cl)
		case wsClientSlow:
			cs.slow = append(cs.slow, cl)
		case wsClientStalled:
			cs.stalled = append(cs.stalled, cl)
		}
		if cl.kind != wsClientStalled {
			cs.wg.Go(func() { cl.read(stopping) })
		}
	}
	// Closing the connections at the end is not the server's doing.
	cs.stop = func() { stopping.Store(true) }
	return cs, err
}

// wsDial dials one client; a slow or stalled one gets a 4 KiB receive
// buffer so that the server soon sees it as slow.
func wsDial(ctx context.Context, url string, small bool) (*gorillaws.Conn, error) {
	nd := net.Dialer{Timeout: 30 * time.Second}
	if small {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	d := gorillaws.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 30 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 1024}
	conn, resp, err := d.DialContext(ctx, url, nil)
	if err != nil && resp != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: HTTP %d %s", err, resp.StatusCode, bytes.TrimSpace(body))
	}
	return conn, err
}

// wsFreePort returns a TCP port that was free a moment ago.
func wsFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// wsTailFile returns the last n bytes of a file, for error messages.
func wsTailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
