// Package busbench holds the plain NATS clients that benchmarks set
// beside the bus: nats.go's JetStream async publisher, the baseline the
// bus publisher is measured against, and a core NATS subscription that
// counts what reaches a subscriber, as any service consuming the subjects
// would. Only bus/ imports nats.go; benchmarks elsewhere (cmd/logstream's
// bench commands, the sources' Go benchmarks) use it through here.
package busbench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is a message ready to publish: its header is built once, so that
// publishing it again (every round of a benchmark) costs only the publish.
type Msg struct{ m nats.Msg }

// NewMsg returns the message for subject and data, with a Nats-Msg-Id
// header when id is not empty.
func NewMsg(subject, id string, data []byte) *Msg {
	m := &Msg{nats.Msg{Subject: subject, Data: data}}
	if id != "" {
		m.m.Header = nats.Header{nats.MsgIdHdr: []string{id}}
	}
	return m
}

// AsyncPublisher is nats.go's JetStream async publisher on a connection
// of its own.
type AsyncPublisher struct {
	nc            *nats.Conn
	js            jetstream.JetStream
	stall         []jetstream.PublishOpt
	acked, failed atomic.Int64
}

// NewAsyncPublisher connects to url as name, with at most maxPending
// messages awaiting their acknowledgement. A Publish call with maxPending
// messages pending waits up to stall for room (0: nats.go's default,
// 200ms), then fails.
func NewAsyncPublisher(url, name string, maxPending int, stall time.Duration) (*AsyncPublisher, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	p := &AsyncPublisher{nc: nc}
	p.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { p.acked.Add(1) }),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { p.failed.Add(1) }))
	if err != nil {
		nc.Close()
		return nil, err
	}
	if stall > 0 {
		p.stall = []jetstream.PublishOpt{jetstream.WithStallWait(stall)}
	}
	return p, nil
}

// Publish sends m without waiting for its acknowledgement.
func (p *AsyncPublisher) Publish(m *Msg) error {
	_, err := p.js.PublishMsgAsync(&nats.Msg{Subject: m.m.Subject, Header: m.m.Header, Data: m.m.Data}, p.stall...)
	return err
}

// Wait returns once every message published so far is acknowledged (or
// refused: see Failed), or ctx's error.
func (p *AsyncPublisher) Wait(ctx context.Context) error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Acked and Failed count the acknowledgements and the refusals so far.
func (p *AsyncPublisher) Acked() int64  { return p.acked.Load() }
func (p *AsyncPublisher) Failed() int64 { return p.failed.Load() }

// StreamFor names the stream that stores subject.
func (p *AsyncPublisher) StreamFor(ctx context.Context, subject string) (string, error) {
	return p.js.StreamNameBySubject(ctx, subject)
}

// Close closes the connection.
func (p *AsyncPublisher) Close() { p.nc.Close() }

// Subscription is a core NATS subscription on a connection of its own,
// with no limit on what waits for the handler.
type Subscription struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

// Subscribe connects to url as name and calls fn with the data of every
// message on subject, one at a time. It returns once the server has the
// subscription.
func Subscribe(url, name, subject string, fn func(data []byte)) (*Subscription, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	return &Subscription{nc: nc, sub: sub}, nil
}

// Unsubscribe stops the deliveries.
func (s *Subscription) Unsubscribe() { _ = s.sub.Unsubscribe() }

// Close closes the connection.
func (s *Subscription) Close() { s.nc.Close() }
