package grpc

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

const (
	apiV1      = "v1"
	apiV1Batch = "v1_batch"
	apiLegacy  = "legacy"
	batchSize  = 128
)

// sink writes one API's messages to a stream, one event a message.
type sink interface {
	entry(ev *bus.Event) error
	dropped(n uint64, reason string) error
	caughtUp() error
}

// batchSink writes several events a message (StreamLogBatches).
type batchSink struct {
	s      *Server
	stream grpclib.ServerStreamingServer[pb.LogBatch]
	raw    rawMsg
	parts  [][]byte // encoded messages of the batch being sent
	seqs   []uint64 // their entries' sequences, 0 for control messages
}

// entry, dropped and caughtUp are not used: send takes whole batches.
func (k *batchSink) entry(*bus.Event) error       { return errors.New("grpc: batch sink") }
func (k *batchSink) dropped(uint64, string) error { return errors.New("grpc: batch sink") }
func (k *batchSink) caughtUp() error              { return errors.New("grpc: batch sink") }

// sendBatch sends evs as LogBatch messages: one, unless that would pass
// max_send_msg_size. The message is built from the entries' cached
// encodings (a LogBatch is its LogEntry messages as field 1), in a new
// buffer of the exact size each time: gRPC still holds it after SendMsg
// returns.
func (k *batchSink) sendBatch(st *streamState, evs []bus.Event) error {
	limit := int(k.s.cfg.MaxSendMsgSize)
	parts := k.parts[:0]
	seqs := k.seqs[:0]
	for i := range evs {
		ev := &evs[i]
		var m []byte
		var seq uint64
		switch ev.Kind {
		case bus.EventEntry:
			enc, err := k.s.v1Cache.get(ev, encodeV1)
			if err != nil {
				k.s.metrics.badEntries.Inc()
				continue
			}
			if batchEntrySize(enc) > limit {
				k.s.metrics.dropped.WithLabelValues(reasonTooLarge).Inc()
				m, _ = marshalOpts.Marshal(controlV1(pb.Control_KIND_DROPPED, 1, reasonTooLarge))
				break
			}
			m, seq = enc, ev.Seq
		case bus.EventDropped:
			m, _ = marshalOpts.Marshal(controlV1(pb.Control_KIND_DROPPED, ev.Dropped, ev.Reason))
		case bus.EventCaughtUp:
			m, _ = marshalOpts.Marshal(controlV1(pb.Control_KIND_CAUGHT_UP, 0, ""))
		default:
			continue
		}
		parts = append(parts, m)
		seqs = append(seqs, seq)
	}
	k.parts, k.seqs = parts, seqs
	defer clear(k.parts)
	for len(parts) > 0 {
		size, n := 0, 0
		for n < len(parts) && (n == 0 || size+batchEntrySize(parts[n]) <= limit) {
			size += batchEntrySize(parts[n])
			n++
		}
		b := make([]byte, 0, size)
		var entries, last uint64
		for i, m := range parts[:n] {
			b = appendBatchEntry(b, m)
			if seqs[i] > 0 {
				entries++
				last = seqs[i]
			}
		}
		k.raw.b = b
		if err := k.stream.SendMsg(&k.raw); err != nil {
			return err
		}
		k.s.metrics.sent.Add(float64(entries))
		st.sent.Add(entries)
		if last > 0 {
			st.lastSeq.Store(last)
		}
		parts, seqs = parts[n:], seqs[n:]
	}
	return nil
}

type v1Service struct {
	pb.UnimplementedLogServiceServer
	s *Server
}

func (v v1Service) StreamLogs(req *pb.LogRequest, stream grpclib.ServerStreamingServer[pb.LogEntry]) error {
	q, err := ParseV1(req)
	if err != nil {
		v.s.metrics.refused.WithLabelValues(codes.InvalidArgument.String()).Inc()
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return v.s.serve(stream.Context(), apiV1, q, &v1Sink{s: v.s, stream: stream})
}

func (v v1Service) StreamLogBatches(req *pb.LogRequest, stream grpclib.ServerStreamingServer[pb.LogBatch]) error {
	q, err := ParseV1(req)
	if err != nil {
		v.s.metrics.refused.WithLabelValues(codes.InvalidArgument.String()).Inc()
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return v.s.serve(stream.Context(), apiV1Batch, q, &batchSink{s: v.s, stream: stream})
}

type legacyService struct {
	legacypb.UnimplementedLogServiceServer
	s *Server
}

func (l legacyService) StreamLogs(req *legacypb.LogRequest, stream grpclib.ServerStreamingServer[legacypb.LogEntry]) error {
	q, err := ParseLegacy(req)
	if err != nil {
		l.s.metrics.refused.WithLabelValues(codes.InvalidArgument.String()).Inc()
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return l.s.serve(stream.Context(), apiLegacy, q, &legacySink{s: l.s, stream: stream})
}

// serve runs one stream: it authenticates, subscribes and sends events
// until the client goes, the policy ends the stream, or the server stops.
func (s *Server) serve(ctx context.Context, api string, q Request, out sink) error {
	log := s.log.With("api", api)
	if p, ok := peer.FromContext(ctx); ok {
		log = log.With("peer", p.Addr.String())
	}
	if err := s.authorize(ctx, &q.Filter); err != nil {
		s.metrics.refused.WithLabelValues(status.Code(err).String()).Inc()
		log.Debug("stream refused", "err", err)
		return err
	}
	if err := checkSubjects(&q.Filter, s.sub.Prefix()); err != nil {
		s.metrics.refused.WithLabelValues(codes.InvalidArgument.String()).Inc()
		return status.Error(codes.InvalidArgument, err.Error())
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.metrics.refused.WithLabelValues(codes.ResourceExhausted.String()).Inc()
		return status.Errorf(codes.ResourceExhausted, "too many open streams (grpc.max_streams %d)", s.cfg.MaxStreams)
	}
	defer func() { <-s.slots }()
	if s.stopCtx.Err() != nil {
		return status.Error(codes.Unavailable, "the server is shutting down")
	}

	subCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sub, err := s.sub.Subscribe(subCtx, q.Filter, q.Start, bus.SubscribeOptions{
		MaxEntries: s.cfg.QueueEntries, MaxBytes: int(s.cfg.QueueBytes),
	})
	cancel()
	if err != nil {
		code := codes.Unavailable
		switch {
		case errors.Is(err, bus.ErrNothingAllowed):
			code = codes.PermissionDenied
		case errors.Is(err, bus.ErrNoHistory):
			code = codes.FailedPrecondition
		case ctx.Err() != nil:
			code = codes.Canceled
		}
		s.metrics.refused.WithLabelValues(code.String()).Inc()
		log.Debug("subscribe failed", "err", err)
		return status.Error(code, err.Error())
	}
	s.open.Add(1)
	defer s.open.Add(-1)
	defer sub.Close()
	s.metrics.opened.WithLabelValues(api).Inc()
	gauge := s.metrics.streams.WithLabelValues(api)
	gauge.Inc()
	defer gauge.Dec()
	started := time.Now()
	log.Debug("stream opened", "start", q.Start.Kind, "hosts", q.Filter.Hosts, "services", q.Filter.Services)

	st := &streamState{
		s: s, sub: sub, out: out, log: log,
		q:          newStreamQueue(s.cfg.QueueEntries, int(s.cfg.QueueBytes)),
		disconnect: q.Disconnect || s.cfg.SlowPolicy == PolicyDisconnect,
		quit:       make(chan struct{}),
		sendErr:    make(chan error, 1),
	}
	// sctx ends when the client goes, the server stops or the sender
	// fails: it wakes the reader.
	sctx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	defer context.AfterFunc(s.stopCtx, cancelStream)()
	s.senders.Add(1)
	go func() {
		defer s.senders.Done()
		if err := st.send(); err != nil {
			st.sendErr <- err
			cancelStream()
		}
	}()
	defer close(st.quit)
	err = st.read(ctx, sctx)
	log.Debug("stream closed", "sent", st.sent.Load(), "last_seq", st.lastSeq.Load(), "duration", time.Since(started), "status", status.Code(err))
	return err
}

// streamState is one stream: the handler's goroutine reads the
// subscription into the queue (read) while another sends from it (send),
// so that a client that stops reading can be disconnected, or its oldest
// entries dropped, while a send to it is blocked.
type streamState struct {
	s          *Server
	sub        *bus.Subscription
	out        sink
	log        *slog.Logger
	q          *streamQueue
	disconnect bool
	live       bool          // caught up: entries may be dropped
	quit       chan struct{} // closed when the handler returns
	sendErr    chan error
	lastSeq    atomic.Uint64 // of the last entry sent
	sent       atomic.Uint64
}

// read moves events from the subscription to the queue until the stream
// ends, and returns its status.
func (st *streamState) read(ctx, sctx context.Context) error {
	s := st.s
	buf := make([]bus.Event, 0, batchSize)
	for {
		// History is read at the client's pace: wait for room.
		for !st.live && st.q.full() && sctx.Err() == nil {
			select {
			case <-st.q.space:
			case <-sctx.Done():
			}
		}
		var err error
		buf, err = st.sub.NextBatch(sctx, buf[:0], batchSize)
		for i := range buf {
			if err := st.enqueue(&buf[i]); err != nil {
				return err
			}
		}
		clear(buf) // keep no entry alive while waiting
		if err == nil {
			continue
		}
		select {
		case err := <-st.sendErr:
			return err
		default:
		}
		switch {
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		case s.stopCtx.Err() != nil:
			return st.drain(ctx)
		case errors.Is(err, bus.ErrClosed):
			return status.Error(codes.Unavailable, "the bus is closed; reconnect with after_seq set to the last seq received")
		default:
			st.log.Warn("stream ended by the bus", "err", err)
			return status.Error(codes.Unavailable, err.Error())
		}
	}
}

// enqueue puts one event from the subscription in the queue, applying
// the slow policy; an error ends the stream.
func (st *streamState) enqueue(ev *bus.Event) error {
	m := st.s.metrics
	switch ev.Kind {
	case bus.EventEntry:
		if st.disconnect && st.live && !st.q.fits(ev) {
			// End the stream rather than drop: what is queued is sent
			// first, so the client resumes after it with no gap.
			return st.tooSlow()
		}
		if n := st.q.push(*ev, st.live); n > 0 {
			m.dropped.WithLabelValues(bus.ReasonSlow).Add(float64(n))
		}
	case bus.EventDropped:
		m.dropped.WithLabelValues(ev.Reason).Add(float64(ev.Dropped))
		if st.disconnect && ev.Reason == bus.ReasonSlow {
			// The subscription's own buffer overflowed: entries after
			// those queued are gone from it; the client reads them from
			// history when it resumes after what it was sent.
			return st.tooSlow()
		}
		st.q.push(*ev, st.live)
	case bus.EventCaughtUp:
		st.live = true
		st.q.push(*ev, true)
	}
	return nil
}

func (st *streamState) tooSlow() error {
	st.s.metrics.disconnects.WithLabelValues("slow").Inc()
	st.log.Info("slow stream disconnected", "queue_entries", st.s.cfg.QueueEntries)
	return status.Errorf(codes.ResourceExhausted,
		"the client did not keep up: its queue of %d entries is full; reconnect with after_seq set to the last seq received to read the rest from history", st.s.cfg.QueueEntries)
}

// drain, once the server stops, moves what the subscription holds to
// the queue (at most one queue's worth), waits until the sender has sent
// it, and ends the stream with UNAVAILABLE. The server's grace period
// bounds the wait: then the connection is closed and ctx ends.
func (st *streamState) drain(ctx context.Context) error {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	buf := make([]bus.Event, 0, batchSize)
	for moved := 0; moved < st.s.cfg.QueueEntries; moved += len(buf) {
		var err error
		buf, err = st.sub.NextBatch(done, buf[:0], batchSize)
		if err != nil {
			break
		}
		for i := range buf {
			if err := st.enqueue(&buf[i]); err != nil {
				return err
			}
		}
	}
	for !st.q.drained() {
		select {
		case <-st.q.space:
		case err := <-st.sendErr:
			return err
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return st.s.shutdownStatus()
}

// send sends what the queue holds until the handler returns or a send
// fails.
func (st *streamState) send() error {
	bs, batched := st.out.(*batchSink)
	buf := make([]bus.Event, 0, batchSize)
	for {
		buf = st.q.take(buf[:0], batchSize)
		if len(buf) == 0 {
			select {
			case <-st.q.ready:
				continue
			case <-st.quit:
				return nil
			}
		}
		var err error
		if batched {
			err = st.unlessEnded(func() error { return bs.sendBatch(st, buf) })
		} else {
			for i := range buf {
				if err = st.unlessEnded(func() error { return st.sendOne(&buf[i]) }); err != nil {
					break
				}
			}
		}
		clear(buf)
		st.q.sent()
		if err != nil {
			if err == errEnded {
				return nil
			}
			return err
		}
	}
}

// errEnded: the handler has returned; nothing more is sent.
var errEnded = errors.New("grpc: stream ended")

func (st *streamState) unlessEnded(f func() error) error {
	select {
	case <-st.quit:
		return errEnded
	default:
		return f()
	}
}

func (st *streamState) sendOne(ev *bus.Event) error {
	switch ev.Kind {
	case bus.EventEntry:
		err := st.out.entry(ev)
		if err == errSkip {
			return nil
		}
		if err == nil {
			st.lastSeq.Store(ev.Seq)
			st.sent.Add(1)
		}
		return err
	case bus.EventDropped:
		return st.out.dropped(ev.Dropped, ev.Reason)
	case bus.EventCaughtUp:
		return st.out.caughtUp()
	}
	return nil
}

func (s *Server) shutdownStatus() error {
	s.metrics.disconnects.WithLabelValues("shutdown").Inc()
	return status.Error(codes.Unavailable, "the server is shutting down; reconnect with after_seq set to the last seq received")
}

// authorize checks the token in the authorization metadata and narrows
// the filter to its scope.
func (s *Server) authorize(ctx context.Context, f *bus.Filter) error {
	if !s.verifier.Enabled() {
		return nil
	}
	var token string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			token = v[0]
		}
	}
	scope, err := s.verifier.Verify(token)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	f.Scope = scope
	return nil
}

// errSkip is returned by a sink for an entry it did not send (undecodable
// or too large); the stream goes on.
var errSkip = errors.New("grpc: entry skipped")

// sendEntry sends ev's encoding (from cache, shared by every stream of
// the same API) as one message on stream. An entry that cannot be
// encoded, or is over max_send_msg_size, is skipped and counted; the
// client is told of a too large one through dropped.
func (s *Server) sendEntry(ev *bus.Event, cache *encCache, enc func(*bus.Event) ([]byte, error),
	stream grpclib.ServerStream, raw *rawMsg, dropped func(uint64, string) error) error {
	b, err := cache.get(ev, enc)
	if err != nil {
		s.metrics.badEntries.Inc()
		return errSkip
	}
	if len(b) > int(s.cfg.MaxSendMsgSize) {
		s.metrics.dropped.WithLabelValues(reasonTooLarge).Inc()
		if err := dropped(1, reasonTooLarge); err != nil {
			return err
		}
		return errSkip
	}
	raw.b = b
	if err := stream.SendMsg(raw); err != nil {
		return err
	}
	s.metrics.sent.Inc()
	return nil
}

type v1Sink struct {
	s      *Server
	stream grpclib.ServerStreamingServer[pb.LogEntry]
	raw    rawMsg
}

func (k *v1Sink) entry(ev *bus.Event) error {
	return k.s.sendEntry(ev, &k.s.v1Cache, encodeV1, k.stream, &k.raw, k.dropped)
}

func (k *v1Sink) dropped(n uint64, reason string) error {
	return k.stream.Send(controlV1(pb.Control_KIND_DROPPED, n, reason))
}

func (k *v1Sink) caughtUp() error {
	return k.stream.Send(controlV1(pb.Control_KIND_CAUGHT_UP, 0, ""))
}

type legacySink struct {
	s      *Server
	stream grpclib.ServerStreamingServer[legacypb.LogEntry]
	raw    rawMsg
}

func (k *legacySink) entry(ev *bus.Event) error {
	return k.s.sendEntry(ev, &k.s.legCache, encodeLegacy, k.stream, &k.raw, k.dropped)
}

func (k *legacySink) dropped(n uint64, reason string) error {
	return k.stream.Send(legacyNotice(n, reason))
}

// caughtUp sends nothing: legacy streams are live only and have no
// control messages.
func (k *legacySink) caughtUp() error { return nil }
