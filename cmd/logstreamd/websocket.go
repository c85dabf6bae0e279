package main

import (
	"context"

	"github.com/logstream/logstream/delivery/websocket"
)

func (d *daemon) addWebSocket() error {
	if d.httpSrv == nil {
		return nil
	}
	h, err := websocket.New(d.cfg.WebSocket, d.bus, d.verifier, d.log.With("component", "websocket"), d.reg)
	if err != nil {
		return err
	}
	d.mux.Handle("GET /ws", h)
	d.onShutdown = append(d.onShutdown, func(ctx context.Context) { _ = h.Shutdown(ctx) })
	return nil
}
