package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/logstream/logstream/bus"
)

func init() {
	benchmarks["syslog"] = command{"syslog load into logstreamd (or rsyslog), counted end to end on NATS (or in a file)", runBenchSyslog}
}

// syslogBench holds the flags of logstream bench syslog.
type syslogBench struct {
	address     string
	count       int
	duration    time.Duration
	rate        int
	connections int
	size        int
	services    int
	levels      []bus.Level
	format      string
	framing     string
	natsURL     string
	prefix      string
	file        string
	host        string
	timeout     time.Duration
	idle        time.Duration
	metrics     string
	label       string
	jsonOut     bool
}

// syslogReport is the result, printed as text or JSON.
type syslogReport struct {
	Label        string  `json:"label,omitempty"`
	Address      string  `json:"address"`
	Format       string  `json:"format"`
	Framing      string  `json:"framing,omitempty"`
	Connections  int     `json:"connections"`
	MessageBytes int     `json:"message_bytes"`
	Rate         int     `json:"rate"` // offered msgs/s, 0 = as fast as possible
	Sent         int     `json:"sent"`
	SendSeconds  float64 `json:"send_seconds"`
	SendRate     float64 `json:"send_rate"`
	Counter      string  `json:"counter"` // nats, file or none
	Received     int     `json:"received"`
	Duplicates   int     `json:"duplicates"`
	Lost         int     `json:"lost"`
	Seconds      float64 `json:"seconds"` // first send to last receive
	Rate2E       float64 `json:"end_to_end_rate"`
	P50ms        float64 `json:"p50_ms,omitempty"`
	P90ms        float64 `json:"p90_ms,omitempty"`
	P99ms        float64 `json:"p99_ms,omitempty"`
	P999ms       float64 `json:"p999_ms,omitempty"`
	MaxMs        float64 `json:"max_ms,omitempty"`
	// UDPRcvbufErrors is the machine's UDP receive-buffer overflow count
	// (/proc/net/snmp) during the run: datagrams the kernel dropped.
	UDPRcvbufErrors uint64 `json:"udp_rcvbuf_errors,omitempty"`
	// ClientCPUSeconds is this process's CPU time (sending and counting).
	ClientCPUSeconds float64           `json:"client_cpu_seconds"`
	Server           map[string]string `json:"server_counters,omitempty"` // logstream_syslog_* from --metrics
}

func runBenchSyslog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstream bench syslog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := syslogBench{}
	var levels string
	fs.StringVar(&c.address, "address", "tcp://127.0.0.1:5514", "where to send: tcp://, udp://, unix:// or unixgram:// (a path)")
	fs.IntVar(&c.count, "count", 1000000, "messages to send (ignored with -duration)")
	fs.DurationVar(&c.duration, "duration", 0, "send for this long at -rate instead of -count messages")
	fs.IntVar(&c.rate, "rate", 0, "messages a second, over all connections; 0 sends as fast as possible")
	fs.IntVar(&c.connections, "connections", 4, "connections (TCP) or sockets (UDP) sending in parallel")
	fs.IntVar(&c.size, "size", 200, "bytes per message, syslog header included")
	fs.IntVar(&c.services, "services", 10, "distinct services (APP-NAME/tag): bench0 … benchN-1")
	fs.StringVar(&levels, "levels", "info,notice,warning,err", "levels to cycle through")
	fs.StringVar(&c.format, "format", "rfc5424", "rfc5424 or rfc3164")
	fs.StringVar(&c.framing, "framing", "octet", "TCP framing: octet (RFC 6587 octet counting) or lf")
	fs.StringVar(&c.natsURL, "nats", "", "NATS URL of the bus to count entries on (e.g. nats://127.0.0.1:4222); empty: do not count there")
	fs.StringVar(&c.prefix, "prefix", bus.DefaultPrefix, "subject prefix of the bus")
	fs.StringVar(&c.file, "file", "", "count lines appended to this file instead (a receiver writing to a file, e.g. rsyslog omfile)")
	fs.StringVar(&c.host, "host", "", "HOSTNAME in the messages; default bench-<random>, so that runs do not mix")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "give up waiting for entries after this long")
	fs.DurationVar(&c.idle, "idle", 10*time.Second, "stop waiting when nothing arrived for this long after sending")
	fs.StringVar(&c.metrics, "metrics", "", "logstreamd /metrics URL: report its logstream_syslog_* counters after the run")
	fs.StringVar(&c.label, "label", "", "a label for the report")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON")
	cpuprofile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: logstream bench syslog [flags]

Sends syslog messages (each carries its sequence number and send time) to a
receiver, and counts them where they come out: on the bus (-nats, a core NATS
subscription on <prefix>.<host>.>), or as lines of a file (-file). Reports the
send rate, the end-to-end rate (received / first send to last receive), losses,
duplicates and latency percentiles (send to NATS delivery).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(levels, ",") {
		l, err := bus.ParseLevel(s)
		if err != nil {
			return fmt.Errorf("-levels: %w", err)
		}
		c.levels = append(c.levels, l)
	}
	if c.duration > 0 {
		if c.rate <= 0 {
			return errors.New("-duration needs -rate")
		}
		c.count = int(c.duration.Seconds() * float64(c.rate))
	}
	switch {
	case c.count < 1:
		return errors.New("-count must be positive")
	case c.connections < 1:
		return errors.New("-connections must be positive")
	case c.services < 1:
		return errors.New("-services must be positive")
	case c.format != "rfc5424" && c.format != "rfc3164":
		return fmt.Errorf("-format %q: rfc5424 or rfc3164", c.format)
	case c.framing != "octet" && c.framing != "lf":
		return fmt.Errorf("-framing %q: octet or lf", c.framing)
	case c.natsURL != "" && c.file != "":
		return errors.New("-nats and -file: choose one")
	}
	if c.host == "" {
		c.host = "bench-" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := c.run(ctx, stderr)
	if err != nil {
		return err
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rep)
	}
	rep.print(stdout)
	return nil
}

func (r *syslogReport) print(w io.Writer) {
	fmt.Fprintf(w, "syslog bench %s: %d × %d-byte %s messages to %s over %d connection(s)", r.Label, r.Sent, r.MessageBytes, r.Format, r.Address, r.Connections)
	if r.Rate > 0 {
		fmt.Fprintf(w, " at %d/s", r.Rate)
	}
	fmt.Fprintf(w, "\n  sent      %.0f msgs/s (%.2fs)\n", r.SendRate, r.SendSeconds)
	if r.Counter != "none" {
		fmt.Fprintf(w, "  received  %d on %s, %d lost, %d duplicates\n", r.Received, r.Counter, r.Lost, r.Duplicates)
		fmt.Fprintf(w, "  end to end %.0f msgs/s (first send to last receive %.2fs)\n", r.Rate2E, r.Seconds)
	}
	if r.P50ms > 0 {
		fmt.Fprintf(w, "  latency   p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs)
	}
	fmt.Fprintf(w, "  client CPU %.2fs (%.2f µs a message)\n", r.ClientCPUSeconds, r.ClientCPUSeconds*1e6/float64(r.Sent))
	if r.UDPRcvbufErrors > 0 {
		fmt.Fprintf(w, "  kernel UDP receive-buffer drops during the run: %d\n", r.UDPRcvbufErrors)
	}
	keys := make([]string, 0, len(r.Server))
	for k := range r.Server {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  server    %s %s\n", k, r.Server[k])
	}
}

func (c *syslogBench) run(ctx context.Context, stderr io.Writer) (*syslogReport, error) {
	u, err := url.Parse(c.address)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("-address %q: want tcp://host:port, udp://host:port, unix:///path or unixgram:///path", c.address)
	}
	network, addr := u.Scheme, u.Host
	if network == "unix" || network == "unixgram" {
		addr = u.Path
	}
	rep := &syslogReport{Label: c.label, Address: c.address, Format: c.format, Connections: c.connections,
		MessageBytes: c.size, Rate: c.rate, Sent: c.count, Counter: "none"}
	if network == "tcp" || network == "unix" {
		rep.Framing = c.framing
	}

	var counter syslogCounter
	switch {
	case c.natsURL != "":
		counter, err = newNATSCounter(c.natsURL, c.prefix+"."+bus.SanitizeToken(c.host)+".>", c.count)
		rep.Counter = "nats"
	case c.file != "":
		counter, err = newFileCounter(c.file, c.count)
		rep.Counter = "file"
	}
	if err != nil {
		return nil, err
	}
	if counter != nil {
		defer counter.close()
	}
	snmpBefore := udpRcvbufErrors()

	conns := make([]net.Conn, c.connections)
	for i := range conns {
		d := net.Dialer{Timeout: 5 * time.Second}
		if conns[i], err = d.DialContext(ctx, network, addr); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", c.address, err)
		}
		if tc, ok := conns[i].(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(1 << 20)
		}
		defer conns[i].Close()
	}
	datagram := network == "udp" || network == "unixgram"

	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, len(conns))
	for i, conn := range conns {
		n := c.count / c.connections
		first := i * n
		if i == len(conns)-1 {
			n = c.count - first
		}
		wg.Go(func() {
			if err := c.send(ctx, conn, datagram, first, n, start); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	sendEnd := time.Now()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	rep.SendSeconds = sendEnd.Sub(start).Seconds()
	rep.SendRate = float64(c.count) / rep.SendSeconds
	fmt.Fprintf(stderr, "sent %d messages in %.2fs (%.0f/s)\n", c.count, rep.SendSeconds, rep.SendRate)

	if counter != nil {
		res := counter.wait(ctx, c.timeout, c.idle, stderr)
		rep.Received, rep.Duplicates = res.received, res.duplicates
		rep.Lost = c.count - res.received
		if !res.last.IsZero() {
			rep.Seconds = res.last.Sub(start).Seconds()
			rep.Rate2E = float64(res.received) / rep.Seconds
		}
		if len(res.latencies) > 0 {
			l := res.latencies
			slices.Sort(l)
			pct := func(p float64) float64 { return float64(l[min(len(l)-1, int(p*float64(len(l))))]) / 1000 }
			rep.P50ms, rep.P90ms, rep.P99ms, rep.P999ms = pct(0.5), pct(0.9), pct(0.99), pct(0.999)
			rep.MaxMs = float64(l[len(l)-1]) / 1000
		}
	}
	if network == "udp" {
		rep.UDPRcvbufErrors = udpRcvbufErrors() - snmpBefore
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		rep.ClientCPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	if c.metrics != "" {
		rep.Server, err = scrapeSyslogMetrics(ctx, c.metrics)
		if err != nil {
			fmt.Fprintf(stderr, "metrics: %v\n", err)
		}
	}
	return rep, nil
}

// send writes n messages, sequence numbers first…first+n-1, pacing at
// rate/connections a second when rate is set.
func (c *syslogBench) send(ctx context.Context, conn net.Conn, datagram bool, first, n int, start time.Time) error {
	var w *bufio.Writer
	if !datagram {
		w = bufio.NewWriterSize(conn, 256<<10)
	}
	perConn := float64(c.rate) / float64(c.connections)
	g := newSyslogGen(c)
	body := make([]byte, 0, c.size+64)
	frame := make([]byte, 0, c.size+64)
	for i := range n {
		if perConn > 0 && i%64 == 0 {
			due := start.Add(time.Duration(float64(i) / perConn * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if w != nil {
					if err := w.Flush(); err != nil {
						return err
					}
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		body = g.message(body[:0], first+i)
		if datagram {
			if _, err := conn.Write(body); err != nil {
				if isNoBuffer(err) { // a unixgram receiver's queue is full: wait
					time.Sleep(100 * time.Microsecond)
					if _, err = conn.Write(body); err == nil {
						continue
					}
				}
				return fmt.Errorf("send: %w", err)
			}
			continue
		}
		frame = frame[:0]
		if c.framing == "octet" {
			frame = strconv.AppendInt(frame, int64(len(body)), 10)
			frame = append(frame, ' ')
			frame = append(frame, body...)
		} else {
			frame = append(frame, body...)
			frame = append(frame, '\n')
		}
		if _, err := w.Write(frame); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	if w != nil {
		return w.Flush()
	}
	return nil
}

func isNoBuffer(err error) bool {
	return strings.Contains(err.Error(), "no buffer space") || strings.Contains(err.Error(), "resource temporarily unavailable")
}

// syslogGen formats bench messages: a syslog header, then
// "bench <seq> <send unix ns> " and padding up to the size.
type syslogGen struct {
	c       *syslogBench
	pids    []string
	stampAt int64 // unix ms of stamp
	stamp   []byte
	pad     []byte
}

func newSyslogGen(c *syslogBench) *syslogGen {
	return &syslogGen{c: c, pad: []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", c.size/36+2))}
}

func (g *syslogGen) message(b []byte, seq int) []byte {
	c := g.c
	now := time.Now()
	svc := seq % c.services
	lvl := c.levels[(seq/c.services)%len(c.levels)]
	pri := 1*8 + int(lvl) // facility user
	if ms := now.UnixMilli(); ms != g.stampAt {
		g.stampAt = ms
		if c.format == "rfc5424" {
			g.stamp = now.UTC().AppendFormat(g.stamp[:0], "2006-01-02T15:04:05.000000Z07:00")
		} else {
			g.stamp = now.AppendFormat(g.stamp[:0], time.Stamp)
		}
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(pri), 10)
	b = append(b, '>')
	if c.format == "rfc5424" {
		b = append(b, "1 "...)
		b = append(b, g.stamp...)
		b = append(b, ' ')
		b = append(b, c.host...)
		b = append(b, " bench"...)
		b = strconv.AppendInt(b, int64(svc), 10)
		b = append(b, " 4242 - - "...)
	} else {
		b = append(b, g.stamp...)
		b = append(b, ' ')
		b = append(b, c.host...)
		b = append(b, " bench"...)
		b = strconv.AppendInt(b, int64(svc), 10)
		b = append(b, "[4242]: "...)
	}
	b = append(b, "bench "...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = append(b, ' ')
	if n := c.size - len(b); n > 0 {
		b = append(b, g.pad[:min(n, len(g.pad))]...)
	}
	return b
}

var benchMarker = []byte("bench ")

// parseBenchMessage finds "bench <seq> <ns> " in an entry's JSON or a
// line of a file.
func parseBenchMessage(data []byte) (seq int, ns int64, ok bool) {
	i := bytes.Index(data, benchMarker)
	for i >= 0 {
		rest := data[i+6:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			seq = seq*10 + int(rest[j]-'0')
			j++
		}
		if j > 0 && j < len(rest) && rest[j] == ' ' {
			k := j + 1
			for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
				ns = ns*10 + int64(rest[k]-'0')
				k++
			}
			if k > j+1 && k < len(rest) && rest[k] == ' ' {
				return seq, ns, true
			}
		}
		seq, ns = 0, 0
		next := bytes.Index(data[i+6:], benchMarker)
		if next < 0 {
			break
		}
		i += 6 + next
	}
	return 0, 0, false
}

// syslogCounter counts bench messages where they come out.
type syslogCounter interface {
	wait(ctx context.Context, timeout, idle time.Duration, progress io.Writer) counterResult
	close()
}

type counterResult struct {
	received, duplicates int
	last                 time.Time
	latencies            []int64 // microseconds
}

// udpRcvbufErrors reads the machine's UDP RcvbufErrors counter.
func udpRcvbufErrors() uint64 {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		for i, v := range strings.Fields(rest) {
			if i < len(names) && names[i] == "RcvbufErrors" {
				n, _ := strconv.ParseUint(v, 10, 64)
				return n
			}
		}
	}
	return 0
}

// fileCounter counts lines appended to a file after it started.
type fileCounter struct {
	path  string
	count int
	off   int64
}

func newFileCounter(path string, count int) (*fileCounter, error) {
	fc := &fileCounter{path: path, count: count}
	if fi, err := os.Stat(path); err == nil {
		fc.off = fi.Size()
	}
	return fc, nil
}

func (fc *fileCounter) close() {}

func (fc *fileCounter) wait(ctx context.Context, timeout, idle time.Duration, progress io.Writer) counterResult {
	var res counterResult
	seen := make([]uint64, fc.count/64+1)
	deadline := time.Now().Add(timeout)
	lastProgress := time.Now()
	buf := make([]byte, 1<<20)
	var partial []byte
	for res.received < fc.count && time.Now().Before(deadline) && time.Since(lastProgress) < idle && ctx.Err() == nil {
		f, err := os.Open(fc.path)
		if err == nil {
			_, _ = f.Seek(fc.off, io.SeekStart)
			for {
				n, err := f.Read(buf)
				fc.off += int64(n)
				data := append(partial, buf[:n]...)
				for {
					nl := bytes.IndexByte(data, '\n')
					if nl < 0 {
						break
					}
					if seq, _, ok := parseBenchMessage(data[:nl]); ok && seq < fc.count {
						if seen[seq/64]&(1<<(seq%64)) != 0 {
							res.duplicates++
						} else {
							seen[seq/64] |= 1 << (seq % 64)
							res.received++
						}
						res.last = time.Now()
						lastProgress = res.last
					}
					data = data[nl+1:]
				}
				partial = append(partial[:0], data...)
				if err != nil || n == 0 {
					break
				}
			}
			f.Close()
		}
		if res.received < fc.count {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return res
}
