package main

import (
	"context"

	"github.com/logstream/logstream/ingest/journald"
)

// addJournald builds the journald source. With enabled: auto (the
// default) it is on when the journal is there to read; New logs one line
// when it is not, or when the build has no cgo.
func (d *daemon) addJournald() error {
	if d.cfg.Journald.Enabled == journald.Off {
		return nil
	}
	s, err := journald.New(journaldConfig(&d.cfg), d.cfg.StateDir, d.log.With("component", "journald"), d.reg)
	if err != nil {
		return err
	}
	if !s.Enabled() {
		return nil
	}
	pub := d.bus.Publisher()
	d.sources = append(d.sources, runner{name: "journald", run: func(ctx context.Context) error { return s.Run(ctx, pub) }})
	return nil
}

// journaldConfig returns the journald section with the defaults that
// depend on the bus filled in: reader_nice by bus.jetstream.
func journaldConfig(cfg *Config) journald.Config {
	c := cfg.Journald
	c.SetReaderNiceDefault(cfg.Bus.UseJetStream())
	return c
}
