// Package testbin builds commands once per test binary, for tests that
// run them as real processes (the daemon, the client, nats-server). It is
// safe for concurrent use.
package testbin

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Build compiles the package with the given import path (e.g.
// "github.com/logstream/logstream/cmd/logstreamd") on its first call and
// returns the binary's path; env holds extra environment for go build
// (e.g. "CGO_ENABLED=0"). A failed build fails the test with go's output.
func Build(t testing.TB, pkg string, env ...string) string {
	t.Helper()
	key := pkg + "\x00" + strings.Join(env, "\x00")
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[key]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "logstream-testbin-")
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	p := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command("go", "build", "-o", p, pkg)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testbin: go build %s: %v\n%s", pkg, err, out)
	}
	built[key] = p
	return p
}

// Daemon builds cmd/logstreamd.
func Daemon(t testing.TB) string {
	t.Helper()
	return Build(t, "github.com/logstream/logstream/cmd/logstreamd")
}

// Client builds cmd/logstream.
func Client(t testing.TB) string {
	t.Helper()
	return Build(t, "github.com/logstream/logstream/cmd/logstream")
}
