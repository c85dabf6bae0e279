package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The hub reads every live entry once — one ordered consumer on the whole
// stream, or one core subscription — and fans it out to the live
// subscriptions whose filter matches, without ever waiting on one. It
// keeps the most recent entries in a ring so that a subscription
// finishing its history replay can join without a gap.
const (
	hubRingEntries = 16384
	hubRingBytes   = 16 << 20
)

type hubMsg struct {
	seq     uint64
	subject string
	data    []byte
}

type hub struct {
	b *Bus

	mu      sync.Mutex
	subs    []*Subscription
	ring    []hubMsg // circular, rlen entries from rhead
	rhead   int
	rlen    int
	rbytes  int
	lastSeq uint64
	closed  bool

	cc      jetstream.ConsumeContext
	coreSub *nats.Subscription
}

func (b *Bus) getHub() (*hub, error) {
	b.hubOnce.Do(func() {
		h := &hub{b: b, ring: make([]hubMsg, hubRingEntries)}
		if err := h.start(); err != nil {
			b.hubErr = err
			return
		}
		b.hub = h
	})
	return b.hub, b.hubErr
}

func (h *hub) start() error {
	b := h.b
	if !b.cfg.UseJetStream() {
		sub, err := b.admin.Subscribe(b.cfg.Prefix+".>", func(m *nats.Msg) {
			h.mu.Lock()
			seq := h.lastSeq + 1
			h.mu.Unlock()
			h.deliver(seq, m.Subject, m.Data)
		})
		if err != nil {
			return fmt.Errorf("bus: subscribe: %w", err)
		}
		sub.SetPendingLimits(-1, 512<<20)
		h.coreSub = sub
		// Entries arrive over other connections: make sure the server
		// has the subscription before anyone counts on it.
		if err := b.admin.Flush(); err != nil {
			return fmt.Errorf("bus: subscribe: %w", err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := b.streamInfo(ctx)
	if err != nil {
		return fmt.Errorf("bus: stream info: %w", err)
	}
	h.lastSeq = info.State.LastSeq
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   h.lastSeq + 1,
	})
	if err != nil {
		return fmt.Errorf("bus: hub consumer: %w", err)
	}
	h.cc, err = cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		h.deliver(meta.Sequence.Stream, m.Subject(), m.Data())
	}, jetstream.PullMaxMessages(2048), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		b.logLimited("live consumer error", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("bus: hub consume: %w", err)
	}
	return nil
}

// deliver records one live entry and hands it to every matching
// subscription.
func (h *hub) deliver(seq uint64, subject string, data []byte) {
	var host, service, level string
	if rest, ok := strings.CutPrefix(subject, h.b.cfg.Prefix+"."); ok {
		host, rest, _ = strings.Cut(rest, ".")
		service, level, _ = strings.Cut(rest, ".")
	}
	lvl, lvlErr := ParseLevel(level)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || seq <= h.lastSeq {
		return
	}
	h.lastSeq = seq
	h.addRing(hubMsg{seq, subject, data})
	var msg *string
	for _, s := range h.subs {
		if seq <= s.skipTo || lvlErr != nil || !s.m.matchTokens(host, service, lvl) {
			continue
		}
		if s.m.NeedsMessage() {
			if msg == nil {
				var e Entry
				if err := e.UnmarshalJSON(data); err != nil {
					h.b.metrics.badEntries.Inc()
					return
				}
				msg = &e.Message
			}
			if !s.m.MatchMessage(*msg) {
				continue
			}
		}
		s.push(Event{Kind: EventEntry, Seq: seq, Subject: subject, Data: data})
	}
}

func (h *hub) addRing(m hubMsg) {
	for h.rlen > 0 && (h.rlen == len(h.ring) || h.rbytes+len(m.data) > hubRingBytes) {
		old := &h.ring[h.rhead]
		h.rbytes -= len(old.data)
		*old = hubMsg{}
		h.rhead = (h.rhead + 1) % len(h.ring)
		h.rlen--
	}
	h.ring[(h.rhead+h.rlen)%len(h.ring)] = m
	h.rlen++
	h.rbytes += len(m.data)
}

// join makes s live after it has seen everything up to lastSeq. It fails
// (false) when the ring no longer holds what came after lastSeq: the
// caller keeps replaying and tries again.
func (h *hub) join(s *Subscription, lastSeq uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if h.lastSeq > lastSeq {
		oldest := h.lastSeq + 1
		if h.rlen > 0 {
			oldest = h.ring[h.rhead].seq
		}
		if oldest > lastSeq+1 {
			return false
		}
		// What the ring holds after lastSeq is still history to this
		// subscription: hand it over only if it fits the buffer now, so
		// that nothing is dropped at the seam; otherwise the caller keeps
		// replaying at the subscriber's pace and tries again.
		var pending []Event
		for i := range h.rlen {
			m := &h.ring[(h.rhead+i)%len(h.ring)]
			if m.seq > lastSeq && s.m.MatchSubject(h.b.cfg.Prefix, m.subject) && s.matchMessage(m.data) {
				pending = append(pending, Event{Kind: EventEntry, Seq: m.seq, Subject: m.subject, Data: m.data})
			}
		}
		if !s.fits(pending) {
			return false
		}
		for _, ev := range pending {
			s.push(ev)
		}
	}
	s.skipTo = lastSeq
	s.push(Event{Kind: EventCaughtUp, Seq: max(lastSeq, h.lastSeq)})
	h.subs = append(h.subs, s)
	return true
}

// joinNew makes s live from the entry after streamLast (the stream's last
// sequence when the subscription was made; 0 when unknown) or after the
// last one the hub has seen, whichever is later, and tells it so.
func (h *hub) joinNew(s *Subscription, streamLast uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.skipTo = max(h.lastSeq, streamLast)
	s.push(Event{Kind: EventCaughtUp, Seq: s.skipTo})
	h.subs = append(h.subs, s)
}

func (h *hub) leave(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.subs {
		if x == s {
			last := len(h.subs) - 1
			h.subs[i] = h.subs[last]
			h.subs[last] = nil
			h.subs = h.subs[:last]
			return
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	if h.cc != nil {
		h.cc.Stop()
	}
	if h.coreSub != nil {
		_ = h.coreSub.Unsubscribe()
	}
}
