//go:build cgo && linux

package sdj_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/logstream/logstream/ingest/journald/internal/sdj"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// waitCount waits until the journal in dir holds n entries that match.
func waitCount(dir, match string, n int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	j, err := sdj.OpenDirectory(dir)
	if err != nil {
		return err
	}
	defer j.Close()
	if err := j.AddMatch(match); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	got := 0
	deadline := time.Now().Add(2 * time.Minute)
	for got < n {
		res, err := j.Read(buf, 4096)
		if err != nil {
			return err
		}
		got += res.N
		if res.EOF && got < n {
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d entries", got, n)
			}
			if _, err := j.Wait(100 * time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkRead reads a journal with the source's field list: the cost
// of the C side alone. The journal is $LOGSTREAM_SDJ_BENCH_DIR, or 50,000
// entries written into a private journald.
func BenchmarkRead(b *testing.B) {
	dir := os.Getenv("LOGSTREAM_SDJ_BENCH_DIR")
	if dir == "" {
		jd := journaldtest.Start(b)
		for i := range 50000 {
			err := jd.Send(fmt.Sprintf("MESSAGE=request %d handled in %dms status=200", i, i%997), "PRIORITY=6",
				"SYSLOG_IDENTIFIER=bench", "CODE_FILE=src/h.go", "CODE_LINE=120", "CODE_FUNC=handle", "TEST_ID=sdjbench")
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := waitCount(jd.Dir, "TEST_ID=sdjbench", 50000); err != nil {
			b.Fatal(err)
		}
		jd.Stop()
		dir = jd.Dir
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	names := []string{"MESSAGE", "PRIORITY", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "_SYSTEMD_UNIT",
		"_SYSTEMD_USER_UNIT", "_COMM", "_HOSTNAME", "_PID", "SYSLOG_PID", "_SOURCE_REALTIME_TIMESTAMP",
		"_BOOT_ID", "_TRANSPORT", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "_STREAM_ID"}
	buf := make([]byte, 1<<20)
	total := 0
	for b.Loop() {
		j, err := sdj.OpenDirectory(dir)
		if err != nil {
			b.Fatal(err)
		}
		j.SetFields(names, false)
		for {
			res, err := j.Read(buf, 256)
			if err != nil {
				b.Fatal(err)
			}
			total += res.N
			if res.EOF {
				break
			}
		}
		j.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/entry")
}
