package main

import (
	"github.com/logstream/logstream/delivery/grpc"
)

func (d *daemon) addGRPC() error {
	if d.cfg.GRPC.Listen == "" {
		return nil
	}
	s, err := grpc.New(d.cfg.GRPC, d.bus, d.verifier, d.log.With("component", "grpc"), d.reg)
	if err != nil {
		return err
	}
	d.delivery = append(d.delivery, runner{name: "grpc", run: s.Run})
	return nil
}
