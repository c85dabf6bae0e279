package grpc

import (
	"sync"

	"github.com/logstream/logstream/bus"
)

// streamQueue is one stream's bounded queue between the goroutine that
// reads the subscription and the one that sends. Entries and notices keep
// their order. Live entries past the bounds push out the oldest entries,
// which are counted and told (a dropped notice) before what follows;
// notices are never dropped. History is not dropped: the reader waits for
// room before reading more of it.
type streamQueue struct {
	maxLen, maxBytes int

	mu      sync.Mutex
	q       []bus.Event // FIFO: q[head:]
	head    int
	entries int // entries in q[head:]
	bytes   int
	notes   []bus.Event // notices saved from dropping, sent first
	dropped uint64      // entries dropped, not yet told
	taken   int         // events taken and not yet sent

	ready chan struct{} // something to send
	space chan struct{} // the sender took something
}

func newStreamQueue(maxLen, maxBytes int) *streamQueue {
	return &streamQueue{
		maxLen: maxLen, maxBytes: maxBytes,
		ready: make(chan struct{}, 1), space: make(chan struct{}, 1),
	}
}

func eventSize(ev *bus.Event) int { return len(ev.Data) + len(ev.Subject) + 64 }

// push appends ev. When live and the queue is over its bounds, the
// oldest entries are dropped; push returns how many.
func (q *streamQueue) push(ev bus.Event, live bool) int {
	q.mu.Lock()
	q.q = append(q.q, ev)
	if ev.Kind == bus.EventEntry {
		q.entries++
		q.bytes += eventSize(&ev)
	}
	dropped := 0
	// Only a live entry makes room by dropping: a notice (caught up) must
	// not push out the history queued before it, which may exceed the
	// bounds by a batch.
	for live && ev.Kind == bus.EventEntry && (q.entries > q.maxLen || q.bytes > q.maxBytes) {
		old := q.q[q.head]
		q.q[q.head] = bus.Event{}
		q.head++
		if old.Kind == bus.EventEntry {
			q.entries--
			q.bytes -= eventSize(&old)
			q.dropped++
			dropped++
		} else {
			q.notes = append(q.notes, old)
		}
	}
	if q.head > 0 && q.head >= len(q.q)/2 {
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q = q.q[:n]
		q.head = 0
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// fits reports whether ev can be pushed without dropping.
func (q *streamQueue) fits(ev *bus.Event) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.entries == 0 || q.entries < q.maxLen && q.bytes+eventSize(ev) <= q.maxBytes
}

// full reports whether the queue is at its bounds.
func (q *streamQueue) full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.entries >= q.maxLen || q.bytes >= q.maxBytes
}

// take appends up to max events to buf, in the order to send them: saved
// notices, the count of dropped entries, then the queue.
func (q *streamQueue) take(buf []bus.Event, max int) []bus.Event {
	q.mu.Lock()
	n := 0
	for len(q.notes) > 0 && n < max {
		buf = append(buf, q.notes[0])
		q.notes[0] = bus.Event{}
		q.notes = q.notes[1:]
		n++
	}
	if len(q.notes) == 0 {
		q.notes = nil
	}
	if q.dropped > 0 && n < max {
		buf = append(buf, bus.Event{Kind: bus.EventDropped, Dropped: q.dropped, Reason: bus.ReasonSlow})
		q.dropped = 0
		n++
	}
	for q.head < len(q.q) && n < max {
		ev := q.q[q.head]
		q.q[q.head] = bus.Event{}
		q.head++
		if ev.Kind == bus.EventEntry {
			q.entries--
			q.bytes -= eventSize(&ev)
		}
		buf = append(buf, ev)
		n++
	}
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	q.taken += n
	q.mu.Unlock()
	if n > 0 {
		q.signalSpace()
	}
	return buf
}

// sent says the events last taken are sent (or failed).
func (q *streamQueue) sent() {
	q.mu.Lock()
	q.taken = 0
	q.mu.Unlock()
	q.signalSpace()
}

// drained reports whether everything queued has been sent.
func (q *streamQueue) drained() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.taken == 0 && len(q.notes) == 0 && q.dropped == 0 && q.head == len(q.q)
}

func (q *streamQueue) signalSpace() {
	select {
	case q.space <- struct{}{}:
	default:
	}
}
