package grpc

import (
	"context"
	"errors"
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
	apiV1     = "v1"
	apiLegacy = "legacy"
	batchSize = 128
)

// sink writes one API's messages to a stream.
type sink interface {
	entry(ev *bus.Event) error
	dropped(n uint64, reason string) error
	caughtUp() error
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
	var sent uint64
	log.Debug("stream opened", "start", q.Start.Kind, "hosts", q.Filter.Hosts, "services", q.Filter.Services)
	defer func() { log.Debug("stream closed", "sent", sent, "duration", time.Since(started)) }()

	// sctx ends when the client goes or the server stops. When the server
	// stops, the stream sends what its queue holds (at most one queue's
	// worth) and ends with UNAVAILABLE.
	sctx, cancelS := context.WithCancel(ctx)
	defer cancelS()
	defer context.AfterFunc(s.stopCtx, cancelS)()
	disconnect := q.Disconnect || s.cfg.SlowPolicy == PolicyDisconnect
	var lastSeq uint64
	drain := -1 // entries left to send once stopping; -1 while not stopping
	buf := make([]bus.Event, 0, batchSize)
	for {
		if drain < 0 && s.stopCtx.Err() != nil {
			drain = s.cfg.QueueEntries
		}
		buf, err = sub.NextBatch(sctx, buf[:0], batchSize)
		for i := range buf {
			ev := &buf[i]
			var serr error
			switch ev.Kind {
			case bus.EventEntry:
				serr = out.entry(ev)
				if serr == errSkip {
					serr = nil
					continue
				}
				lastSeq = ev.Seq
				sent++
			case bus.EventDropped:
				s.metrics.dropped.WithLabelValues(ev.Reason).Add(float64(ev.Dropped))
				if disconnect && ev.Reason == bus.ReasonSlow {
					s.metrics.disconnects.WithLabelValues("slow").Inc()
					log.Info("slow stream disconnected", "dropped", ev.Dropped, "last_seq", lastSeq)
					return status.Errorf(codes.ResourceExhausted,
						"the client did not keep up and %d entries were dropped; reconnect with after_seq %d to read them from history", ev.Dropped, lastSeq)
				}
				serr = out.dropped(ev.Dropped, ev.Reason)
			case bus.EventCaughtUp:
				serr = out.caughtUp()
			}
			if serr != nil {
				return serr
			}
			if drain > 0 && ev.Kind == bus.EventEntry {
				drain--
			}
		}
		clear(buf) // keep no entry alive while waiting
		if err == nil {
			if drain == 0 {
				return s.shutdownStatus()
			}
			continue
		}
		switch {
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		case s.stopCtx.Err() != nil:
			return s.shutdownStatus() // the queue is drained
		case errors.Is(err, bus.ErrClosed):
			return status.Error(codes.Unavailable, "the bus is closed; reconnect with after_seq set to the last seq received")
		default:
			log.Warn("stream ended by the bus", "err", err)
			return status.Error(codes.Unavailable, err.Error())
		}
	}
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

type v1Sink struct {
	s      *Server
	stream grpclib.ServerStreamingServer[pb.LogEntry]
	raw    rawMsg
}

func (k *v1Sink) entry(ev *bus.Event) error {
	b, err := k.s.v1Cache.get(ev, encodeV1)
	if err != nil {
		k.s.metrics.badEntries.Inc()
		return errSkip
	}
	if len(b) > int(k.s.cfg.MaxSendMsgSize) {
		k.s.metrics.dropped.WithLabelValues(reasonTooLarge).Inc()
		if err := k.dropped(1, reasonTooLarge); err != nil {
			return err
		}
		return errSkip
	}
	k.raw.b = b
	if err := k.stream.SendMsg(&k.raw); err != nil {
		return err
	}
	k.s.metrics.sent.Inc()
	return nil
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
	b, err := k.s.legCache.get(ev, encodeLegacy)
	if err != nil {
		k.s.metrics.badEntries.Inc()
		return errSkip
	}
	if len(b) > int(k.s.cfg.MaxSendMsgSize) {
		k.s.metrics.dropped.WithLabelValues(reasonTooLarge).Inc()
		if err := k.dropped(1, reasonTooLarge); err != nil {
			return err
		}
		return errSkip
	}
	k.raw.b = b
	if err := k.stream.SendMsg(&k.raw); err != nil {
		return err
	}
	k.s.metrics.sent.Inc()
	return nil
}

func (k *legacySink) dropped(n uint64, reason string) error {
	return k.stream.Send(legacyNotice(n, reason))
}

// caughtUp sends nothing: legacy streams are live only and have no
// control messages.
func (k *legacySink) caughtUp() error { return nil }
