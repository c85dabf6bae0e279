package main

import "github.com/logstream/logstream/delivery/web"

func (d *daemon) addWeb() error {
	if d.httpSrv == nil {
		return nil
	}
	d.mux.Handle("GET /", web.Handler())
	return nil
}
