//go:build cgo && linux

package sdj_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/logstream/logstream/ingest/journald/internal/sdj"
)

// BenchmarkRead reads the journal in $LOGSTREAM_SDJ_BENCH_DIR with the
// source's field list: the cost of the C side alone.
func BenchmarkRead(b *testing.B) {
	dir := os.Getenv("LOGSTREAM_SDJ_BENCH_DIR")
	if dir == "" {
		b.Skip("set LOGSTREAM_SDJ_BENCH_DIR to a journal directory")
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
