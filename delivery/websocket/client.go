package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gorillaws "github.com/gorilla/websocket"
	"github.com/logstream/logstream/bus"
	"golang.org/x/time/rate"
)

// maxFrameBytes is the size past which an entries frame is sent and the
// next begins.
const maxFrameBytes = 128 << 10

// maxReplies bounds the control frames (pongs, errors) waiting for the
// writer; a client past it is closed with 4429.
const maxReplies = 32

// closeWait is how long the writer waits for the peer's close frame after
// sending its own, before closing the connection.
const closeWait = 2 * time.Second

// doneCtx is an ended context: NextBatch with it takes what is ready
// without waiting.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// evPool holds event slices for batches; a client holds one only while
// it writes.
var evPool = sync.Pool{New: func() any { s := make([]bus.Event, 0, 256); return &s }}

// client is one WebSocket connection. The reader goroutine hands requests
// to the writer through the fields under mu and wakes it; the writer owns
// the subscription and every write.
type client struct {
	h        *Handler
	conn     *gorillaws.Conn
	scope    *bus.Filter
	readDone chan struct{}
	lim      *rate.Limiter // reader only, made on the first subscribe

	lastFrame time.Time // writer only: when the last entries frame was written

	pending atomic.Bool // a request below waits for the writer

	mu        sync.Mutex
	sub       *bus.Subscription // current; replaced by the writer only
	next      *bus.Subscription // a replacement, with its subscribed frame
	nextMsg   []byte
	replies   []reply
	closeCode int // >0: close with this code; -1: close without a frame
	closeText string
	evict     string // eviction reason for the metric, if any
	wake      context.CancelFunc
}

type reply struct {
	ctrl int // 0: a text frame; else a control frame type
	data []byte
}

// request hands something to the writer and wakes it.
func (c *client) request(f func()) {
	c.mu.Lock()
	f()
	c.pending.Store(true)
	if c.wake != nil {
		c.wake()
	}
	c.mu.Unlock()
}

// requestClose asks the writer to close with code (-1: no close frame).
// The first request wins.
func (c *client) requestClose(code int, text, evict string) {
	c.request(func() {
		if c.closeCode == 0 {
			c.closeCode, c.closeText, c.evict = code, text, evict
		}
	})
}

func (c *client) queueReply(r reply) {
	full := false
	c.request(func() {
		if len(c.replies) >= maxReplies {
			full = true
			return
		}
		c.replies = append(c.replies, r)
	})
	if full {
		c.requestClose(CodeTooManyRequest, "too many control messages unanswered", "")
	}
}

// readLoop reads control messages until the connection ends.
func (c *client) readLoop() {
	h := c.h
	defer h.wg.Done()
	defer close(c.readDone)
	conn := c.conn
	alive := h.cfg.PingInterval + h.cfg.PongTimeout
	conn.SetReadLimit(int64(h.cfg.MaxMessageBytes))
	_ = conn.SetReadDeadline(time.Now().Add(alive))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(alive))
	})
	conn.SetPingHandler(func(data string) error {
		c.queueReply(reply{ctrl: gorillaws.PongMessage, data: []byte(data)})
		return nil
	})
	conn.SetCloseHandler(func(int, string) error { return nil })
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(alive))
		if mt != gorillaws.TextMessage {
			c.queueReply(reply{data: errorMessage("", CodeBadRequest, "message: binary messages are not understood; send JSON text")})
			continue
		}
		c.control(data)
	}
}

// readFailed turns the reader's error into the writer's close.
func (c *client) readFailed(err error) {
	var ce *gorillaws.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		// The peer closed: answer with its code (1005: an empty frame).
		code := ce.Code
		switch code {
		case gorillaws.CloseNoStatusReceived, gorillaws.CloseAbnormalClosure, gorillaws.CloseTLSHandshake:
			code = gorillaws.CloseNoStatusReceived
		}
		c.requestClose(code, "", "")
	case errors.Is(err, gorillaws.ErrReadLimit):
		c.requestClose(-1, "", "read_limit") // gorilla sent 1009
	case errors.As(err, &ne) && ne.Timeout():
		c.requestClose(gorillaws.CloseGoingAway, "ping timeout", "pong_timeout")
	default:
		c.requestClose(-1, "", "")
	}
}

// control handles one control message.
func (c *client) control(data []byte) {
	h := c.h
	sp, err := parseControl(data, h.cfg.MaxBacklog, time.Now())
	if err != nil {
		c.queueReply(reply{data: errorMessage(sp.reqID(), CodeBadRequest, err.Error())})
		return
	}
	id := sp.req.ID
	if sp.req.Type == "ping" {
		c.queueReply(reply{data: pongMessage(id)})
		return
	}
	if c.lim == nil {
		c.lim = rate.NewLimiter(rate.Limit(h.cfg.SubscribeRate), 5)
	}
	if !c.lim.Allow() {
		c.queueReply(reply{data: errorMessage(id, CodeTooManyRequest, "subscribe: too many requests; the current filter stays")})
		return
	}
	sp.filter.Scope = c.scope
	s, code, err := h.subscribe(sp)
	if err != nil {
		c.queueReply(reply{data: errorMessage(id, code, err.Error()+"; the current filter stays")})
		return
	}
	msg := subscribedMessage(id, sp.req)
	var old *bus.Subscription
	c.request(func() {
		if c.closeCode != 0 {
			old = s // the writer is ending and will not take it
			return
		}
		old = c.next
		c.next, c.nextMsg = s, msg
	})
	if old != nil {
		old.Close() // superseded before the writer took it, or not wanted
	}
}

// writeLoop writes every frame of the connection: the first is the
// subscribed frame msg.
func (c *client) writeLoop(msg []byte) {
	h := c.h
	cfg := &h.cfg
	c.mu.Lock()
	sub := c.sub
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		next := c.next
		c.next = nil
		c.mu.Unlock()
		if next != nil {
			next.Close()
		}
		sub.Close()
		c.finish()
		h.remove(c)
		h.wg.Done()
	}()
	if !c.writeFrame(msg) {
		return
	}
	h.m.framesControl.Inc()
	nextPing := time.Now().Add(cfg.PingInterval)
	var wctx context.Context
	var wcancel context.CancelFunc
	defer func() { wcancel() }()
	newWait := func() {
		if wcancel != nil {
			wcancel()
		}
		c.mu.Lock()
		wctx, wcancel = context.WithDeadline(h.ctx, nextPing)
		c.wake = wcancel
		c.mu.Unlock()
	}
	newWait()
	var one [1]bus.Event
	for {
		if c.pending.Load() && !c.handlePending(&sub) {
			return
		}
		if wctx.Err() != nil {
			if h.ctx.Err() != nil {
				c.requestClose(gorillaws.CloseGoingAway, "server shutting down", "")
				continue
			}
			if now := time.Now(); !now.Before(nextPing) {
				if !c.ping() {
					return
				}
				nextPing = now.Add(cfg.PingInterval)
			}
			newWait()
			continue
		}
		evs, err := sub.NextBatch(wctx, one[:0], 1)
		if err != nil {
			if wctx.Err() != nil || c.pending.Load() {
				continue
			}
			c.requestClose(gorillaws.CloseInternalServerErr, "subscription ended", "")
			if !errors.Is(err, bus.ErrClosed) {
				h.logLimited("websocket subscription ended", "err", err)
			}
			continue
		}
		if !c.sendBatch(sub, evs[0]) {
			return
		}
		one[0] = bus.Event{}
		if now := time.Now(); !now.Before(nextPing) {
			if !c.ping() {
				return
			}
			nextPing = now.Add(cfg.PingInterval)
			newWait()
		}
	}
}

// handlePending applies what the reader or Shutdown asked for. It returns
// false when the connection is to end.
func (c *client) handlePending(sub **bus.Subscription) bool {
	c.mu.Lock()
	c.pending.Store(false)
	next, nextMsg := c.next, c.nextMsg
	c.next, c.nextMsg = nil, nil
	replies := c.replies
	c.replies = nil
	code := c.closeCode
	c.mu.Unlock()
	if code != 0 {
		if next != nil {
			next.Close()
		}
		return false
	}
	for _, r := range replies {
		var ok bool
		if r.ctrl != 0 {
			ok = c.conn.WriteControl(r.ctrl, r.data, time.Now().Add(c.h.cfg.WriteTimeout)) == nil
		} else {
			ok = c.writeFrame(r.data)
			c.h.m.framesControl.Inc()
		}
		if !ok {
			return false
		}
	}
	if next != nil {
		old := *sub
		*sub = next
		c.mu.Lock()
		c.sub = next
		c.mu.Unlock()
		old.Close()
		if !c.writeFrame(nextMsg) {
			return false
		}
		c.h.m.framesControl.Inc()
	}
	return true
}

// frameMark is the end of one encoded frame in a batch's buffer.
type frameMark struct {
	end  int
	kind uint8 // frameEntries, frameDropped, frameCaughtUp, frameError
	n    int   // entries in an entries frame
}

const (
	frameEntries = iota
	frameDropped
	frameCaughtUp
	frameError
)

// sendBatch writes first and whatever else is ready, as few frames as
// the order of events allows. It encodes every frame first and lets go of
// the events before writing, so that a writer blocked on a slow client
// holds only the encoded bytes.
func (c *client) sendBatch(sub *bus.Subscription, first bus.Event) bool {
	h := c.h
	cfg := &h.cfg
	if first.Kind == bus.EventEntry && cfg.FrameInterval > 0 {
		if wait := time.Until(c.lastFrame.Add(cfg.FrameInterval)); wait > 0 {
			time.Sleep(wait)
		}
	}
	evp := evPool.Get().(*[]bus.Event)
	evs := append((*evp)[:0], first)
	if cfg.MaxBatch > 1 {
		evs, _ = sub.NextBatch(doneCtx, evs, cfg.MaxBatch-1)
	}
	bp := getBuf()
	defer putBuf(bp)
	var markBuf [8]frameMark
	b, marks, closeAfter := c.encode((*bp)[:0], markBuf[:0], evs)
	*bp = b
	clear(evs)
	*evp = evs[:0]
	evPool.Put(evp)

	start := 0
	for _, m := range marks {
		if !c.writeFrame(b[start:m.end]) {
			return false
		}
		start = m.end
		switch m.kind {
		case frameEntries:
			c.lastFrame = time.Now()
			h.m.framesEntries.Inc()
			h.m.entries.Add(float64(m.n))
		case frameDropped:
			h.m.framesDropped.Inc()
		case frameCaughtUp:
			h.m.framesCaughtUp.Inc()
		default:
			h.m.framesControl.Inc()
		}
	}
	if closeAfter {
		text := "slow consumer: queue overflowed, entries dropped"
		c.requestClose(CodeSlow, text, "slow") // handlePending ends the connection
	}
	return true
}

// encode appends the frames for evs to b and their ends to marks. With
// policy disconnect, a slow drop ends the batch with an error frame and
// closeAfter.
func (c *client) encode(b []byte, marks []frameMark, evs []bus.Event) (_ []byte, _ []frameMark, closeAfter bool) {
	h := c.h
	n := 0 // entries in the open entries frame
	flush := func() {
		if n > 0 {
			b = append(b, ']', '}')
			marks = append(marks, frameMark{end: len(b), kind: frameEntries, n: n})
			n = 0
		}
	}
	frameStart := 0
	for i := range evs {
		ev := &evs[i]
		switch ev.Kind {
		case bus.EventEntry:
			if !h.valid.valid(ev.Seq, ev.Data) {
				h.m.badEntries.Inc()
				continue
			}
			if n > 0 && len(b)-frameStart+len(ev.Data) > maxFrameBytes {
				flush()
			}
			if n == 0 {
				frameStart = len(b)
				b = append(b, framePrefixEntries...)
			}
			b = appendEntry(b, n == 0, ev.Seq, ev.Data)
			n++
		case bus.EventDropped:
			flush()
			if ev.Reason == bus.ReasonGone {
				h.m.droppedGone.Add(float64(ev.Dropped))
			} else {
				h.m.droppedSlow.Add(float64(ev.Dropped))
			}
			if ev.Reason == bus.ReasonSlow && h.cfg.SlowPolicy == PolicyDisconnect {
				b = append(b, errorMessage("", CodeSlow, "slow consumer: queue overflowed, entries dropped")...)
				marks = append(marks, frameMark{end: len(b), kind: frameError})
				return b, marks, true
			}
			b = appendDropped(b, ev.Dropped, ev.Reason)
			marks = append(marks, frameMark{end: len(b), kind: frameDropped})
		case bus.EventCaughtUp:
			flush()
			b = append(b, frameCaughtUpMsg...)
			marks = append(marks, frameMark{end: len(b), kind: frameCaughtUp})
		}
	}
	flush()
	return b, marks, false
}

// writeFrame writes one text frame; a failure ends the connection.
func (c *client) writeFrame(b []byte) bool {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	if err := c.conn.WriteMessage(gorillaws.TextMessage, b); err != nil {
		c.writeFailed(err)
		return false
	}
	c.h.m.bytes.Add(float64(len(b)))
	return true
}

func (c *client) ping() bool {
	if err := c.conn.WriteControl(gorillaws.PingMessage, nil, time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
		c.writeFailed(err)
		return false
	}
	return true
}

func (c *client) writeFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.requestClose(-1, "", "write_timeout")
	} else {
		c.requestClose(-1, "", "")
	}
}

// finish sends the close frame asked for, waits for the peer's answer
// (the reader ends), and closes the connection.
func (c *client) finish() {
	c.mu.Lock()
	code, text, evict := c.closeCode, c.closeText, c.evict
	c.replies = nil
	c.mu.Unlock()
	if evict != "" {
		c.h.m.evictions.WithLabelValues(evict).Inc()
	}
	if code > 0 {
		deadline := time.Now().Add(min(c.h.cfg.WriteTimeout, closeWait))
		if c.conn.WriteControl(gorillaws.CloseMessage, gorillaws.FormatCloseMessage(code, closeText(text)), deadline) == nil {
			t := time.NewTimer(closeWait)
			select {
			case <-c.readDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	if evict == "read_limit" {
		// gorilla has sent 1009; read away the rest of the oversized
		// message so that closing does not reset the connection and
		// lose that close frame.
		<-c.readDone
		nc := c.conn.NetConn()
		_ = nc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, nc, 4<<20)
	}
	_ = c.conn.Close()
	<-c.readDone
}
