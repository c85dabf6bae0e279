package main

import (
	"context"

	"github.com/logstream/logstream/ingest/journald"
)

func (d *daemon) addJournald() error {
	if !d.cfg.Journald.Enabled {
		return nil
	}
	s, err := journald.New(d.cfg.Journald, d.cfg.StateDir, d.log.With("component", "journald"), d.reg)
	if err != nil {
		return err
	}
	pub := d.bus.Publisher()
	d.sources = append(d.sources, runner{name: "journald", run: func(ctx context.Context) error { return s.Run(ctx, pub) }})
	return nil
}
