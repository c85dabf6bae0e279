package web

import (
	"testing"

	"github.com/logstream/logstream/internal/daemontest"
)

// daemon is a logstreamd process on free ports with its own state.
type daemon = daemontest.Daemon

func newDaemon(t testing.TB) *daemon {
	t.Helper()
	return daemontest.Start(t, "")
}
