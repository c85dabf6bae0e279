package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
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
