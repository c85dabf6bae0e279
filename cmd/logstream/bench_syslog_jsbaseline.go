package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/busbench"
)

func init() {
	benchmarks["jsbaseline"] = command{"bare JetStream async publisher of the entries bench syslog makes (its baseline)", runBenchJSBaseline}
}

// jsBaselineReport is the result of logstream bench jsbaseline.
type jsBaselineReport struct {
	Label        string  `json:"label,omitempty"`
	Stream       string  `json:"stream"`
	Connections  int     `json:"connections"`
	MaxPending   int     `json:"max_pending"`
	MsgID        bool    `json:"msg_id"`
	MessageBytes int     `json:"message_bytes"`
	Count        int     `json:"count"`
	Acked        int64   `json:"acked"`
	Delivered    int     `json:"delivered"` // to the counting subscriber; -1 without one
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	Rate         float64 `json:"rate"` // acknowledged (and delivered) entries a second
}

// runBenchJSBaseline publishes, with nats.go's JetStream async publisher
// and nothing else, the entries the syslog receiver would publish for
// bench syslog's messages (same JSON, same subjects), into the stream
// that captures them, and reports how many a second are acknowledged.
// It is the ceiling JetStream itself sets on this machine, against which
// bench syslog's JetStream-mode figure is compared.
func runBenchJSBaseline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstream bench jsbaseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of a server with the stream (logstreamd's embedded one in JetStream mode)")
	prefix := fs.String("prefix", bus.DefaultPrefix, "subject prefix")
	count := fs.Int("count", 500000, "entries to publish")
	conns := fs.Int("connections", 1, "NATS connections publishing in parallel, entries spread by subject")
	maxPending := fs.Int("max-pending", 8192, "unacknowledged entries per connection (bus.publish.max_in_flight is the receiver's)")
	size := fs.Int("size", 200, "bytes of the syslog message each entry stands for (as bench syslog -size)")
	services := fs.Int("services", 10, "distinct services")
	levels := fs.String("levels", "info,notice,warning,err", "levels to cycle through")
	msgID := fs.Bool("msg-id", false, "send a Nats-Msg-Id header (as bus.publish.generate_ids does)")
	host := fs.String("host", "", "host of the entries; default bench-<random>")
	subscribe := fs.Bool("subscribe", true, "count the entries on a core NATS subscription too, as bench syslog does, so that both runs give the server the same delivery work; the rate is then to the last of acknowledgement and delivery")
	label := fs.String("label", "", "a label for the report")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv []bus.Level
	for _, s := range strings.Split(*levels, ",") {
		l, err := bus.ParseLevel(s)
		if err != nil {
			return fmt.Errorf("-levels: %w", err)
		}
		lv = append(lv, l)
	}
	if *count < 1 || *conns < 1 || *maxPending < 1 || *services < 1 {
		return errors.New("-count, -connections, -max-pending and -services must be positive")
	}
	if *host == "" {
		*host = "bench-" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	// The entry the receiver makes of bench syslog's RFC 5424 message.
	genCfg := &syslogBench{size: *size, services: *services, levels: lv, format: "rfc5424", host: *host}
	// entry makes entry seq; a generator is not safe for concurrent use,
	// so each publishing goroutine has its own.
	entry := func(gen *syslogGen, seq int) (string, []byte) {
		b := gen.message(make([]byte, 0, *size+64), seq)
		now := time.Now()
		e := bus.Entry{Time: now, Received: now, Host: *host, Service: "bench" + strconv.Itoa(seq%*services),
			Level: lv[(seq / *services)%len(lv)], Facility: bus.FacilityFromCode(1), PID: 4242,
			Message: string(b[bytes.Index(b, benchMarker):]), Source: bus.SourceSyslog}
		return bus.EntrySubject(*prefix, &e), e.AppendJSON(make([]byte, 0, 256+len(e.Message)))
	}

	pubs := make([]*busbench.AsyncPublisher, *conns)
	for i := range pubs {
		p, err := busbench.NewAsyncPublisher(*natsURL, "logstream-bench-jsbaseline", *maxPending, time.Minute)
		if err != nil {
			return err
		}
		defer p.Close()
		pubs[i] = p
	}
	subject, _ := entry(newSyslogGen(genCfg), 0)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	stream, err := pubs[0].StreamFor(sctx, subject)
	cancel()
	if err != nil {
		return fmt.Errorf("no stream stores %s (is logstreamd running with bus.jetstream: true?): %w", subject, err)
	}

	var counter *natsCounter
	if *subscribe {
		if counter, err = newNATSCounter(*natsURL, *prefix+"."+bus.SanitizeToken(*host)+".>", *count); err != nil {
			return err
		}
		defer counter.close()
	}

	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, len(pubs))
	for i, p := range pubs {
		wg.Go(func() {
			gen := newSyslogGen(genCfg)
			for seq := i; seq < *count; seq += len(pubs) {
				subj, data := entry(gen, seq)
				id := ""
				if *msgID {
					id = *host + "-" + strconv.Itoa(seq)
				}
				if err := p.Publish(busbench.NewMsg(subj, id, data)); err != nil {
					errc <- fmt.Errorf("publish: %w", err)
					return
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := p.Wait(wctx); err != nil && ctx.Err() == nil {
				errc <- errors.New("acknowledgements still pending after 5 minutes")
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	delivered := -1
	if counter != nil {
		res := counter.wait(ctx, time.Minute, 10*time.Second, stderr)
		delivered = res.received
		if d := res.last.Sub(start); d > el {
			el = d
		}
	}
	var acked, failed int64
	for _, p := range pubs {
		acked += p.Acked()
		failed += p.Failed()
	}
	rep := jsBaselineReport{Label: *label, Stream: stream, Connections: *conns, MaxPending: *maxPending, MsgID: *msgID,
		MessageBytes: *size, Count: *count, Acked: acked, Delivered: delivered, Errors: failed, Seconds: el.Seconds(),
		Rate: float64(acked) / el.Seconds()}
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "jetstream baseline %s: %d entries into stream %s over %d connection(s), max pending %d, msg-id %v\n",
		rep.Label, rep.Count, rep.Stream, rep.Connections, rep.MaxPending, rep.MsgID)
	fmt.Fprintf(stdout, "  acknowledged %d (%d errors), delivered %d, in %.2fs: %.0f entries/s\n", rep.Acked, rep.Errors, rep.Delivered, rep.Seconds, rep.Rate)
	return nil
}
