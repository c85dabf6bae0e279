package websocket

import (
	"strconv"
	"testing"

	"github.com/logstream/logstream/internal/daemontest"
	"github.com/logstream/logstream/internal/testbin"
)

// buildBinary builds a command of the module once for the tests and
// returns its path.
func buildBinary(t testing.TB, pkg string) string { return testbin.Build(t, pkg) }

// daemon is a logstreamd process on free ports with its own state.
type daemon struct{ *daemontest.Daemon }

// newDaemon starts logstreamd on free ports; extra is YAML appended to
// its configuration (a websocket section, say).
func newDaemon(t testing.TB, extra string, env ...string) *daemon {
	t.Helper()
	return &daemon{daemontest.Start(t, extra, env...)}
}

func (d *daemon) wsURL(query string) string {
	return "ws://127.0.0.1:" + strconv.Itoa(d.HTTPPort) + "/ws?" + query
}
