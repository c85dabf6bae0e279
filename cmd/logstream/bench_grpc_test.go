package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestBenchGRPC runs a short logstream bench grpc against a started
// logstreamd and checks the table.
func TestBenchGRPC(t *testing.T) {
	_, daemon := tailBinaries(t)
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"bench", "grpc", "-logstreamd", daemon, "-streams", "1,3", "-entries", "2000", "-rate", "500", "-duration", "1s"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	t.Logf("\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 rows:\n%s", out.String())
	}
	row := regexp.MustCompile(`^\s*StreamLog(s|Batches)\s+[13]\s+2000\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+ms\s+\d+$`)
	for _, l := range lines[1:] {
		if !row.MatchString(l) {
			t.Errorf("row %q", l)
		}
	}
}
