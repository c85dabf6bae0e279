package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/busbench"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

func init() {
	benchmarks["journald"] = command{"journald source: entries/s from a journal vs journalctl -o export (core NATS) and vs a bare JetStream publisher", runBenchJournald}
}

// The cases of logstream bench journald, in the order they run.
var journaldBenchCases = []string{"journalctl-export", "source-core", "source-jetstream", "bare-jetstream", "read-bare-jetstream"}

var journaldBenchHelp = map[string]string{
	"journalctl-export":    "journalctl -o export > /dev/null",
	"source-core":          "the source publishing to core NATS",
	"source-jetstream":     "the source publishing to JetStream (the bus publisher)",
	"bare-jetstream":       "nats.go's JetStream async publisher, the same messages from memory",
	"read-bare-jetstream":  "the same journal reading and entries, published by nats.go's JetStream async publisher instead of the bus publisher",
	"bare-jetstream-again": "bare-jetstream once more: against bare-jetstream, two runs of the same thing (an A/A comparison: the machine's noise)",
}

// journaldBenchExtraCases run only when -cases names them.
var journaldBenchExtraCases = []string{"bare-jetstream-again"}

// journaldBenchCase is one measured case of logstream bench journald.
type journaldBenchCase struct {
	Name       string  `json:"name"`
	Entries    int     `json:"entries"`
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"rate"`         // entries a second
	CPUPerUsec float64 `json:"cpu_us_entry"` // CPU time (this process and its children) an entry, µs
}

var benchJournaldServices = []string{"nginx", "sshd", "cron", "postgres", "dockerd", "kubelet", "app-api", "app-worker",
	"systemd-logind", "NetworkManager", "chronyd", "rsyslogd", "containerd", "haproxy", "redis", "grafana",
	"prometheus", "node_exporter", "sudo", "kernel"}

// runBenchJournald writes a journal into a private systemd-journald (or
// takes -dir), stops it, and measures on the same files: journalctl -o
// export to /dev/null; the source publishing to core NATS and to
// JetStream (embedded server); nats.go's JetStream async publisher sending
// the same messages from memory (no reading at all); and the source's
// reading with nats.go's async publisher in place of the bus publisher
// (the same reading, none of the bus publisher's ordering, window and
// retries).
func runBenchJournald(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstream bench journald", flag.ContinueOnError)
	fs.SetOutput(stderr)
	entries := fs.Int("entries", 200000, "entries to write into a private journald (root needed)")
	dir := fs.String("dir", "", "read this journal directory instead of writing one (every entry in it is read)")
	rounds := fs.Int("rounds", 1, "times to run every case")
	warmup := fs.Int("warmup", 1, "rounds to run first and not count: the first round after writing the journal and capturing the bare publisher's messages runs slower, the bare publisher most")
	jsonOut := fs.Bool("json", false, "print the results as JSON")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of each case and round to this prefix: PREFIX.CASE.ROUND")
	traceOut := fs.String("trace", "", "write a Go execution trace of each case and round (go tool trace) to this prefix: PREFIX.CASE.ROUND")
	caseList := fs.String("cases", strings.Join(journaldBenchCases, ","), "comma-separated cases to run, in this order within each round")
	readerNice := fs.Int("reader-nice", -1, "the source's journald.reader_nice (0-19); -1: the daemon's default (10 publishing to JetStream, 0 to core NATS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cases, err := selectJournaldBenchCases(*caseList)
	if err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds: %d, want 1 or more", *rounds)
	}
	if *warmup < 0 {
		return fmt.Errorf("-warmup: %d, want 0 or more", *warmup)
	}
	if *readerNice < -1 || *readerNice > 19 {
		return fmt.Errorf("-reader-nice: %d out of range 0-19 (or -1 for the default)", *readerNice)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		return errors.New("journalctl not found: install the Debian package systemd")
	}
	match := ""
	n := 0
	if *dir == "" {
		jd, err := benchJournaldWrite(ctx, *entries, stderr)
		if err != nil {
			return err
		}
		defer jd.Close()
		*dir, match, n = jd.Dir, "TEST_ID=bench", *entries
	} else {
		if n, err = countJournal(ctx, *dir); err != nil {
			return fmt.Errorf("count the entries in %s: %w", *dir, err)
		}
	}
	if n == 0 {
		return fmt.Errorf("no entries in %s", *dir)
	}
	var results []journaldBenchCase
	// The bare publisher's messages are captured before the first round,
	// so that the warm-up runs every case with them in memory, as the
	// counted rounds do.
	var msgs []*busbench.Msg
	if slices.Contains(cases, "bare-jetstream") || slices.Contains(cases, "bare-jetstream-again") {
		if msgs, err = benchJournaldCapture(ctx, *dir, match, n, *readerNice); err != nil {
			return fmt.Errorf("capture the bare publisher's messages: %w", err)
		}
		fmt.Fprintf(stderr, "captured %d messages for the bare publisher\n", len(msgs))
	}
	for i := range *warmup + *rounds {
		round := i - *warmup // negative: a warm-up round
		for _, c := range cases {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var d, cpu time.Duration
			quiesce()
			stopProfile := func() {}
			if round >= 0 {
				if stopProfile, err = startProfile(*cpuprofile, *traceOut, c, round); err != nil {
					return err
				}
			}
			switch c {
			case "journalctl-export":
				d, cpu, err = benchJournalctl(ctx, *dir, match)
			case "source-core", "source-jetstream":
				d, cpu, err = benchJournaldSource(ctx, *dir, match, n, *readerNice, c == "source-jetstream")
			case "bare-jetstream", "bare-jetstream-again":
				d, cpu, err = benchJournaldBare(ctx, msgs)
			case "read-bare-jetstream":
				d, cpu, err = benchJournaldReadBare(ctx, *dir, match, n, *readerNice)
			}
			stopProfile()
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			note := ""
			if round < 0 {
				note = "  (warm-up, not counted)"
			} else {
				results = append(results, journaldBenchCase{Name: c, Entries: n, Seconds: d.Seconds(),
					Rate: float64(n) / d.Seconds(), CPUPerUsec: float64(cpu.Microseconds()) / float64(n)})
			}
			fmt.Fprintf(stderr, "%-18s %10.0f entries/s  %5.1f µs CPU/entry%s\n", c, float64(n)/d.Seconds(), float64(cpu.Microseconds())/float64(n), note)
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	printJournaldSummary(stdout, results, cases, *dir, n, *rounds)
	return nil
}

// printJournaldSummary prints the best rate of each case, then each
// target's ratio: best over best, and the median and mean of the rounds'
// ratios, the mean with its 95% interval.
func printJournaldSummary(w io.Writer, results []journaldBenchCase, cases []string, dir string, n, rounds int) {
	best := map[string]float64{}
	for _, r := range results {
		best[r.Name] = max(best[r.Name], r.Rate)
	}
	fmt.Fprintf(w, "journal: %s, %d entries, %d round(s) after the warm-up; best of each:\n", dir, n, rounds)
	for _, c := range cases {
		fmt.Fprintf(w, "  %-20s %10.0f entries/s  %s\n", c, best[c], journaldBenchHelp[c])
	}
	for _, r := range []struct{ a, b, note string }{
		{"source-core", "journalctl-export", "target >= 1.0"},
		{"source-jetstream", "bare-jetstream", "target >= 0.9; the bare publisher reads nothing"},
		{"source-jetstream", "read-bare-jetstream", "the same reading on both sides"},
		{"bare-jetstream-again", "bare-jetstream", "A/A: the same publisher twice, 1.0 but for the noise"},
	} {
		if best[r.a] == 0 || best[r.b] == 0 {
			continue
		}
		ratios := roundRatios(results, r.a, r.b)
		fmt.Fprintf(w, "%-38s = %.2f best/best, %.2f median of the rounds' ratios", r.a+" / "+r.b, best[r.a]/best[r.b], median(ratios))
		if mean, lo, hi, ok := meanInterval(ratios); ok {
			fmt.Fprintf(w, ", mean %.3f (95%%: %.3f-%.3f)", mean, lo, hi)
		}
		fmt.Fprintf(w, " (%s)\n", r.note)
	}
}

// selectJournaldBenchCases parses -cases: known names, each once.
func selectJournaldBenchCases(list string) ([]string, error) {
	var cases []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if _, ok := journaldBenchHelp[c]; !ok {
			return nil, fmt.Errorf("-cases: unknown case %q (known: %s)", c, strings.Join(slices.Concat(journaldBenchCases, journaldBenchExtraCases), ", "))
		}
		if slices.Contains(cases, c) {
			return nil, fmt.Errorf("-cases: %q given twice", c)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// roundRatios returns a's rate over b's in each round that ran both.
func roundRatios(results []journaldBenchCase, a, b string) []float64 {
	var ra, rb, ratios []float64
	for _, r := range results {
		switch r.Name {
		case a:
			ra = append(ra, r.Rate)
		case b:
			rb = append(rb, r.Rate)
		}
	}
	for i := range min(len(ra), len(rb)) {
		ratios = append(ratios, ra[i]/rb[i])
	}
	return ratios
}

// median returns the median of xs, 0 for none: less moved by one
// disturbed round than best over best.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if k := len(s); k%2 == 0 {
		return (s[k/2-1] + s[k/2]) / 2
	}
	return s[len(s)/2]
}

// tQuantile975 holds Student's t 97.5% quantiles for 1 to 30 degrees of
// freedom; beyond, the normal 1.96 is close enough.
var tQuantile975 = [...]float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
	2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
	2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}

// meanInterval returns the mean of xs and its 95% confidence interval
// (Student's t: the rounds are few); ok is false for fewer than two.
func meanInterval(xs []float64) (mean, lo, hi float64, ok bool) {
	n := len(xs)
	if n < 2 {
		return 0, 0, 0, false
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(n)
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	t := 1.96
	if n-1 <= len(tQuantile975) {
		t = tQuantile975[n-2]
	}
	h := t * math.Sqrt(ss/float64(n-1)/float64(n))
	return mean, mean - h, mean + h, true
}

// startProfile writes a CPU profile to cpuPrefix.name.round and an
// execution trace to tracePrefix.name.round until stop is called; nothing
// for a prefix that is "".
func startProfile(cpuPrefix, tracePrefix, name string, round int) (stop func(), err error) {
	var files []*os.File
	stop = func() {
		if cpuPrefix != "" {
			pprof.StopCPUProfile()
		}
		if tracePrefix != "" {
			trace.Stop()
		}
		for _, f := range files {
			f.Close()
		}
	}
	for _, p := range []struct {
		prefix string
		start  func(io.Writer) error
	}{{cpuPrefix, pprof.StartCPUProfile}, {tracePrefix, trace.Start}} {
		if p.prefix == "" {
			continue
		}
		f, err := os.Create(fmt.Sprintf("%s.%s.%d", p.prefix, name, round+1))
		if err != nil {
			stop()
			return nil, err
		}
		files = append(files, f)
		if err := p.start(f); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// quiesce starts a case on a quiet machine: the previous case's stream
// files written back to disk, its garbage collected.
func quiesce() {
	syscall.Sync()
	runtime.GC()
}

func benchJournaldWrite(ctx context.Context, n int, stderr io.Writer) (*journaldtest.Journald, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("writing the benchmark journal needs root (a private systemd-journald); or give -dir")
	}
	bin := ""
	for _, p := range []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"} {
		if _, err := os.Stat(p); err == nil {
			bin = p
		}
	}
	if bin == "" {
		return nil, errors.New("systemd-journald not found: install the Debian package systemd")
	}
	jd, err := journaldtest.New(bin, journaldtest.Options{SystemMaxFileSize: "64M"})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for i := range n {
		svc := benchJournaldServices[i%len(benchJournaldServices)]
		err := jd.Send(
			fmt.Sprintf("MESSAGE=%s: request %d handled in %dms status=200 path=/api/v1/items/%d user=u%d", svc, i, i%997, i*7, i%1000),
			"PRIORITY="+strconv.Itoa(3+i%5), "SYSLOG_IDENTIFIER="+svc, "SYSLOG_FACILITY=3",
			"CODE_FILE=src/"+svc+"/handler.go", "CODE_LINE="+strconv.Itoa(100+i%50), "CODE_FUNC=handle",
			"TEST_ID=bench", "SEQ="+strconv.Itoa(i))
		if err != nil {
			jd.Close()
			return nil, err
		}
	}
	// Wait until journald has written the last one, then stop it: every
	// case reads the same, still files.
	want := "SEQ=" + strconv.Itoa(n-1) + "\n"
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, _ := exec.CommandContext(ctx, "journalctl", "-D", jd.Dir, "-n", "1", "-o", "export", "TEST_ID=bench").Output()
		if strings.Contains(string(out), want) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			jd.Close()
			return nil, fmt.Errorf("journald did not store %d entries in 5 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	jd.Stop()
	fmt.Fprintf(stderr, "journal: %d entries written in %v into %s\n", n, time.Since(start).Round(time.Millisecond), jd.Dir)
	return jd, nil
}

// countJournal counts the entries in dir: journalctl -o json writes one
// line an entry.
func countJournal(ctx context.Context, dir string) (int, error) {
	cmd := exec.CommandContext(ctx, "journalctl", "-D", dir, "-q", "-o", "json", "--output-fields=_BOOT_ID")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n := 0
	buf := make([]byte, 1<<16)
	for {
		k, err := out.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			break
		}
	}
	return n, cmd.Wait()
}

// journaldCPUNow is the CPU time of this process and its waited-for children.
func journaldCPUNow() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

func benchJournalctl(ctx context.Context, dir, match string) (time.Duration, time.Duration, error) {
	args := []string{"-D", dir, "-o", "export"}
	if match != "" {
		args = append(args, match)
	}
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer devnull.Close()
	cmd.Stdout = devnull
	c0, t0 := journaldCPUNow(), time.Now()
	err = cmd.Run()
	return time.Since(t0), journaldCPUNow() - c0, err
}

// journaldCountingSink passes entries on and closes done after n.
type journaldCountingSink struct {
	journald.Sink
	n, target int64
	done      chan struct{}
}

func (c *journaldCountingSink) Publish(ctx context.Context, e bus.Entry) error {
	if err := c.Sink.Publish(ctx, e); err != nil {
		return err
	}
	if atomic.AddInt64(&c.n, 1) == c.target {
		close(c.done)
	}
	return nil
}

// runJournaldSource reads the journal from its head into sink until n
// entries were published and sink.Flush returned. readerNice -1 gives
// reader_nice the daemon's default for the bus mode jetStream, as
// logstreamd does.
func runJournaldSource(ctx context.Context, dir, match string, n, readerNice int, jetStream bool, sink journald.Sink) (time.Duration, time.Duration, error) {
	state, err := os.MkdirTemp("", "logstream-bench-journald-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(state)
	cfg := journald.DefaultConfig()
	cfg.Enabled, cfg.Path, cfg.Start, cfg.ExcludeUnits = journald.On, dir, "head", []string{}
	if readerNice >= 0 {
		cfg.ReaderNice = &readerNice
	}
	cfg.SetReaderNiceDefault(jetStream)
	if match != "" {
		cfg.Matches.Fields = []string{match}
	}
	src, err := journald.New(cfg, state, nil, nil)
	if err != nil {
		return 0, 0, err
	}
	cs := &journaldCountingSink{Sink: sink, target: int64(n), done: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	c0, t0 := journaldCPUNow(), time.Now()
	go func() { errc <- src.Run(rctx, cs) }()
	select {
	case <-cs.done:
	case err := <-errc:
		return 0, 0, fmt.Errorf("the source stopped after %d of %d entries: %v", atomic.LoadInt64(&cs.n), n, err)
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	if err := sink.Flush(ctx); err != nil {
		return 0, 0, err
	}
	d, cpu := time.Since(t0), journaldCPUNow()-c0
	cancel()
	return d, cpu, <-errc
}

func openJournaldBenchBus(ctx context.Context, jetStream bool, listen string) (*bus.Bus, func(), error) {
	state, err := os.MkdirTemp("", "logstream-bench-journald-bus-")
	if err != nil {
		return nil, nil, err
	}
	cfg := bus.Config{JetStream: &jetStream}
	cfg.Embedded.Listen = listen
	cfg.Stream.MaxBytes = 4 << 30
	b, err := bus.Open(ctx, cfg, state, nil, nil)
	if err != nil {
		os.RemoveAll(state)
		return nil, nil, err
	}
	return b, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Publisher().Close(cctx)
		b.Close()
		os.RemoveAll(state)
	}, nil
}

func benchJournaldSource(ctx context.Context, dir, match string, n, readerNice int, jetStream bool) (time.Duration, time.Duration, error) {
	// Listen on loopback as the daemon does by default: its connections
	// then use TCP, which moves entries faster than the in-process pipe.
	b, closeBus, err := openJournaldBenchBus(ctx, jetStream, "127.0.0.1:-1")
	if err != nil {
		return 0, 0, err
	}
	defer closeBus()
	return runJournaldSource(ctx, dir, match, n, readerNice, jetStream, b.Publisher())
}

// journaldCaptureSink keeps the messages the bus would send for each entry.
type journaldCaptureSink struct{ msgs []*busbench.Msg }

func (c *journaldCaptureSink) Publish(_ context.Context, e bus.Entry) error {
	c.msgs = append(c.msgs, busbench.NewMsg(bus.EntrySubject(bus.DefaultPrefix, &e), e.ID, e.AppendJSON(nil)))
	return nil
}
func (*journaldCaptureSink) Flush(context.Context) error { return nil }

func benchJournaldCapture(ctx context.Context, dir, match string, n, readerNice int) ([]*busbench.Msg, error) {
	c := &journaldCaptureSink{}
	if _, _, err := runJournaldSource(ctx, dir, match, n, readerNice, true, c); err != nil {
		return nil, err
	}
	return c.msgs, nil
}

// openJournaldBare starts a fresh embedded server with JetStream and
// connects nats.go's JetStream async publisher to it over TCP, with 8192
// pending (the bus publisher's default window).
func openJournaldBare(ctx context.Context) (*busbench.AsyncPublisher, func(), error) {
	b, closeBus, err := openJournaldBenchBus(ctx, true, "127.0.0.1:-1")
	if err != nil {
		return nil, nil, err
	}
	p, err := busbench.NewAsyncPublisher(b.ClientURL(), "logstream-bench-journald", 8192, 0)
	if err != nil {
		closeBus()
		return nil, nil, err
	}
	return p, func() { p.Close(); closeBus() }, nil
}

// benchJournaldBare publishes msgs with nats.go's JetStream async
// publisher and waits for every acknowledgement.
func benchJournaldBare(ctx context.Context, msgs []*busbench.Msg) (time.Duration, time.Duration, error) {
	p, closeBare, err := openJournaldBare(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer closeBare()
	c0, t0 := journaldCPUNow(), time.Now()
	for _, m := range msgs {
		if err := p.Publish(m); err != nil {
			return 0, 0, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.Wait(wctx); err != nil {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		return 0, 0, errors.New("acknowledgements missing after 5 minutes")
	}
	return time.Since(t0), journaldCPUNow() - c0, nil
}

// journaldBareSink publishes entries with nats.go's JetStream async
// publisher: what a program reading the journal would do without the bus
// publisher (no ordering across retries, no window of its own, no
// resending).
type journaldBareSink struct{ p *busbench.AsyncPublisher }

func (s journaldBareSink) Publish(_ context.Context, e bus.Entry) error {
	return s.p.Publish(busbench.NewMsg(bus.EntrySubject(bus.DefaultPrefix, &e), e.ID, e.AppendJSON(nil)))
}

func (s journaldBareSink) Flush(ctx context.Context) error { return s.p.Wait(ctx) }

// benchJournaldReadBare reads the journal as the source does and
// publishes with nats.go's async publisher.
func benchJournaldReadBare(ctx context.Context, dir, match string, n, readerNice int) (time.Duration, time.Duration, error) {
	p, closeBare, err := openJournaldBare(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer closeBare()
	return runJournaldSource(ctx, dir, match, n, readerNice, true, journaldBareSink{p})
}
