package bus_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchEntry is a typical syslog entry; its JSON is about 250 bytes.
func benchEntry(i int) bus.Entry {
	now := time.Now()
	return bus.Entry{
		Time: now, Received: now, Host: "web" + strconv.Itoa(i%16), Service: "svc" + strconv.Itoa(i%25),
		Level: bus.Level(i % 8), Facility: bus.FacilityFromCode(3), PID: 1234, Source: bus.SourceSyslog,
		Message: "GET /api/v1/items?id=12345 HTTP/1.1 200 512 0.004 upstream=10.0.0.12:8080",
	}
}

func BenchmarkEntryAppendJSON(b *testing.B) {
	e := benchEntry(1)
	e.Fields = map[string]string{"msgid": "ID47", "sd.origin.ip": "10.0.0.1"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEntryAppendJSONJournald encodes an entry with the journald
// source's default fields.
func BenchmarkEntryAppendJSONJournald(b *testing.B) {
	e := benchEntry(1)
	e.Source = bus.SourceJournald
	e.Fields = map[string]string{"_SYSTEMD_UNIT": "nginx.service", "SYSLOG_IDENTIFIER": "nginx",
		"_BOOT_ID": "2f4fe591604a401aa5c24ad5b0f16842", "_TRANSPORT": "journal", "CODE_FILE": "src/nginx/handler.go",
		"CODE_LINE": "120", "CODE_FUNC": "handle", "_STREAM_ID": "9a1e0c2d5b7f4e3a8c6d1b0e2f4a6c8d"}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEntryUnmarshalJSON(b *testing.B) {
	e := benchEntry(1)
	data := e.AppendJSON(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var got bus.Entry
		if err := got.UnmarshalJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = bus.Subject("logs", "web1", "nginx", bus.LevelErr)
	}
}

func BenchmarkSubjectSanitize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = bus.Subject("logs", "web1.example.com", "user@1000.service", bus.LevelErr)
	}
}

// 400 distinct subjects (16 hosts × 25 services, levels vary) as a busy
// ingest node sees them.
func benchPublish(b *testing.B, mods ...func(*bus.Config)) {
	bb := bustest.Open(b, mods...)
	p := bb.Publisher()
	ctx := context.Background()
	entries := make([]bus.Entry, 1000)
	for i := range entries {
		entries[i] = benchEntry(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		if err := p.Publish(ctx, entries[i%len(entries)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "entries/s")
}

func BenchmarkPublishJetStream(b *testing.B) { benchPublish(b) }

func BenchmarkPublishJetStream1(b *testing.B) {
	benchPublish(b, func(c *bus.Config) { c.Publish.Connections = 1 })
}

func BenchmarkPublishJetStreamIDs(b *testing.B) {
	benchPublish(b, func(c *bus.Config) { c.Publish.GenerateIDs = true })
}

func BenchmarkPublishCore(b *testing.B) { benchPublish(b, bustest.CoreMode) }

// BenchmarkBareJetStreamAsync is the baseline: nats.go's own async
// JetStream publisher, one connection, the same encoded entries, no
// logstream code in the path.
func BenchmarkBareJetStreamAsync(b *testing.B) { benchBare(b, false) }

// BenchmarkBareJetStreamAsyncIDs is the baseline with a Nats-Msg-Id on
// every entry, as journald entries have.
func BenchmarkBareJetStreamAsyncIDs(b *testing.B) { benchBare(b, true) }

func benchBare(b *testing.B, ids bool) {
	bb := bustest.Open(b)
	nc, err := nats.Connect(bb.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		b.Fatal(err)
	}
	type msg struct {
		subj string
		data []byte
	}
	msgs := make([]msg, 1000)
	for i := range msgs {
		e := benchEntry(i)
		msgs[i] = msg{bus.EntrySubject("logs", &e), e.AppendJSON(nil)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		m := msgs[i%len(msgs)]
		var opts []jetstream.PublishOpt
		if ids {
			opts = append(opts, jetstream.WithMsgID("id-"+strconv.Itoa(i)))
		}
		if _, err := js.PublishAsync(m.subj, m.data, opts...); err != nil {
			b.Fatal(err)
		}
		i++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not complete")
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkFanout: one publisher, 1000 live subscriptions each reading
// in batches; reports deliveries per second through the hub.
func BenchmarkFanout(b *testing.B) {
	bb := bustest.Open(b)
	p := bb.Publisher()
	const subs = 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for range subs {
		s, err := bb.Subscribe(ctx, bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer s.Close()
			buf := make([]bus.Event, 0, 256)
			for {
				evs, err := s.NextBatch(ctx, buf[:0], 256)
				if err != nil {
					return
				}
				n := 0
				for _, ev := range evs {
					if ev.Kind == bus.EventEntry {
						n++
					}
				}
				delivered.Add(int64(n))
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := p.Publish(ctx, benchEntry(n)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	want := int64(n) * subs
	deadline := time.Now().Add(time.Minute)
	for delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.ReportMetric(float64(delivered.Load())/el.Seconds(), "deliveries/s")
	cancel()
	wg.Wait()
}

// BenchmarkReplay: one subscription reads history from the stream.
func BenchmarkReplay(b *testing.B) {
	bb := bustest.Open(b)
	p := bb.Publisher()
	ctx := context.Background()
	const stored = 50000
	for i := range stored {
		if err := p.Publish(ctx, benchEntry(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	total := 0
	for b.Loop() {
		s, err := bb.Subscribe(ctx, bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]bus.Event, 0, 256)
		n := 0
		for n < stored {
			evs, err := s.NextBatch(ctx, buf[:0], 256)
			if err != nil {
				b.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Kind == bus.EventEntry {
					n++
				}
			}
		}
		s.Close()
		total += n
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "entries/s")
}
