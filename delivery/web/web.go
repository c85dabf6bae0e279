// Package web is the browser dashboard, embedded in the binary and
// served at /.
//
// This is a placeholder: the dashboard is built in its own issue.
package web

import (
	"net/http"
)

// Handler serves the dashboard.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("logstream\n"))
	})
}
