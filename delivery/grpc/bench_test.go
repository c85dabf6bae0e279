package grpc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/logstream/logstream/delivery/grpc/grpcbench"
)

// BenchmarkStreams publishes 20,000 entries as fast as the bus takes
// them to 1 and 100 streams, with StreamLogs and StreamLogBatches, and
// reports entries delivered a second over all streams, the share
// dropped, and the latency at 2,000 entries/s over one second.
func BenchmarkStreams(b *testing.B) {
	for _, c := range []struct {
		n       int
		batches bool
	}{{1, false}, {100, false}, {1, true}, {100, true}} {
		n := c.n
		name := fmt.Sprintf("StreamLogs/streams=%d", n)
		if c.batches {
			name = fmt.Sprintf("StreamLogBatches/streams=%d", n)
		}
		b.Run(name, func(b *testing.B) {
			e := startEnv(b, envOpt{})
			var r grpcbench.Result
			var err error
			for b.Loop() {
				r, err = grpcbench.Run(b.Context(), grpcbench.Options{
					Addr: e.addr, Publisher: e.bus.Publisher(), Streams: n, Batches: c.batches,
					Entries: 20000, Rate: 2000, Duration: time.Second, Size: 200,
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(r.PerSecond, "entries/s")
			b.ReportMetric(float64(r.Dropped)/float64(r.Published*n), "dropped/entry")
			b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
		})
	}
}
