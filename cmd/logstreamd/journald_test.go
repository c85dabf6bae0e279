package main

import (
	"testing"

	"github.com/logstream/logstream/ingest/journald"
)

// TestJournaldReaderNiceDefault: the daemon gives the journald source its
// reader_nice from the bus mode when the config leaves it unset
// (DefaultReaderNice with JetStream, 0 with core NATS), and keeps a set
// value in both modes.
func TestJournaldReaderNiceDefault(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", t.TempDir())
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"jetstream default", "", journald.DefaultReaderNice},
		{"jetstream explicit", "bus:\n  jetstream: true\n", journald.DefaultReaderNice},
		{"core", "bus:\n  jetstream: false\n", 0},
		{"jetstream set", "journald:\n  reader_nice: 3\n", 3},
		{"jetstream set 0", "journald:\n  reader_nice: 0\n", 0},
		{"core set", "bus:\n  jetstream: false\njournald:\n  reader_nice: 5\n", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(writeFile(t, c.body))
			if err != nil {
				t.Fatal(err)
			}
			got := journaldConfig(&cfg).ReaderNice
			if got == nil || *got != c.want {
				t.Fatalf("reader_nice %v, want %d", got, c.want)
			}
			if cfg.Journald.ReaderNice != nil && c.body == "" {
				t.Error("journaldConfig changed the daemon's own config")
			}
		})
	}
}
