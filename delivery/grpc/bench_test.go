package grpc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/logstream/logstream/delivery/grpc/grpcbench"
)

// BenchmarkStreams publishes b.N entries as fast as the bus takes them
// to 1 and 100 streams, and reports entries delivered a second over all
// streams, and the latency at 2,000 entries/s over one second.
func BenchmarkStreams(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			e := startEnv(b, envOpt{})
			var r grpcbench.Result
			var err error
			for b.Loop() {
				r, err = grpcbench.Run(b.Context(), grpcbench.Options{
					Addr: e.addr, Publisher: e.bus.Publisher(), Streams: n,
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
