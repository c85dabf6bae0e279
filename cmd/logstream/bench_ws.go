package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func init() {
	benchmarks["ws"] = command{"WebSocket fan-out: N clients while syslog load flows in (optionally against Centrifugo)", runBenchWS}
}

// wsBenchConfig holds the flags of logstream bench ws.
type wsBenchConfig struct {
	targets    []string
	logstreamd string
	url        string
	syslogAddr string
	pid        int
	centrifugo string
	clients    int
	spread     int
	rate       int
	size       int
	duration   time.Duration
	warmup     time.Duration
	idle       bool
	settle     time.Duration
	slow       int
	stalled    int
	wsConfig   string
	jsonOut    bool
	stderr     io.Writer
}

// wsReport is the result of one target.
type wsReport struct {
	Target           string   `json:"target"`
	Mode             string   `json:"mode"` // load or idle
	Clients          int      `json:"clients"`
	Spread           int      `json:"spread"`
	Rate             int      `json:"rate"`          // entries a second offered
	MessageBytes     int      `json:"message_bytes"` // message size
	Seconds          float64  `json:"seconds"`       // measurement window
	Sent             int64    `json:"sent"`          // entries offered in the window
	Deliveries       int64    `json:"deliveries"`    // entries received by the clients in the window
	Expected         int64    `json:"expected"`      // deliveries if every client got all its entries
	DeliveriesPerSec float64  `json:"deliveries_per_sec"`
	Frames           int64    `json:"frames"`
	P50ms            float64  `json:"p50_ms"` // latency from syslog receive (or API publish) to client, per frame's oldest entry
	P99ms            float64  `json:"p99_ms"`
	MaxMs            float64  `json:"max_ms"`
	DroppedFrames    int64    `json:"dropped_frames"`         // "dropped" frames the fast clients got
	ClosedClients    int      `json:"closed_clients"`         // fast clients closed by the server
	RSSBaseMB        float64  `json:"rss_base_mb"`            // server RSS before the clients connected
	RSSIdleMB        float64  `json:"rss_idle_mb"`            // after they connected, before the load
	RSSMaxMB         float64  `json:"rss_max_mb"`             // highest during the load
	BytesPerConn     float64  `json:"bytes_per_conn"`         // (idle - base) / clients
	CPUCores         float64  `json:"cpu_cores"`              // server CPU time / wall time in the window
	Incomplete       int      `json:"incomplete"`             // fast clients still missing entries 10 s after the load stopped
	SlowEntries      int64    `json:"slow_entries"`           // entries the slow clients read
	SlowDropped      int64    `json:"slow_dropped"`           // dropped frames the slow clients got
	SlowClosed       int      `json:"slow_closed"`            // slow clients closed by the server
	CloseErrors      []string `json:"close_errors,omitempty"` // why clients were closed (first few)
	StalledClosed    int      `json:"stalled_closed"`         // stalled clients the server closed
}

func runBenchWS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstream bench ws", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := wsBenchConfig{stderr: stderr}
	target := fs.String("target", "logstream", "what to measure: logstream, centrifugo, or both (same clients, load and message size, one after the other)")
	fs.StringVar(&c.logstreamd, "logstreamd", "", "logstreamd `binary` to start on free ports (default: next to this program, else in $PATH)")
	fs.StringVar(&c.url, "url", "", "measure a running daemon at this ws://host:port/ws `URL` instead of starting one (with -syslog and -pid)")
	fs.StringVar(&c.syslogAddr, "syslog", "", "with -url: the daemon's syslog TCP `address` for the load")
	fs.IntVar(&c.pid, "pid", 0, "with -url: the daemon's process id, to read its RSS and CPU time")
	fs.StringVar(&c.centrifugo, "centrifugo", "", "centrifugo `binary` (default: $LOGSTREAM_CENTRIFUGO, else centrifugo in $PATH); install with: GOBIN=/some/dir go install github.com/centrifugal/centrifugo/v6@v6.9.1")
	fs.IntVar(&c.clients, "clients", 1000, "WebSocket clients")
	fs.IntVar(&c.spread, "spread", 1, "filter spread: the load goes to this many services and client i follows service i%spread (1: every client gets every entry)")
	fs.IntVar(&c.rate, "rate", 500, "syslog entries a second in total")
	fs.IntVar(&c.size, "size", 200, "message `bytes`")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measurement window")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "load before the window starts")
	fs.BoolVar(&c.idle, "idle", false, "idle mode: connect the clients, send nothing, and report the server's memory per connection")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "idle mode: wait this long after the last connection before reading RSS")
	fs.IntVar(&c.slow, "slow", 0, "extra clients that read one frame every 100ms")
	fs.IntVar(&c.stalled, "stalled", 0, "extra clients that never read")
	fs.StringVar(&c.wsConfig, "ws-config", "", "YAML `lines`, separated by ';', added under websocket: in the started daemon's configuration, e.g. 'batch_delay: 5ms; queue_bytes: 2MiB'")
	fs.BoolVar(&c.jsonOut, "json", false, "print the reports as JSON")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: logstream bench ws [flags]

Starts logstreamd on free ports (or measures -url), connects -clients WebSocket
clients, sends -rate syslog entries a second over TCP for -warmup + -duration,
and reports deliveries a second, latency from syslog receive to the client
(p50/p99, per frame's oldest entry) and the server's RSS and CPU. With
-target both it measures Centrifugo the same way: the same clients, message
size and rate, published through its HTTP API. -idle measures memory per
idle connection instead.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *target {
	case "logstream", "centrifugo":
		c.targets = []string{*target}
	case "both":
		c.targets = []string{"logstream", "centrifugo"}
	default:
		return fmt.Errorf("-target: %q is not logstream, centrifugo or both", *target)
	}
	if c.clients < 1 || c.spread < 1 || c.rate < 1 && !c.idle || c.size < 1 {
		return errors.New("-clients, -spread, -rate and -size must be positive")
	}
	if c.url != "" && !c.idle && c.syslogAddr == "" && slices.Contains(c.targets, "logstream") {
		return errors.New("-url needs -syslog for the load")
	}
	var reports []wsReport
	for _, name := range c.targets {
		var t wsTarget
		if name == "logstream" {
			t = &wsLogstream{cfg: &c}
		} else {
			t = &wsCentrifugo{cfg: &c}
		}
		fmt.Fprintf(stderr, "bench ws: %s: starting\n", name)
		r, err := wsBenchTarget(ctx, &c, t)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		reports = append(reports, r)
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	printWSReports(stdout, reports)
	return nil
}

// wsTarget is a WebSocket fan-out server under test.
type wsTarget interface {
	name() string
	start(ctx context.Context) error
	stop()
	pid() int
	// clientURL is the URL of client i.
	clientURL(i int) string
	// hello is what a client sends after connecting (nil: nothing), and
	// ready tells whether a frame says the subscription is in place.
	hello(i int) []byte
	ready(frame []byte) bool
	// count returns the entries in a frame and the "received" time of the
	// first; reply is what to answer (a ping), if anything.
	count(frame []byte) (n int, first []byte, dropped bool, reply []byte)
	// newLoader returns a function that sends n entries for service k.
	newLoader() (wsLoader, error)
}

type wsLoader interface {
	send(service int, n int, size int) error
	close()
}

func wsBenchTarget(ctx context.Context, c *wsBenchConfig, t wsTarget) (wsReport, error) {
	r := wsReport{Target: t.name(), Clients: c.clients, Spread: c.spread, Rate: c.rate, MessageBytes: c.size, Mode: "load"}
	if c.idle {
		r.Mode = "idle"
	}
	if err := t.start(ctx); err != nil {
		return r, err
	}
	defer t.stop()
	pid := t.pid()
	r.RSSBaseMB = wsRSSMB(pid)

	cs, err := wsConnectAll(ctx, c, t)
	defer func() {
		cs.stop()
		for _, cl := range cs.all {
			cl.conn.Close()
		}
		cs.wg.Wait()
	}()
	if err != nil {
		return r, err
	}
	fmt.Fprintf(c.stderr, "bench ws: %s: %d clients connected\n", t.name(), len(cs.fast))
	if c.idle {
		// Let the server's allocator settle, then take the lowest RSS of a
		// few samples (the GC returns memory gradually).
		deadline := time.Now().Add(c.settle)
		low := 0.0
		for time.Now().Before(deadline) {
			if v := wsRSSMB(pid); low == 0 || v < low {
				low = v
			}
			time.Sleep(250 * time.Millisecond)
		}
		r.RSSIdleMB = low
		r.BytesPerConn = (r.RSSIdleMB - r.RSSBaseMB) * 1e6 / float64(c.clients)
		return r, nil
	}
	r.RSSIdleMB = wsRSSMB(pid)

	ld, err := t.newLoader()
	if err != nil {
		return r, err
	}
	defer ld.close()
	var sent atomic.Int64
	perService := make([]atomic.Int64, c.spread)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() { loadDone <- wsRunLoad(loadCtx, c, ld, &sent, perService) }()

	select {
	case <-time.After(c.warmup):
	case err := <-loadDone:
		stopLoad()
		return r, fmt.Errorf("load: %w", err)
	case <-ctx.Done():
		stopLoad()
		return r, ctx.Err()
	}
	cs.measure(true)
	sent0 := sent.Load()
	cpu0 := wsCPUSeconds(pid)
	start := time.Now()
	maxRSS := 0.0
	for tick := time.NewTicker(500 * time.Millisecond); time.Since(start) < c.duration; {
		select {
		case <-tick.C:
			maxRSS = max(maxRSS, wsRSSMB(pid))
		case err := <-loadDone:
			stopLoad()
			return r, fmt.Errorf("load: %w", err)
		case <-ctx.Done():
			stopLoad()
			return r, ctx.Err()
		}
	}
	cs.measure(false)
	elapsed := time.Since(start)
	r.CPUCores = (wsCPUSeconds(pid) - cpu0) / elapsed.Seconds()
	r.Sent = sent.Load() - sent0
	stopLoad()
	if err := <-loadDone; err != nil && !errors.Is(err, context.Canceled) {
		return r, fmt.Errorf("load: %w", err)
	}
	r.Seconds = elapsed.Seconds()
	r.RSSMaxMB = max(maxRSS, wsRSSMB(pid))
	// Every fast client should end with every entry of its service.
	drain := time.Now().Add(10 * time.Second)
	for i, cl := range cs.fast {
		want := perService[i%c.spread].Load()
		for {
			cl.mu.Lock()
			got, closed := cl.entries, cl.closed
			cl.mu.Unlock()
			if got >= want {
				break
			}
			if closed || time.Now().After(drain) {
				r.Incomplete++
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var lat []time.Duration
	for _, cl := range cs.fast {
		cl.mu.Lock()
		r.Deliveries += cl.windowEntries
		r.Frames += cl.windowFrames
		lat = append(lat, cl.lat...)
		r.DroppedFrames += cl.dropped
		if cl.closed {
			r.ClosedClients++
			if len(r.CloseErrors) < 5 {
				r.CloseErrors = append(r.CloseErrors, "fast: "+cl.closeErr.Error())
			}
		}
		cl.mu.Unlock()
	}
	for _, cl := range cs.slow {
		cl.mu.Lock()
		r.SlowEntries += cl.entries
		r.SlowDropped += cl.dropped
		if cl.closed {
			r.SlowClosed++
			if len(r.CloseErrors) < 5 {
				r.CloseErrors = append(r.CloseErrors, "slow: "+cl.closeErr.Error())
			}
		}
		cl.mu.Unlock()
	}
	for _, cl := range cs.stalled {
		if cl.closedByServer() {
			r.StalledClosed++
		}
	}
	r.Expected = r.Sent * int64(c.clients) / int64(c.spread)
	r.DeliveriesPerSec = float64(r.Deliveries) / elapsed.Seconds()
	if len(lat) > 0 {
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		r.P50ms = ms(lat[len(lat)/2])
		r.P99ms = ms(lat[len(lat)*99/100])
		r.MaxMs = ms(lat[len(lat)-1])
	}
	return r, nil
}

// wsRunLoad sends c.rate entries a second, spread over the services, in
// 5 ms steps, until ctx ends.
func wsRunLoad(ctx context.Context, c *wsBenchConfig, ld wsLoader, sent *atomic.Int64, perService []atomic.Int64) error {
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var done int64
	k := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		want := int64(time.Since(start).Seconds() * float64(c.rate))
		for done < want {
			// One call per service with its share of the step.
			n := int(min(want-done, 1000))
			per := max(n/c.spread, 1)
			for n > 0 {
				m := min(per, n)
				if err := ld.send(k%c.spread, m, c.size); err != nil {
					return err
				}
				perService[k%c.spread].Add(int64(m))
				k++
				n -= m
				done += int64(m)
				sent.Add(int64(m))
			}
		}
	}
}

func printWSReports(w io.Writer, reports []wsReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if reports[0].Mode == "idle" {
		fmt.Fprintln(tw, "target\tclients\tRSS before MB\tRSS idle MB\tKB/conn\t")
		for _, r := range reports {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t\n", r.Target, r.Clients, r.RSSBaseMB, r.RSSIdleMB, r.BytesPerConn/1000)
		}
	} else {
		fmt.Fprintln(tw, "target\tclients\tspread\trate/s\tdeliveries/s\tof expected\tentries/frame\tp50 ms\tp99 ms\tmax ms\tRSS idle MB\tRSS max MB\tCPU cores\tdropped frames\tclosed\tincomplete\t")
		for _, r := range reports {
			of := 0.0
			if r.Expected > 0 {
				of = float64(r.Deliveries) / float64(r.Expected) * 100
			}
			perFrame := 0.0
			if r.Frames > 0 {
				perFrame = float64(r.Deliveries) / float64(r.Frames)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.1f%%\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%d\t%d\t%d\t\n",
				r.Target, r.Clients, r.Spread, r.Rate, r.DeliveriesPerSec, of, perFrame, r.P50ms, r.P99ms, r.MaxMs,
				r.RSSIdleMB, r.RSSMaxMB, r.CPUCores, r.DroppedFrames, r.ClosedClients, r.Incomplete)
		}
	}
	tw.Flush()
	if len(reports) == 2 && reports[1].Mode == "load" && reports[1].DeliveriesPerSec > 0 {
		fmt.Fprintf(w, "logstream/centrifugo deliveries/s: %.2fx\n", reports[0].DeliveriesPerSec/reports[1].DeliveriesPerSec)
	}
	if len(reports) == 2 && reports[1].Mode == "idle" && reports[1].BytesPerConn > 0 {
		fmt.Fprintf(w, "logstream/centrifugo memory per connection: %.2fx\n", reports[0].BytesPerConn/reports[1].BytesPerConn)
	}
	for _, r := range reports {
		for _, e := range r.CloseErrors {
			fmt.Fprintf(w, "%s: client closed: %s\n", r.Target, e)
		}
		if r.SlowEntries > 0 || r.SlowDropped > 0 || r.StalledClosed > 0 {
			fmt.Fprintf(w, "%s: slow clients read %d entries, got %d dropped frames, %d were closed by the server; %d stalled clients closed by the server\n",
				r.Target, r.SlowEntries, r.SlowDropped, r.SlowClosed, r.StalledClosed)
		}
	}
}

// wsRSSMB is the resident set size of a process in MB (10^6 bytes), 0 when
// unknown.
func wsRSSMB(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb * 1024 / 1e6
		}
	}
	return 0
}

// wsCPUSeconds is the user plus system CPU time of a process.
func wsCPUSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscanf(f[11], "%f", &ut)
	fmt.Sscanf(f[12], "%f", &st)
	return (ut + st) / 100 // USER_HZ
}

// wsClientSet is every connected client.
type wsClientSet struct {
	fast, slow, stalled, all []*wsClient
	wg                       sync.WaitGroup
	stop                     func() // marks the connections' end as ours
}

func (cs *wsClientSet) measure(on bool) {
	for _, c := range cs.fast {
		c.mu.Lock()
		c.measuring = on
		c.mu.Unlock()
	}
}
