package main

import (
	"context"

	"github.com/logstream/logstream/delivery/grpc"
)

// addGRPC binds the gRPC listener (a port in use fails start-up) and
// serves the v1 and legacy LogService, health and reflection. On
// shutdown, after the publisher drained, every open stream sends what
// its queue holds and ends with UNAVAILABLE, within grpc.shutdown_grace
// and the daemon's shutdown_timeout.
func (d *daemon) addGRPC() error {
	if d.cfg.GRPC.Listen == "" {
		return nil
	}
	s, err := grpc.New(d.cfg.GRPC, d.bus, d.verifier, d.log.With("component", "grpc"), d.reg)
	if err != nil {
		return err
	}
	d.onShutdown = append(d.onShutdown, func(ctx context.Context) { s.Shutdown(ctx) })
	d.delivery = append(d.delivery, runner{name: "grpc", run: s.Run})
	return nil
}
