package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// ErrTooLarge is returned by Publish for an entry whose encoding exceeds
// the server's maximum payload.
var ErrTooLarge = errors.New("bus: entry larger than the server's max payload")

// Publisher publishes entries. In JetStream mode every entry is
// acknowledged by the stream: at most MaxInFlight entries await their
// acknowledgement, Publish blocks while that window is full (the
// backpressure every source relies on), and an entry whose publish fails,
// is refused, or is not acknowledged within AckTimeout is sent again with
// the same Nats-Msg-Id, with backoff, until it is stored — the stream's
// duplicate window keeps one copy. Entries without an ID of their own get
// none unless PublishConfig.GenerateIDs is set: sent again, such an entry
// may be stored twice, never lost. In core mode entries are published
// without acknowledgement (at most once).
//
// A Publisher is safe for concurrent use.
type Publisher struct {
	b           *Bus
	prefix      string
	jetstream   bool
	lanes       []*lane
	idPrefix    string
	generateIDs bool
	ackTimeout  time.Duration
	window      uint64
	maxPayload  int

	mu      sync.Mutex
	next    uint64    // index of the next entry
	low     uint64    // lowest index not yet acknowledged
	ring    []pending // slot i%window holds entry i while it waits
	bufs    []slotBuf // slot i%window's encoding buffer, kept across entries
	waiters int
	wake    chan struct{} // closed when low advances or on close
	closed  bool

	nudge     chan struct{}
	stop      chan struct{}
	done      chan struct{}
	abortOnce sync.Once
}

type lane struct {
	nc    *nats.Conn
	inbox string // reply prefix, "_INBOX.<nuid>."
	sub   *nats.Subscription
}

// slotBuf is the buffer a ring slot keeps its entries' encodings in, so
// that a busy publisher allocates nothing an entry. sending is idx+1 while
// Publish sends entry idx from the buffer (0: idle): a slot reused before
// that send returned gets a new buffer instead.
type slotBuf struct {
	buf     []byte
	sending atomic.Uint64
}

// maxKeptEncoding bounds the buffer a slot keeps: a larger entry gets a
// buffer of its own, left to the collector once acknowledged.
const maxKeptEncoding = 4 << 10

type pending struct {
	idx      uint64
	subject  string
	id       string // Nats-Msg-Id, "" for none
	data     []byte // the encoded entry; nil: the slot is free
	lane     *lane
	sent     time.Time
	retryAt  time.Time // zero: not scheduled, wait for ack or timeout
	attempts int
}

func newPublisher(ctx context.Context, b *Bus) (*Publisher, error) {
	cfg := b.cfg.Publish
	p := &Publisher{
		b:           b,
		prefix:      b.cfg.Prefix,
		jetstream:   b.cfg.UseJetStream(),
		idPrefix:    nuid.Next() + "-",
		generateIDs: cfg.GenerateIDs,
		ackTimeout:  cfg.AckTimeout,
		window:      uint64(cfg.MaxInFlight),
		wake:        make(chan struct{}),
		nudge:       make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if p.jetstream {
		p.ring = make([]pending, p.window)
		p.bufs = make([]slotBuf, p.window)
		go p.retryLoop()
	} else {
		close(p.done)
	}
	for i := range cfg.Connections {
		nc, err := b.connect(ctx, "pub-"+strconv.Itoa(i))
		if err != nil {
			p.abort()
			return nil, err
		}
		l := &lane{nc: nc}
		p.lanes = append(p.lanes, l)
		if p.jetstream {
			l.inbox = nats.NewInbox() + "."
			l.sub, err = nc.Subscribe(l.inbox+"*", p.onAck)
			if err != nil {
				p.abort()
				return nil, fmt.Errorf("bus: subscribe to acks: %w", err)
			}
			l.sub.SetPendingLimits(-1, -1) // bounded by the window instead
			nc.SetReconnectHandler(func(nc *nats.Conn) {
				b.log.Info("bus reconnected", "conn", "pub-"+strconv.Itoa(i), "url", nc.ConnectedUrlRedacted())
				p.resendLane(l)
			})
		}
		if p.maxPayload == 0 || int(nc.MaxPayload()) < p.maxPayload {
			p.maxPayload = int(nc.MaxPayload())
		}
	}
	b.metrics.inFlight(func() float64 { return float64(p.InFlight()) })
	return p, nil
}

func (p *Publisher) laneFor(subject string) *lane {
	if len(p.lanes) == 1 {
		return p.lanes[0]
	}
	// Hash host and service, not level: one service's entries keep their
	// order whatever their levels.
	end := strings.LastIndexByte(subject, '.')
	h := uint32(2166136261)
	for i := 0; i < end; i++ {
		h = (h ^ uint32(subject[i])) * 16777619
	}
	return p.lanes[h%uint32(len(p.lanes))]
}

// Publish sends e to its subject. In JetStream mode it returns once the
// entry is in the in-flight window, blocking while the window is full;
// Flush tells when it is stored. It returns ctx's error if ctx ends first,
// ErrClosed after Close, and ErrTooLarge for an entry over the server's
// maximum payload (the caller should truncate the message).
func (p *Publisher) Publish(ctx context.Context, e Entry) error {
	if !p.jetstream {
		// nats.go copies the payload into its write buffer before Publish
		// returns, so the encoding buffer can serve the next entry.
		bp := encPool.Get().(*[]byte)
		data := e.AppendJSON((*bp)[:0])
		var err error
		if len(data) > p.maxPayload {
			p.b.metrics.tooLarge.Inc()
			err = ErrTooLarge
		} else {
			subject := EntrySubject(p.prefix, &e)
			err = p.publishCore(ctx, p.laneFor(subject), subject, data)
		}
		putEncoding(bp, data)
		return err
	}
	// The encoding is kept until the stream acknowledges it: encode into
	// a pooled buffer, then copy it into the ring slot's own buffer.
	bp := encPool.Get().(*[]byte)
	enc := e.AppendJSON((*bp)[:0])
	defer putEncoding(bp, enc)
	if len(enc) > p.maxPayload {
		p.b.metrics.tooLarge.Inc()
		return ErrTooLarge
	}
	subject := EntrySubject(p.prefix, &e)
	l := p.laneFor(subject)
	p.mu.Lock()
	for p.next-p.low >= p.window && !p.closed {
		p.waiters++
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.waiters--
			p.mu.Unlock()
			return ctx.Err()
		case <-wake:
		}
		p.mu.Lock()
		p.waiters--
	}
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	idx := p.next
	p.next++
	id := e.ID
	if id == "" && p.generateIDs {
		id = p.idPrefix + strconv.FormatUint(idx, 10)
	}
	sb := &p.bufs[idx%p.window]
	data := sb.buf
	if sb.sending.Load() != 0 {
		data = nil // the slot's previous entry is still being sent from it
	}
	data = append(data[:0], enc...)
	sb.buf = nil
	if cap(data) <= maxKeptEncoding {
		sb.buf = data
	}
	sb.sending.Store(idx + 1)
	s := &p.ring[idx%p.window]
	*s = pending{idx: idx, subject: subject, id: id, data: data, lane: l, sent: time.Now()}
	due := *s
	p.mu.Unlock()
	p.b.metrics.published.Inc()
	err := due.send()
	sb.sending.CompareAndSwap(idx+1, 0)
	if err != nil {
		p.scheduleRetry(idx, "send", err)
	}
	return nil
}

// send publishes the entry with its lane's reply subject for idx. The
// message is built here, not kept: only the encoding waits in the ring.
func (s *pending) send() error {
	m := nats.Msg{Subject: s.subject, Reply: s.lane.inbox + strconv.FormatUint(s.idx, 10), Data: s.data}
	if s.id == "" {
		return s.lane.nc.PublishMsg(&m)
	}
	// nats.go encodes the header before PublishMsg returns: the map can
	// serve the next message.
	h := headerPool.Get().(nats.Header)
	h[nats.MsgIdHdr][0] = s.id
	m.Header = h
	err := s.lane.nc.PublishMsg(&m)
	h[nats.MsgIdHdr][0] = ""
	headerPool.Put(h)
	return err
}

var headerPool = sync.Pool{New: func() any { return nats.Header{nats.MsgIdHdr: make([]string, 1)} }}

var encPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putEncoding returns the buffer bp, grown to enc, to encPool; buffers
// grown past 64 KiB by a rare large entry are left to the collector.
func putEncoding(bp *[]byte, enc []byte) {
	if cap(enc) <= 64<<10 {
		*bp = enc
		encPool.Put(bp)
	}
}

func (p *Publisher) publishCore(ctx context.Context, l *lane, subject string, data []byte) error {
	for attempt := 1; ; attempt++ {
		err := l.nc.Publish(subject, data)
		if err == nil {
			p.b.metrics.published.Inc()
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return ErrClosed
		}
		p.b.metrics.retries.WithLabelValues("send").Inc()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
}

func backoff(attempt int) time.Duration {
	d := min(50*time.Millisecond<<min(attempt, 6), 2*time.Second)
	return d/2 + rand.N(d/2+1)
}

// onAck handles a JetStream publish acknowledgement (or refusal).
func (p *Publisher) onAck(m *nats.Msg) {
	i := bytes.LastIndexByte([]byte(m.Subject), '.')
	idx, err := strconv.ParseUint(m.Subject[i+1:], 10, 64)
	if err != nil {
		return
	}
	ok := len(m.Data) > 0 && !bytes.Contains(m.Data, []byte(`"error"`)) && m.Header.Get("Status") == ""
	if !ok {
		reason := string(m.Data)
		if s := m.Header.Get("Status"); s != "" {
			reason = "status " + s + " " + m.Header.Get("Description")
		}
		p.scheduleRetry(idx, "refused", errors.New(reason))
		return
	}
	p.mu.Lock()
	s := &p.ring[idx%p.window]
	if s.data == nil || s.idx != idx {
		p.mu.Unlock()
		return // a late second acknowledgement
	}
	*s = pending{}
	advanced := false
	for p.low < p.next && p.ring[p.low%p.window].data == nil {
		p.low++
		advanced = true
	}
	if advanced && p.waiters > 0 {
		close(p.wake)
		p.wake = make(chan struct{})
	}
	p.mu.Unlock()
	p.b.metrics.acked.Inc()
}

// scheduleRetry marks entry idx to be sent again after a backoff.
func (p *Publisher) scheduleRetry(idx uint64, reason string, err error) {
	p.mu.Lock()
	s := &p.ring[idx%p.window]
	if s.data == nil || s.idx != idx {
		p.mu.Unlock()
		return
	}
	s.attempts++
	s.retryAt = time.Now().Add(backoff(s.attempts))
	attempts := s.attempts
	p.mu.Unlock()
	p.b.metrics.failures.WithLabelValues(reason).Inc()
	p.b.logLimited("publish failed, will retry", "reason", reason, "attempts", attempts, "err", err)
	select {
	case p.nudge <- struct{}{}:
	default:
	}
}

// resendLane schedules every entry sent on l before now for an immediate
// resend: their acknowledgements were lost with the connection. Each is
// counted as a failure (reason "disconnect").
func (p *Publisher) resendLane(l *lane) {
	now := time.Now()
	lost := 0
	p.mu.Lock()
	for i := p.low; i < p.next; i++ {
		s := &p.ring[i%p.window]
		if s.data != nil && s.lane == l && s.sent.Before(now) && s.retryAt.IsZero() {
			s.retryAt = now
			lost++
		}
	}
	p.mu.Unlock()
	p.b.metrics.failures.WithLabelValues("disconnect").Add(float64(lost))
	select {
	case p.nudge <- struct{}{}:
	default:
	}
}

// retryLoop resends entries whose retry is due or whose ack timed out.
func (p *Publisher) retryLoop() {
	defer close(p.done)
	tick := time.NewTicker(min(p.ackTimeout/4, 100*time.Millisecond))
	defer tick.Stop()
	var due []pending
	for {
		select {
		case <-p.stop:
			return
		case <-p.nudge:
		case <-tick.C:
		}
		now := time.Now()
		due = due[:0]
		p.mu.Lock()
		for i := p.low; i < p.next; i++ {
			s := &p.ring[i%p.window]
			if s.data == nil {
				continue
			}
			timedOut := s.retryAt.IsZero() && now.Sub(s.sent) > p.ackTimeout
			if timedOut || (!s.retryAt.IsZero() && !now.Before(s.retryAt)) {
				if timedOut {
					s.attempts++
				}
				s.sent, s.retryAt = now, time.Time{}
				// A copy of the encoding: the slot's buffer may serve
				// another entry once this one is acknowledged.
				c := *s
				c.data = bytes.Clone(s.data)
				due = append(due, c)
				if timedOut {
					p.b.metrics.failures.WithLabelValues("timeout").Inc()
				}
			}
		}
		p.mu.Unlock()
		for _, s := range due {
			p.b.metrics.retries.WithLabelValues("resend").Inc()
			if err := s.send(); err != nil {
				p.scheduleRetry(s.idx, "send", err)
			}
		}
	}
}

// InFlight returns how many entries await acknowledgement.
func (p *Publisher) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.next - p.low)
}

// Flush returns once every entry published before the call is stored in
// the stream (JetStream mode) or has reached the server (core mode), or
// ctx's error.
func (p *Publisher) Flush(ctx context.Context) error {
	if !p.jetstream {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Minute)
			defer cancel()
		}
		for _, l := range p.lanes {
			if err := l.nc.FlushWithContext(ctx); err != nil {
				return fmt.Errorf("bus: flush: %w", err)
			}
		}
		return nil
	}
	p.mu.Lock()
	target := p.next
	for p.low < target {
		if p.closed && p.stopped() {
			p.mu.Unlock()
			return ErrClosed
		}
		p.waiters++
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.waiters--
			p.mu.Unlock()
			return fmt.Errorf("bus: flush: %d entries unacknowledged: %w", p.InFlight(), ctx.Err())
		case <-wake:
		}
		p.mu.Lock()
		p.waiters--
	}
	p.mu.Unlock()
	return nil
}

func (p *Publisher) stopped() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Close refuses further entries, waits (bounded by ctx) until what was
// published is acknowledged, then closes the publisher's connections. It
// returns the Flush error: entries still unacknowledged when ctx ends are
// counted in it.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.wake) // wake blocked Publish calls: they return ErrClosed
	p.wake = make(chan struct{})
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.abort()
	return err
}

// abort stops at once: the retry loop ends and connections close.
func (p *Publisher) abort() {
	p.abortOnce.Do(func() {
		p.mu.Lock()
		if !p.closed {
			p.closed = true
			close(p.wake)
			p.wake = make(chan struct{})
		}
		p.mu.Unlock()
		close(p.stop)
		<-p.done
		for _, l := range p.lanes {
			l.nc.Close()
		}
	})
}
