package main

import (
	"context"

	"github.com/logstream/logstream/ingest/syslog"
)

func (d *daemon) addSyslog() error {
	if !d.cfg.Syslog.Enabled {
		return nil
	}
	s, err := syslog.New(d.cfg.Syslog, d.log.With("component", "syslog"), d.reg)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, s.Close)
	pub := d.bus.Publisher()
	d.sources = append(d.sources, runner{name: "syslog", run: func(ctx context.Context) error { return s.Run(ctx, pub) }})
	return nil
}
