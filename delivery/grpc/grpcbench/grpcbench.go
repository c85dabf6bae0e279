// Package grpcbench measures the gRPC stream end to end: entries
// published on the bus and received by real gRPC clients, over one stream
// or many. It is shared by `logstream bench grpc` and the package's Go
// benchmarks. Run starts its goroutines and has ended all of them when it
// returns.
package grpcbench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Options of one measurement.
type Options struct {
	// Addr is the gRPC server to stream from.
	Addr string
	// Publisher publishes into the bus the server reads.
	Publisher interface {
		Publish(ctx context.Context, e bus.Entry) error
		Flush(ctx context.Context) error
	}
	// Streams is how many streams read every entry, each on its own
	// connection.
	Streams int
	// Batches uses StreamLogBatches instead of StreamLogs.
	Batches bool
	// Entries to publish as fast as the publisher takes them
	// (throughput). Zero skips the throughput phase.
	Entries int
	// Rate and Duration of the latency phase: entries a second, paced.
	// Zero Rate skips it.
	Rate     int
	Duration time.Duration
	// Size of each entry's message, in bytes.
	Size int
	// Timeout for the streams to receive what was published, after the
	// publisher flushed. Default 60s.
	Timeout time.Duration
}

// Result of one measurement.
type Result struct {
	Streams int
	// Throughput phase.
	Published   int
	Delivered   int64         // entries received, over all streams
	Dropped     int64         // entries streams were told they missed
	Elapsed     time.Duration // first publish to the last stream done
	PerSecond   float64       // Delivered / Elapsed
	PublishRate float64       // entries/s the publisher took
	// Latency phase: publish (entry time) to receipt, over all streams.
	LatencyRate    int
	LatencyEntries int
	LatencyDropped int64
	P50, P99, Max  time.Duration
}

// stream is one client stream's counters.
type stream struct {
	received atomic.Int64
	dropped  atomic.Int64
	done     chan struct{} // closed when received+dropped reaches want
	want     atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	record   atomic.Bool
}

func (s *stream) check() {
	if w := s.want.Load(); w > 0 && s.received.Load()+s.dropped.Load() >= w {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// openStream opens a stream and returns its receive function, which
// returns one entry, or a batch.
func openStream(ctx context.Context, cli pb.LogServiceClient, req *pb.LogRequest, batches bool) (func() ([]*pb.LogEntry, error), error) {
	if batches {
		st, err := cli.StreamLogBatches(ctx, req)
		if err != nil {
			return nil, err
		}
		return func() ([]*pb.LogEntry, error) {
			b, err := st.Recv()
			return b.GetEntries(), err
		}, nil
	}
	st, err := cli.StreamLogs(ctx, req)
	if err != nil {
		return nil, err
	}
	return func() ([]*pb.LogEntry, error) {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return []*pb.LogEntry{m}, nil
	}, nil
}

// Run opens the streams, runs the throughput phase then the latency
// phase, and closes the streams.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Streams < 1 {
		return Result{}, fmt.Errorf("grpcbench: %d streams", o.Streams)
	}
	res := Result{Streams: o.Streams}
	service := "grpcbench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	body := strings.Repeat("x", max(o.Size-16, 0))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	streams := make([]*stream, o.Streams)
	errc := make(chan error, o.Streams)
	ready := make(chan struct{}, o.Streams)
	for i := range streams {
		s := &stream{done: make(chan struct{})}
		streams[i] = s
		cc, err := grpclib.NewClient(o.Addr, grpclib.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return res, err
		}
		recv, err := openStream(ctx, pb.NewLogServiceClient(cc), &pb.LogRequest{Services: []string{service}}, o.Batches)
		if err != nil {
			cc.Close()
			return res, fmt.Errorf("grpcbench: open stream: %w", err)
		}
		wg.Go(func() {
			defer cc.Close()
			var batch []*pb.LogEntry
			for {
				if len(batch) == 0 {
					batch, err = recv()
					if err != nil {
						if ctx.Err() == nil {
							errc <- fmt.Errorf("grpcbench: stream %d: %w", i, err)
						}
						return
					}
				}
				m := batch[0]
				batch = batch[1:]
				now := time.Now()
				if c := m.GetControl(); c != nil {
					switch c.GetKind() {
					case pb.Control_KIND_CAUGHT_UP:
						ready <- struct{}{}
					case pb.Control_KIND_DROPPED:
						s.dropped.Add(int64(c.GetDropped()))
						s.check()
					}
					continue
				}
				if s.record.Load() {
					s.mu.Lock()
					s.lat = append(s.lat, now.Sub(m.GetTime().AsTime()))
					s.mu.Unlock()
				}
				s.received.Add(1)
				s.check()
			}
		})
	}
	for range o.Streams {
		select {
		case <-ready:
		case err := <-errc:
			return res, err
		case <-time.After(o.Timeout):
			return res, fmt.Errorf("grpcbench: streams not open after %v", o.Timeout)
		}
	}

	// waitAll waits until every stream has received or been told of want
	// entries in all.
	waitAll := func(want int64) error {
		for _, s := range streams {
			s.want.Store(want)
			s.check()
		}
		deadline := time.After(o.Timeout)
		for i, s := range streams {
			select {
			case <-s.done:
			case err := <-errc:
				return err
			case <-deadline:
				return fmt.Errorf("grpcbench: stream %d has %d of %d entries (%d dropped) after %v",
					i, s.received.Load(), want, s.dropped.Load(), o.Timeout)
			}
		}
		return nil
	}
	entry := func(i int) bus.Entry {
		now := time.Now()
		return bus.Entry{
			Time: now, Received: now, Host: "bench", Service: service, Level: bus.LevelInfo,
			Message: strconv.Itoa(i) + " " + body, Source: bus.SourceSyslog,
		}
	}

	published := 0
	if o.Entries > 0 {
		start := time.Now()
		for i := range o.Entries {
			if err := o.Publisher.Publish(ctx, entry(i)); err != nil {
				return res, err
			}
		}
		if err := o.Publisher.Flush(ctx); err != nil {
			return res, err
		}
		res.PublishRate = float64(o.Entries) / time.Since(start).Seconds()
		published = o.Entries
		if err := waitAll(int64(published)); err != nil {
			return res, err
		}
		res.Elapsed = time.Since(start)
		res.Published = o.Entries
		for _, s := range streams {
			res.Delivered += s.received.Load()
			res.Dropped += s.dropped.Load()
		}
		res.PerSecond = float64(res.Delivered) / res.Elapsed.Seconds()
	}

	if o.Rate > 0 && o.Duration > 0 {
		var before int64
		for _, s := range streams {
			s.record.Store(true)
			before += s.dropped.Load()
		}
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		n := 0
		for time.Since(start) < o.Duration {
			<-tick.C
			want := int(time.Since(start).Seconds() * float64(o.Rate))
			for ; n < want; n++ {
				if err := o.Publisher.Publish(ctx, entry(published+n)); err != nil {
					tick.Stop()
					return res, err
				}
			}
		}
		tick.Stop()
		if err := o.Publisher.Flush(ctx); err != nil {
			return res, err
		}
		if err := waitAll(int64(published + n)); err != nil {
			return res, err
		}
		var lat []time.Duration
		for _, s := range streams {
			s.record.Store(false)
			s.mu.Lock()
			lat = append(lat, s.lat...)
			s.mu.Unlock()
			res.LatencyDropped += s.dropped.Load()
		}
		res.LatencyDropped -= before
		res.LatencyRate = o.Rate
		res.LatencyEntries = n
		if len(lat) > 0 {
			slices.Sort(lat)
			res.P50 = lat[len(lat)/2]
			res.P99 = lat[min(len(lat)*99/100, len(lat)-1)]
			res.Max = lat[len(lat)-1]
		}
	}
	return res, nil
}
