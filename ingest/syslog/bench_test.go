package syslog

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

type countSink struct{ n int64 }

// BenchmarkReceiver measures the receiver alone: RFC 5424 over one TCP
// connection (octet counting), parsed into entries, into a sink that
// only counts. It reports messages a second.
func BenchmarkReceiver(b *testing.B) {
	for _, sinkKind := range []string{"discard", "bus-core", "bus-jetstream"} {
		b.Run(sinkKind, func(b *testing.B) {
			var sink Sink
			var pub *bus.Publisher
			switch sinkKind {
			case "discard":
				sink = &memSinkDiscard{}
			case "bus-core":
				pub = bustest.Open(b, bustest.CoreMode).Publisher()
				sink = pub
			case "bus-jetstream":
				pub = bustest.Open(b).Publisher()
				sink = pub
			}
			r := start(b, testConfig(tcpL()), sink)
			c, err := net.Dial("tcp", r.addr(0))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := bufio.NewWriterSize(c, 256<<10)
			var msgs [10]string
			for i := range msgs {
				m := fmt.Sprintf("<14>1 2026-03-10T11:59:59.003Z host1 app%d 4242 - - bench message %d with some padding to make it about two hundred bytes long, like the end-to-end benchmark sends it abcdefghij", i, i)
				msgs[i] = strconv.Itoa(len(m)) + " " + m
			}
			b.ReportAllocs()
			b.ResetTimer()
			begin := time.Now()
			for i := range b.N {
				w.WriteString(msgs[i%10])
			}
			w.Flush()
			waitFor(b, "all published", func() bool { return r.Stats()[0].Published == uint64(b.N) })
			if pub != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				pub.Flush(ctx)
				cancel()
			}
			b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
		})
	}
}

type memSinkDiscard struct{}

func (memSinkDiscard) Publish(context.Context, bus.Entry) error { return nil }
func (memSinkDiscard) Flush(context.Context) error              { return nil }
