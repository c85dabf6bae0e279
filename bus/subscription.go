package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoHistory is returned by Subscribe for a start point other than
// StartNew in core-NATS mode, which keeps no stream.
var ErrNoHistory = errors.New("bus: history needs jetstream (bus.jetstream: true)")

// ErrNothingAllowed is returned by Subscribe for a filter whose Scope
// excludes everything it asks for.
var ErrNothingAllowed = errors.New("bus: the filter selects nothing that its scope allows")

// StartKind says where a subscription begins.
type StartKind uint8

// Start kinds.
const (
	// StartNew delivers only entries published after Subscribe.
	StartNew StartKind = iota
	// StartLast delivers the last N matching entries, then live ones.
	StartLast
	// StartSince delivers entries stored at or after a time.
	StartSince
	// StartAfter delivers entries with a sequence greater than Seq: a
	// client that saw Seq resumes with no gap and no duplicate. Seq 0
	// means everything the stream holds.
	StartAfter
)

// Start is where a subscription begins. Build it with the Start*
// functions; the zero Start is StartNew.
type Start struct {
	Kind StartKind
	N    int
	Time time.Time
	Seq  uint64
}

// StartAtNew starts with entries published from now on.
func StartAtNew() Start { return Start{} }

// StartAtLast starts with the last n matching entries.
func StartAtLast(n int) Start { return Start{Kind: StartLast, N: n} }

// StartAtTime starts with entries stored at or after t.
func StartAtTime(t time.Time) Start { return Start{Kind: StartSince, Time: t} }

// StartAfterSeq starts with the first entry after stream sequence seq.
func StartAfterSeq(seq uint64) Start { return Start{Kind: StartAfter, Seq: seq} }

// EventKind tells what an Event carries.
type EventKind uint8

// Event kinds.
const (
	// EventEntry carries one entry: Seq, Subject, Data.
	EventEntry EventKind = iota
	// EventDropped says Dropped entries were missed here, for Reason:
	// "slow" (the subscription's buffer was full) or "gone" (no longer in
	// the stream).
	EventDropped
	// EventCaughtUp says the history is delivered; live entries follow.
	// Its Seq is the stream sequence up to which the subscription has
	// seen everything it selects: resuming after it misses nothing.
	EventCaughtUp
)

// Drop reasons.
const (
	ReasonSlow = "slow"
	ReasonGone = "gone"
)

// Event is what a Subscription delivers: an entry with its stream
// sequence, or a notice.
type Event struct {
	Kind    EventKind
	Seq     uint64 // stream sequence of the entry (core mode: a local counter)
	Subject string
	Data    []byte // the entry's JSON; shared, do not modify
	Dropped uint64
	Reason  string
}

// Entry decodes the event's entry.
func (ev *Event) Entry() (Entry, error) {
	var e Entry
	err := e.UnmarshalJSON(ev.Data)
	return e, err
}

func (ev *Event) size() int { return len(ev.Data) + len(ev.Subject) + 64 }

// SubscribeOptions bound a subscription's buffer.
type SubscribeOptions struct {
	// MaxEntries buffered before the oldest are dropped. Default 10000.
	MaxEntries int
	// MaxBytes buffered before the oldest are dropped. Default 8MiB.
	MaxBytes int
}

// Subscription delivers the entries a Filter selects, in stream order,
// from a Start: history first, then live, with no gap and no duplicate at
// the seam. History is read at the subscriber's pace; live entries go
// into a buffer bounded by SubscribeOptions, and when it is full the
// oldest are dropped and an EventDropped tells how many: a slow subscriber
// never slows the publisher or other subscribers. Next and NextBatch must
// be called from one goroutine; Close from any.
type Subscription struct {
	b        *Bus
	m        *Matcher
	subjects []string
	maxLen   int
	maxBytes int

	mu       sync.Mutex
	q        []Event // FIFO: q[head:]
	head     int
	qBytes   int
	notes    []Event // notices saved from dropping, delivered first
	dropped  uint64  // entries dropped for slowness, not yet told
	skipTo   uint64  // live: deliver only seq > skipTo
	lastSeq  uint64  // last sequence put in the queue or skipped by replay
	closed   bool
	err      error
	notify   chan struct{} // an event is ready
	space    chan struct{} // the queue has room (for replay)
	stop     context.CancelFunc
	it       jetstream.MessagesContext // replay iterator, nil when none
	replayed chan struct{}             // replay goroutine done
}

// Subscribe starts a subscription. ctx bounds the set-up only; the
// subscription lasts until Close or the Bus closes.
func (b *Bus) Subscribe(ctx context.Context, f Filter, start Start, opts SubscribeOptions) (*Subscription, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 8 << 20
	}
	if start.Kind != StartNew && !b.cfg.UseJetStream() {
		return nil, ErrNoHistory
	}
	if start.Kind == StartLast && start.N <= 0 {
		start = Start{}
	}
	subjects := f.Subjects(b.cfg.Prefix)
	if len(subjects) == 0 {
		return nil, ErrNothingAllowed
	}
	h, err := b.getHub()
	if err != nil {
		return nil, err
	}
	s := &Subscription{
		b: b, m: f.Compile(), subjects: subjects,
		maxLen: opts.MaxEntries, maxBytes: opts.MaxBytes,
		notify: make(chan struct{}, 1), space: make(chan struct{}, 1),
		replayed: make(chan struct{}),
	}
	b.metrics.subscribers.Inc()
	if start.Kind == StartNew {
		// The hub may lag behind the stream: entries stored before this
		// call are not "new".
		var streamLast uint64
		if b.stream != nil {
			info, err := b.streamInfo(ctx)
			if err != nil {
				b.metrics.subscribers.Dec()
				return nil, fmt.Errorf("bus: stream info: %w", err)
			}
			streamLast = info.State.LastSeq
		}
		close(s.replayed)
		s.stop = func() {}
		h.joinNew(s, streamLast)
		return s, nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	r, err := s.prepareReplay(ctx, h, start)
	if err != nil {
		cancel()
		b.metrics.subscribers.Dec()
		return nil, err
	}
	s.it = r.it
	go s.replay(rctx, h, r)
	return s, nil
}

// replayPlan is what prepareReplay found: where to start, and what is
// already known to be past.
type replayPlan struct {
	cons    jetstream.Consumer
	it      jetstream.MessagesContext
	pending uint64 // matching entries waiting at creation
	last    uint64 // stream's last sequence before creation
	start   uint64
}

func (s *Subscription) prepareReplay(ctx context.Context, h *hub, start Start) (*replayPlan, error) {
	info, err := s.b.streamInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: stream info: %w", err)
	}
	st := info.State
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: s.subjects, InactiveThreshold: 30 * time.Second}
	startSeq := uint64(0)
	switch start.Kind {
	case StartAfter:
		startSeq = start.Seq + 1
		if startSeq > st.LastSeq+1 {
			// The client saw more than the stream holds: the stream was
			// recreated. Start with what comes next.
			startSeq = st.LastSeq + 1
		}
		if st.Msgs > 0 && startSeq < st.FirstSeq || st.Msgs == 0 && startSeq <= st.LastSeq {
			first := st.FirstSeq
			if st.Msgs == 0 {
				first = st.LastSeq + 1
			}
			gone := first - startSeq
			s.push(Event{Kind: EventDropped, Dropped: gone, Reason: ReasonGone})
			s.b.metrics.subDropped.WithLabelValues(ReasonGone).Add(float64(gone))
			startSeq = first
		}
	case StartLast:
		startSeq, err = s.lastNStart(ctx, st, start.N)
		if err != nil {
			return nil, err
		}
	case StartSince:
		t := start.Time
		occ.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		occ.OptStartTime = &t
	}
	if start.Kind != StartSince {
		if startSeq == 0 {
			startSeq = 1
		}
		if startSeq > st.LastSeq {
			// Nothing stored from there on: go live at once.
			return &replayPlan{last: max(st.LastSeq, startSeq-1), start: startSeq}, nil
		}
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = startSeq
	}
	cons, err := s.b.stream.OrderedConsumer(ctx, occ)
	if err != nil {
		return nil, fmt.Errorf("bus: create consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, fmt.Errorf("bus: consume: %w", err)
	}
	ci := cons.CachedInfo()
	r := &replayPlan{cons: cons, it: it, last: st.LastSeq, start: startSeq}
	if ci != nil {
		r.pending = ci.NumPending
	} else {
		r.pending = 1
	}
	return r, nil
}

// lastNStart finds the sequence from which n matching entries remain,
// probing the pending count of short-lived consumers.
func (s *Subscription) lastNStart(ctx context.Context, st jetstream.StreamState, n int) (uint64, error) {
	if st.Msgs == 0 {
		return st.LastSeq + 1, nil
	}
	count := func(seq uint64) (uint64, error) {
		c, err := s.b.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubjects: s.subjects, AckPolicy: jetstream.AckNonePolicy,
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq,
			InactiveThreshold: 5 * time.Second, MemoryStorage: true, Replicas: 1,
		})
		if err != nil {
			return 0, fmt.Errorf("bus: probe consumer: %w", err)
		}
		ci := c.CachedInfo()
		_ = s.b.stream.DeleteConsumer(context.WithoutCancel(ctx), ci.Name)
		return ci.NumPending, nil
	}
	// Search backwards from the end in growing steps (one probe when the
	// filter matches nearly everything), then bisect the last step.
	first, last := st.FirstSeq, st.LastSeq
	hi := last // count(hi+1) < n holds for hi = last
	step := uint64(n)
	for {
		lo := first
		if last+1-first > step {
			lo = last + 1 - step
		}
		c, err := count(lo)
		if err != nil {
			return 0, err
		}
		if c == uint64(n) {
			return lo, nil
		}
		if c > uint64(n) {
			// The answer lies in (lo, hi]: the largest seq with count >= n.
			for lo < hi {
				mid := lo + (hi-lo+1)/2
				c, err := count(mid)
				if err != nil {
					return 0, err
				}
				if c >= uint64(n) {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			return lo, nil
		}
		if lo == first {
			return first, nil // fewer than n match: everything
		}
		hi = lo - 1
		step *= 4
	}
}

// replay reads history from the plan's consumer at the subscriber's pace
// and hands over to the hub once it has caught up.
func (s *Subscription) replay(ctx context.Context, h *hub, r *replayPlan) {
	defer close(s.replayed)
	if r.it != nil {
		defer r.it.Stop()
	}
	lastSeq := r.start - 1
	if r.it == nil || r.pending == 0 {
		// Nothing matching was waiting when the consumer was made, so
		// nothing matching lies at or before r.last.
		lastSeq = max(lastSeq, r.last)
		if h.join(s, lastSeq) {
			return
		}
	}
	for {
		msg, err := r.it.Next(jetstream.NextMaxWait(250 * time.Millisecond))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.fail(fmt.Errorf("bus: subscription ended: %w", err))
				return
			}
			// A timeout while idle: refresh what is known to be past and try
			// to hand over.
			if last, ok := s.idleLast(ctx, r.cons, lastSeq); ok && h.join(s, max(lastSeq, last)) {
				return
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		if s.m.MatchSubject(s.b.cfg.Prefix, msg.Subject()) && s.matchMessage(msg.Data()) {
			if !s.pushWait(ctx, Event{Kind: EventEntry, Seq: seq, Subject: msg.Subject(), Data: msg.Data()}) {
				return
			}
		}
		lastSeq = seq
		if meta.NumPending == 0 {
			if h.join(s, lastSeq) {
				return
			}
			// The hub's ring starts after lastSeq; ask how far nothing
			// matching is pending, which usually reaches into the ring.
			if last, ok := s.idleLast(ctx, r.cons, lastSeq); ok && h.join(s, max(lastSeq, last)) {
				return
			}
		}
	}
}

// idleLast returns a sequence up to which no matching entry remains to
// be processed, asked of the stream and the consumer: none is pending on
// the server, and every one the server delivered (it may still be on its
// way, or buffered in the iterator) is processed — lastSeq is the last
// processed.
func (s *Subscription) idleLast(ctx context.Context, cons jetstream.Consumer, lastSeq uint64) (uint64, bool) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	si, err := s.b.stream.Info(ictx)
	if err != nil {
		return 0, false
	}
	ci, err := cons.Info(ictx)
	if err != nil || ci.NumPending != 0 || ci.Delivered.Stream > lastSeq {
		return 0, false
	}
	return si.State.LastSeq, true
}

func (s *Subscription) matchMessage(data []byte) bool {
	if !s.m.NeedsMessage() {
		return true
	}
	var e Entry
	if err := e.UnmarshalJSON(data); err != nil {
		s.b.metrics.badEntries.Inc()
		return false
	}
	return s.m.MatchMessage(e.Message)
}

// push appends ev; when the buffer is full the oldest entries are dropped
// and counted.
func (s *Subscription) push(ev Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if ev.Kind == EventEntry {
		s.lastSeq = ev.Seq
	}
	s.q = append(s.q, ev)
	s.qBytes += ev.size()
	dropped := 0
	// Only an entry makes room by dropping: a notice (caught up, gone) is
	// small, comes once, and must not cost an entry — history is never
	// dropped, and a full queue at the seam is the normal case.
	for ev.Kind == EventEntry && (len(s.q)-s.head > s.maxLen || s.qBytes > s.maxBytes) {
		old := s.q[s.head]
		s.q[s.head] = Event{}
		s.head++
		s.qBytes -= old.size()
		if old.Kind == EventEntry {
			s.dropped++
			dropped++
		} else {
			s.notes = append(s.notes, old)
		}
	}
	s.compact()
	s.mu.Unlock()
	if dropped > 0 {
		s.b.metrics.subDropped.WithLabelValues(ReasonSlow).Add(float64(dropped))
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Buffered returns how many events wait in the buffer.
func (s *Subscription) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) - s.head + len(s.notes)
}

// fits reports whether evs fit the buffer beside what it holds.
func (s *Subscription) fits(evs []Event) bool {
	n := 0
	for i := range evs {
		n += evs[i].size()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q)-s.head+len(evs) <= s.maxLen && s.qBytes+n <= s.maxBytes
}

// pushWait appends ev, waiting for room: history is read at the
// subscriber's pace and never dropped. It returns false when ctx ends.
func (s *Subscription) pushWait(ctx context.Context, ev Event) bool {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false
		}
		if len(s.q)-s.head < s.maxLen && s.qBytes+ev.size() <= s.maxBytes || len(s.q) == s.head {
			s.q = append(s.q, ev)
			s.qBytes += ev.size()
			s.lastSeq = ev.Seq
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
			return true
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-s.space:
		}
	}
}

// compact moves the queue to the front of its array when half is spent.
func (s *Subscription) compact() {
	if s.head > 0 && s.head >= len(s.q)/2 {
		n := copy(s.q, s.q[s.head:])
		clear(s.q[n:])
		s.q = s.q[:n]
		s.head = 0
	}
}

func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting for one until ctx ends. After the
// subscription is closed it returns ErrClosed, or the error that ended it.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	var buf [1]Event
	evs, err := s.NextBatch(ctx, buf[:0], 1)
	if err != nil {
		return Event{}, err
	}
	return evs[0], nil
}

// NextBatch appends up to max ready events to buf, waiting until at least
// one is ready or ctx ends.
func (s *Subscription) NextBatch(ctx context.Context, buf []Event, max int) ([]Event, error) {
	for {
		s.mu.Lock()
		if s.closed {
			err := s.err
			s.mu.Unlock()
			if err == nil {
				err = ErrClosed
			}
			return buf, err
		}
		n := 0
		for len(s.notes) > 0 && n < max {
			buf = append(buf, s.notes[0])
			s.notes = s.notes[1:]
			n++
		}
		if s.dropped > 0 && n < max {
			buf = append(buf, Event{Kind: EventDropped, Dropped: s.dropped, Reason: ReasonSlow})
			s.dropped = 0
			n++
		}
		for s.head < len(s.q) && n < max {
			ev := s.q[s.head]
			s.q[s.head] = Event{}
			s.head++
			s.qBytes -= ev.size()
			buf = append(buf, ev)
			n++
		}
		if s.head == len(s.q) {
			s.q, s.head = s.q[:0], 0
		}
		err := s.err
		s.mu.Unlock()
		if n > 0 {
			s.b.metrics.delivered.Add(float64(n))
			select {
			case s.space <- struct{}{}:
			default:
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		select {
		case <-ctx.Done():
			return buf, ctx.Err()
		case <-s.notify:
		case <-s.b.closed:
			s.Close()
		}
	}
}

// Close ends the subscription and releases its consumer.
func (s *Subscription) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.q, s.notes = nil, nil
	s.mu.Unlock()
	s.stop()
	if s.it != nil {
		s.it.Stop()
	}
	<-s.replayed
	if s.b.hub != nil {
		s.b.hub.leave(s)
	}
	s.b.metrics.subscribers.Dec()
}
