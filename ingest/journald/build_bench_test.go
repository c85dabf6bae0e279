package journald

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/ingest/journald/internal/sdj"
)

type nopSink struct{ n int }

func (s *nopSink) Publish(_ context.Context, e bus.Entry) error { s.n += len(e.Message); return nil }
func (*nopSink) Flush(context.Context) error                    { return nil }

// benchRecords builds n records as the reader writes them, with the
// fields of a typical native-protocol entry.
func benchRecords(s *Source, n int) []byte {
	idx := func(name string) int { return indexOf(s.names, name) }
	var buf []byte
	for i := range n {
		rec := sdj.Record{
			Realtime: uint64(1_700_000_000_000_000 + i),
			Cursor:   []byte(fmt.Sprintf("s=91433d6cf53d47e9bb40eff3bcac9989;i=%x;b=2f4fe591604a401aa5c24ad5b0f16842;m=544c2a4f;t=6612e41716a6f;x=80697fc798b341f", i+1)),
		}
		add := func(name, v string) {
			if j := idx(name); j >= 0 {
				rec.Fields = append(rec.Fields, sdj.Field{Index: j, Value: []byte(v)})
			}
		}
		add("_HOSTNAME", "web1")
		add("_TRANSPORT", "journal")
		add("_PID", "1234")
		add("_COMM", "nginx")
		add("_SYSTEMD_UNIT", "nginx.service")
		add("_BOOT_ID", "2f4fe591604a401aa5c24ad5b0f16842")
		add("_SOURCE_REALTIME_TIMESTAMP", "1700000000000123")
		add("MESSAGE", fmt.Sprintf("nginx: request %d handled in %dms status=200 path=/api/v1/items/%d", i, i%997, i*7))
		add("PRIORITY", "6")
		add("SYSLOG_IDENTIFIER", "nginx")
		add("SYSLOG_FACILITY", "3")
		add("CODE_FILE", "src/handler.go")
		add("CODE_LINE", "120")
		add("CODE_FUNC", "handle")
		buf = sdj.AppendRecord(buf, &rec)
	}
	return buf
}

// BenchmarkDecode measures the Go side of the per-entry path: decoding a
// record and building the bus.Entry (default fields), without the journal
// and without publishing.
func BenchmarkDecode(b *testing.B) {
	s, err := New(Config{Enabled: Off}, b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	sink := &nopSink{}
	r := newReader(s, sink, newCommitter(s, sink), nil)
	const n = 256
	buf := benchRecords(s, n)
	now := time.Now()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := sdj.Records(buf, func(rec *sdj.Record) error { return r.handle(ctx, rec, now) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}

// BenchmarkDecodeEncode adds the JSON encoding the publisher does.
func BenchmarkDecodeEncode(b *testing.B) {
	s, err := New(Config{Enabled: Off}, b.TempDir(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	sink := &encodeSink{}
	r := newReader(s, sink, newCommitter(s, sink), nil)
	const n = 256
	buf := benchRecords(s, n)
	now := time.Now()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := sdj.Records(buf, func(rec *sdj.Record) error { return r.handle(ctx, rec, now) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}

type encodeSink struct{ buf []byte }

func (s *encodeSink) Publish(_ context.Context, e bus.Entry) error {
	s.buf = e.AppendJSON(s.buf[:0])
	_ = bus.EntrySubject("logs", &e)
	return nil
}
func (*encodeSink) Flush(context.Context) error { return nil }
