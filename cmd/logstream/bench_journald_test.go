package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// TestBenchJournald runs logstream bench journald on a small journal: every
// case reads every entry.
func TestBenchJournald(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := runBenchJournald(ctx, []string{"-entries", "3000", "-json"}, &out, &errOut); err != nil {
		t.Fatalf("bench journald: %v\n%s", err, errOut.String())
	}
	var res []journaldBenchCase
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output: %v\n%s", err, out.String())
	}
	if len(res) != len(journaldBenchCases) {
		t.Fatalf("%d cases, want %d: %s", len(res), len(journaldBenchCases), out.String())
	}
	for i, r := range res {
		if r.Name != journaldBenchCases[i] {
			t.Errorf("case %d is %q, want %q", i, r.Name, journaldBenchCases[i])
		}
		if r.Entries != 3000 || r.Rate <= 0 || r.CPUPerUsec <= 0 {
			t.Errorf("%+v", r)
		}
	}
}

// TestBenchJournaldCases runs only the cases -cases names, in its order,
// in every round, and refuses a name it does not know; -reader-nice takes
// 0-19, or -1 (the default: the daemon's); -cpuprofile and -trace write a
// profile and an execution trace of every case and round.
func TestBenchJournaldCases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	prof := t.TempDir()
	if err := runBenchJournald(ctx, []string{"-entries", "2000", "-rounds", "2", "-cases", "bare-jetstream,source-jetstream,bare-jetstream-again", "-reader-nice", "0", "-json",
		"-cpuprofile", filepath.Join(prof, "cpu"), "-trace", filepath.Join(prof, "trace")}, &out, &errOut); err != nil {
		t.Fatalf("bench journald: %v\n%s", err, errOut.String())
	}
	var res []journaldBenchCase
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output: %v\n%s", err, out.String())
	}
	want := []string{"bare-jetstream", "source-jetstream", "bare-jetstream-again", "bare-jetstream", "source-jetstream", "bare-jetstream-again"}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(res), len(want), out.String())
	}
	for i, r := range res {
		if r.Name != want[i] || r.Entries != 2000 || r.Rate <= 0 {
			t.Errorf("result %d: %+v, want case %s", i, r, want[i])
		}
	}
	// The bare publisher's messages are captured first; then the default
	// warm-up round runs every case once more, uncounted and unprofiled.
	if got := strings.Count(errOut.String(), "(warm-up, not counted)"); got != 3 {
		t.Errorf("%d warm-up lines, want 3:\n%s", got, errOut.String())
	}
	if c, w := strings.Index(errOut.String(), "captured 2000 messages for the bare publisher\n"), strings.Index(errOut.String(), "(warm-up"); c < 0 || c > w {
		t.Errorf("the capture is not reported before the warm-up round:\n%s", errOut.String())
	}
	for _, c := range want {
		for _, p := range []struct{ prefix, magic string }{{"cpu", "\x1f\x8b"}, {"trace", "go 1."}} {
			f := filepath.Join(prof, p.prefix+"."+c+".2")
			b, err := os.ReadFile(f)
			if err != nil || !bytes.HasPrefix(b, []byte(p.magic)) {
				t.Errorf("%s: %v, %d bytes, want a file starting with %q", f, err, len(b), p.magic)
			}
			if f := filepath.Join(prof, p.prefix+"."+c+".3"); fileExists(f) {
				t.Errorf("%s written: a profile of the warm-up round", f)
			}
		}
	}
	for _, bad := range [][]string{{"-rounds", "0"}, {"-warmup", "-1"}} {
		err := runBenchJournald(ctx, bad, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s %s: %v, want an error naming %s", bad[0], bad[1], err, bad[0])
		}
	}
	for _, bad := range []string{"source-jetstream,nope", "source-core,source-core", ""} {
		err := runBenchJournald(ctx, []string{"-cases", bad}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "-cases") {
			t.Errorf("-cases %q: %v, want an error naming -cases", bad, err)
		}
	}
	for _, bad := range []string{"-2", "20"} {
		err := runBenchJournald(ctx, []string{"-reader-nice", bad}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "-reader-nice") {
			t.Errorf("-reader-nice %s: %v, want an error naming -reader-nice", bad, err)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// niceProbe is a sink that records, at the first entry, the highest nice
// value among the process's threads.
type niceProbe struct {
	t       *testing.T
	once    sync.Once
	maxNice int
}

func (p *niceProbe) Publish(context.Context, bus.Entry) error {
	p.once.Do(func() { p.maxNice = maxThreadNice(p.t) })
	return nil
}
func (*niceProbe) Flush(context.Context) error { return nil }

// maxThreadNice returns the highest nice value among this process's
// threads.
func maxThreadNice(t *testing.T) int {
	top := -20
	for _, n := range journaldtest.ThreadNices(t) {
		top = max(top, n)
	}
	return top
}

// TestBenchJournaldReaderNice checks that the source cases read as the
// daemon does in their mode: -reader-nice -1 gives the JetStream cases the
// daemon's JetStream default, and the core-NATS case 0; a value given
// holds in both modes.
func TestBenchJournaldReaderNice(t *testing.T) {
	if own := maxThreadNice(t); own != 0 {
		t.Skipf("the tests run at nice %d; the reader's default is relative to 0", own)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jd, err := benchJournaldWrite(ctx, 300, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer jd.Close()
	for _, c := range []struct {
		readerNice int
		jetStream  bool
		want       int
	}{{-1, true, journald.DefaultReaderNice}, {-1, false, 0}, {3, true, 3}, {3, false, 3}} {
		p := &niceProbe{t: t}
		if _, _, err := runJournaldSource(ctx, jd.Dir, "TEST_ID=bench", 300, c.readerNice, c.jetStream, p); err != nil {
			t.Fatal(err)
		}
		if p.maxNice != c.want {
			t.Errorf("-reader-nice %d, JetStream %v: the reading thread at nice %d, want %d", c.readerNice, c.jetStream, p.maxNice, c.want)
		}
	}
}

// TestRoundRatios: the ratios pair each round's rates, their median and
// their mean with Student's t interval.
func TestRoundRatios(t *testing.T) {
	var res []journaldBenchCase
	for _, r := range [][2]float64{{90, 100}, {50, 100}, {95, 100}, {80, 100}} {
		res = append(res, journaldBenchCase{Name: "a", Rate: r[0]}, journaldBenchCase{Name: "b", Rate: r[1]})
	}
	ratios := roundRatios(res, "a", "b")
	if got := median(ratios); math.Abs(got-0.85) > 1e-9 {
		t.Errorf("median of 0.9, 0.5, 0.95, 0.8 = %v, want 0.85", got)
	}
	if got := median(roundRatios(res[:6], "a", "b")); math.Abs(got-0.9) > 1e-9 {
		t.Errorf("median of 0.9, 0.5, 0.95 = %v, want 0.9", got)
	}
	if got := roundRatios(res, "a", "c"); len(got) != 0 || median(got) != 0 {
		t.Errorf("no rounds of c: %v, median %v; want none, 0", got, median(got))
	}
	// mean 0.7875, standard error sqrt(0.121875/3/4) = 0.100778, t(3) 3.182.
	mean, lo, hi, ok := meanInterval(ratios)
	if !ok || math.Abs(mean-0.7875) > 1e-9 || math.Abs(lo-(0.7875-0.320676)) > 1e-5 || math.Abs(hi-(0.7875+0.320676)) > 1e-5 {
		t.Errorf("meanInterval(%v) = %v %v %v %v, want 0.7875 0.466824 1.108176 true", ratios, mean, lo, hi, ok)
	}
	// 40 rounds: the normal quantile; the interval is symmetric.
	var many []float64
	for i := range 40 {
		many = append(many, 0.9+float64(i%2)/10)
	}
	mean, lo, hi, _ = meanInterval(many)
	if h := 1.96 * math.Sqrt(0.01*40/4/39/40); math.Abs(mean-0.95) > 1e-9 || math.Abs(hi-mean-h) > 1e-9 || math.Abs(mean-lo-h) > 1e-9 {
		t.Errorf("40 rounds: %v %v %v, want 0.95 ± %v", mean, lo, hi, h)
	}
	if _, _, _, ok := meanInterval([]float64{0.9}); ok {
		t.Error("one round: an interval, want none")
	}
}

// TestJournaldSummary: the text summary names every case run and each
// ratio whose two cases ran, with the A/A line for bare-jetstream-again.
func TestJournaldSummary(t *testing.T) {
	var res []journaldBenchCase
	for _, r := range [][3]float64{{90, 100, 102}, {92, 100, 98}, {95, 100, 100}} {
		res = append(res, journaldBenchCase{Name: "source-jetstream", Rate: r[0]},
			journaldBenchCase{Name: "bare-jetstream", Rate: r[1]},
			journaldBenchCase{Name: "bare-jetstream-again", Rate: r[2]})
	}
	var out strings.Builder
	printJournaldSummary(&out, res, []string{"source-jetstream", "bare-jetstream", "bare-jetstream-again"}, "/j", 200, 3)
	got := out.String()
	for _, want := range []string{
		"journal: /j, 200 entries, 3 round(s) after the warm-up",
		"source-jetstream / bare-jetstream      = 0.95 best/best, 0.92 median of the rounds' ratios, mean 0.923 (95%: 0.861-0.986) (target >= 0.9",
		"bare-jetstream-again / bare-jetstream  = 1.02 best/best, 1.00 median of the rounds' ratios, mean 1.000 (95%: 0.950-1.050) (A/A",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "journalctl-export") || strings.Contains(got, "read-bare-jetstream") {
		t.Errorf("summary names cases that did not run:\n%s", got)
	}
}
