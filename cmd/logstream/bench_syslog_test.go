package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/ingest/syslog"
)

// benchSyslogReceiver runs the syslog receiver (UDP and TCP on free
// ports) into a real bus; it returns the bus and the two addresses.
func benchSyslogReceiver(t *testing.T, mods ...func(*bus.Config)) (*bus.Bus, string, string) {
	t.Helper()
	b := bustest.Open(t, mods...)
	cfg := syslog.Config{Enabled: true, Listeners: []syslog.Listener{
		{Name: "udp", Protocol: syslog.ProtoUDP, Address: "127.0.0.1:0"},
		{Name: "tcp", Protocol: syslog.ProtoTCP, Address: "127.0.0.1:0"},
	}}
	s, err := syslog.New(cfg, bustest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, b.Publisher()) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, s.Addrs()[0], s.Addrs()[1]
}

func runBenchJSON(t *testing.T, name string, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(t.Context(), append([]string{"bench", name, "-json"}, args...), &out, &errb); err != nil {
		t.Fatalf("bench %s %v: %v\n%s", name, args, err, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	return rep
}

// TestBenchSyslog runs logstream bench syslog against the real receiver
// and bus: TCP in both framings and formats, UDP at a rate, and counts
// every message on NATS.
func TestBenchSyslog(t *testing.T) {
	b, udp, tcp := benchSyslogReceiver(t, bustest.CoreMode)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tcp octet rfc5424", []string{"-address", "tcp://" + tcp, "-count", "20000", "-connections", "3"}},
		{"tcp lf rfc3164", []string{"-address", "tcp://" + tcp, "-count", "5000", "-framing", "lf", "-format", "rfc3164", "-size", "120"}},
		{"udp paced", []string{"-address", "udp://" + udp, "-count", "2000", "-rate", "20000", "-connections", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := runBenchJSON(t, "syslog", append(tc.args, "-nats", b.ClientURL(), "-timeout", "60s")...)
			if rep["received"] != rep["sent"] || rep["lost"] != 0.0 || rep["duplicates"] != 0.0 {
				t.Fatalf("report %v", rep)
			}
			if rep["end_to_end_rate"].(float64) <= 0 || rep["p50_ms"].(float64) <= 0 {
				t.Fatalf("report %v", rep)
			}
		})
	}
}

// TestBenchSyslogFile counts lines rsyslog (imptcp -> omfile) writes, as
// compare.sh does.
func TestBenchSyslogFile(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Fatal("rsyslogd not found: install the Debian package rsyslog")
	}
	dir := t.TempDir()
	port := bustest.FreePort(t)
	out := filepath.Join(dir, "out.log")
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="%d")
action(type="omfile" file=%q template="RSYSLOG_FileFormat")
`, dir, port, out)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rsyslogd, "-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "pid"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	bustest.WaitFor(t, 20*time.Second, "rsyslogd listening", func() bool {
		var out, errb bytes.Buffer
		return run(t.Context(), []string{"bench", "syslog", "-address", "tcp://127.0.0.1:" + strconv.Itoa(port), "-count", "1"}, &out, &errb) == nil
	})
	rep := runBenchJSON(t, "syslog", "-address", "tcp://127.0.0.1:"+strconv.Itoa(port), "-count", "3000", "-file", out, "-timeout", "60s")
	if rep["received"] != 3000.0 || rep["counter"] != "file" {
		t.Fatalf("report %v", rep)
	}
}

// TestBenchJSBaseline publishes into a real JetStream stream and counts
// acknowledgements and deliveries.
func TestBenchJSBaseline(t *testing.T) {
	b := bustest.Open(t)
	rep := runBenchJSON(t, "jsbaseline", "-nats", b.ClientURL(), "-count", "3000", "-connections", "2")
	if rep["acked"] != 3000.0 || rep["delivered"] != 3000.0 || rep["errors"] != 0.0 || rep["stream"] != "LOGS" {
		t.Fatalf("report %v", rep)
	}
	// A server without the stream is a clear error.
	c := bustest.Open(t, bustest.CoreMode)
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"bench", "jsbaseline", "-nats", c.ClientURL(), "-count", "10"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "no stream") {
		t.Fatalf("without a stream: %v", err)
	}
}

// FuzzBenchSyslogMessage: every generated message parses back to its
// sequence number and time, and no input panics the parser.
func FuzzBenchSyslogMessage(f *testing.F) {
	f.Add(0, 200, "rfc5424", []byte("x bench 12 34 y"))
	f.Add(12345, 40, "rfc3164", []byte("bench bench 1 2 "))
	f.Fuzz(func(t *testing.T, seq, size int, format string, junk []byte) {
		parseBenchMessage(junk)
		if seq < 0 || size < 0 || size > 1<<16 {
			return
		}
		if format != "rfc3164" {
			format = "rfc5424"
		}
		g := newSyslogGen(&syslogBench{size: size, services: 3, levels: []bus.Level{bus.LevelInfo}, format: format, host: "h"})
		before := time.Now().UnixNano()
		m := g.message(nil, seq)
		s, ns, ok := parseBenchMessage(m)
		if !ok || s != seq || ns < before || ns > time.Now().UnixNano() {
			t.Fatalf("%q: %d %d %v", m, s, ns, ok)
		}
		if len(m) < size && size > 100 {
			t.Fatalf("message of %d bytes, want %d", len(m), size)
		}
	})
}
