package syslog

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

// TestLogger sends with util-linux logger, every transport and format
// flag, and checks each message on its subject with its fields.
func TestLogger(t *testing.T) {
	logger := need(t, "logger", "bsdutils (util-linux logger)")
	host, _ := os.Hostname()
	dir := t.TempDir()
	b := bustest.Open(t)
	r := start(t, testConfig(udpL(), tcpL(),
		Listener{Name: "dgram", Protocol: ProtoUnixgram, Address: filepath.Join(dir, "dev-log")},
		Listener{Name: "stream", Protocol: ProtoUnix, Address: filepath.Join(dir, "stream")},
	), b.Publisher())
	sub := subscribe(t, b)
	_, udpPort, _ := net.SplitHostPort(r.addr(0))
	_, tcpPort, _ := net.SplitHostPort(r.addr(1))

	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, e got)
	}{
		{"rfc5424 udp", []string{"--rfc5424", "-d", "-n", "127.0.0.1", "-P", udpPort, "-p", "local3.err", "--id=4242",
			"--msgid", "ID7", "--sd-id", "zoo@32473", "--sd-param", `tiger="hungry"`}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.err", 4242, "local3")
			if e.Fields["msgid"] != "ID7" || e.Fields["sd.zoo@32473.tiger"] != "hungry" || e.Fields["sd.timeQuality.tzKnown"] != "1" {
				t.Errorf("fields %v", e.Fields)
			}
			if time.Since(e.Time) > time.Minute || e.Time.Nanosecond() == 0 {
				t.Errorf("time %v (logger sends microseconds)", e.Time)
			}
		}},
		{"rfc5424 tcp", []string{"--rfc5424", "-T", "-n", "127.0.0.1", "-P", tcpPort, "-p", "daemon.warning", "-i"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.warning", -1, "daemon")
		}},
		{"rfc5424 tcp octet-count", []string{"--rfc5424", "-T", "--octet-count", "-n", "127.0.0.1", "-P", tcpPort, "-p", "auth.crit", "--id=77"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.crit", 77, "auth")
		}},
		{"rfc5424 notime nohost", []string{"--rfc5424=notime,nohost", "-d", "-n", "127.0.0.1", "-P", udpPort, "-p", "user.info"}, func(t *testing.T, e got) {
			want(t, e, "logs.127_0_0_1.%s.info", 0, "user")
			if !e.Time.Equal(e.Received) {
				t.Errorf("time %v, want the receive time %v", e.Time, e.Received)
			}
		}},
		{"rfc3164 udp", []string{"--rfc3164", "-d", "-n", "127.0.0.1", "-P", udpPort, "-p", "mail.notice", "--id=99"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.notice", 99, "mail")
		}},
		{"rfc3164 tcp", []string{"--rfc3164", "-T", "-n", "127.0.0.1", "-P", tcpPort, "-p", "local7.debug"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.debug", 0, "local7")
		}},
		{"rfc3164 tcp octet-count", []string{"--rfc3164", "-T", "--octet-count", "-n", "127.0.0.1", "-P", tcpPort, "-p", "cron.alert"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.alert", 0, "cron")
		}},
		{"socket unixgram", []string{"-u", filepath.Join(dir, "dev-log"), "--socket-errors=on", "-p", "local1.emerg", "-i"}, func(t *testing.T, e got) {
			// glibc-style: no HOSTNAME, the local host name.
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.emerg", -1, "local1")
		}},
		{"socket unixgram rfc5424", []string{"--socket", filepath.Join(dir, "dev-log"), "--rfc5424", "--socket-errors=on", "-p", "user.err", "--msgid", "M1"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.err", 0, "user")
			if e.Fields["msgid"] != "M1" {
				t.Errorf("fields %v", e.Fields)
			}
		}},
		{"socket unix stream", []string{"-u", filepath.Join(dir, "stream"), "--socket-errors=on", "-p", "local2.info"}, func(t *testing.T, e got) {
			want(t, e, "logs."+bus.SanitizeToken(host)+".%s.info", 0, "local2")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := "lg" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
			text := "hello from " + tc.name + " with a \"quote\" and ünïcode"
			args := append(append([]string{}, tc.args...), "-t", tag, text)
			if out, err := exec.Command(logger, args...).CombinedOutput(); err != nil {
				t.Fatalf("logger %v: %v\n%s", args, err, out)
			}
			g := collect(t, sub, 1, 10*time.Second)[0]
			if g.Service != tag || g.Message != text {
				t.Fatalf("service %q message %q, want %q %q (%s)", g.Service, g.Message, tag, text, g.AppendJSON(nil))
			}
			tc.check(t, g)
		})
	}
	r.stop(t)
	r.checkBalance(t)
	for _, st := range r.Stats() {
		if st.ParseErrors != 0 {
			t.Errorf("listener %s: %d parse errors", st.Listener, st.ParseErrors)
		}
	}
}

// want checks subject (with %s for the service), PID (-1: any non-zero,
// e.g. logger's own with -i) and facility.
func want(t *testing.T, e got, subject string, pid int, facility string) {
	t.Helper()
	if s := fmt.Sprintf(subject, e.Service); e.subject != s {
		t.Errorf("subject %s, want %s", e.subject, s)
	}
	if pid == -1 && e.PID == 0 || pid >= 0 && e.PID != pid {
		t.Errorf("pid %d, want %d", e.PID, pid)
	}
	if e.Facility.String() != facility {
		t.Errorf("facility %s, want %s", e.Facility, facility)
	}
}

// rsyslog runs an rsyslogd with the given configuration (an imptcp input
// on a free port is added, and its port returned), stopped when the
// test ends.
func rsyslog(t *testing.T, conf string) int {
	t.Helper()
	bin := need(t, "rsyslogd", "rsyslog")
	dir := t.TempDir()
	port := bustest.FreePort(t)
	full := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="%d")
main_queue(queue.type="FixedArray" queue.size="100000")
`, dir, port) + conf
	cfgPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(cfgPath, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd rejects its configuration: %v\n%s\n%s", err, out, full)
	}
	cmd := exec.Command(bin, "-n", "-f", cfgPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rsyslogd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFor(t, "rsyslogd to listen", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port
}

// rsyslogCount is how many messages each rsyslog forwarding test sends.
// LOGSTREAM_RSYSLOG_COUNT scales it.
func rsyslogCount() int {
	if n, err := strconv.Atoi(os.Getenv("LOGSTREAM_RSYSLOG_COUNT")); err == nil && n > 0 {
		return n
	}
	return 50000
}

// TestRsyslogForwarding: an rsyslogd started by the test receives N
// messages on TCP and forwards them with omfwd (TCP octet-counted, TCP
// LF, UDP) or omuxsock (unixgram) to the receiver; every message arrives
// once, on its subject with its fields.
func TestRsyslogForwarding(t *testing.T) {
	n := rsyslogCount()
	dir := t.TempDir()
	b := bustest.Open(t)
	cfg := testConfig(udpL(), tcpL(), Listener{Name: "dgram", Protocol: ProtoUnixgram, Address: filepath.Join(dir, "uxsock")})
	// UDP has no flow control: rsyslog sends its burst as fast as it can
	// (150,000/s and more) while JetStream stores about 100,000/s on 2
	// shared cores. A socket buffer for the whole burst (as root the
	// receiver forces it past net.core.rmem_max) keeps every datagram.
	cfg.ReadBuffer = 128 << 20
	r := start(t, cfg, b.Publisher())
	_, udpPort, _ := net.SplitHostPort(r.addr(0))
	_, tcpPort, _ := net.SplitHostPort(r.addr(1))
	for _, tc := range []struct {
		name     string
		listener int
		action   string
		count    int
	}{
		{"omfwd tcp octet-counted", 1, `*.* action(type="omfwd" target="127.0.0.1" port="` + tcpPort + `" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")`, n},
		{"omfwd tcp lf", 1, `*.* action(type="omfwd" target="127.0.0.1" port="` + tcpPort + `" protocol="tcp" template="RSYSLOG_ForwardFormat")`, n},
		{"omuxsock", 2, "$ModLoad omuxsock\n$OMUxSockSocket " + filepath.Join(dir, "uxsock") + "\n*.* :omuxsock:;RSYSLOG_TraditionalForwardFormat", n},
		{"omfwd udp", 0, `*.* action(type="omfwd" target="127.0.0.1" port="` + udpPort + `" protocol="udp" template="RSYSLOG_SyslogProtocol23Format")`, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := "rs" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
			sub, err := b.Subscribe(t.Context(), bus.Filter{Services: []string{app}}, bus.StartAtNew(), bus.SubscribeOptions{MaxEntries: 2 * tc.count, MaxBytes: 512 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			before := r.Stats()[tc.listener]
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("listener stats: %+v", r.Stats()[tc.listener])
				}
			})
			port := rsyslog(t, tc.action+"\n")
			c := dial(t, "tcp", "127.0.0.1:"+strconv.Itoa(port))
			w := bufio.NewWriterSize(c, 64<<10)
			stamp := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
			for i := range tc.count {
				// RFC 5424 into rsyslog; out in the action's template.
				fmt.Fprintf(w, "<30>1 %s srchost.example %s 4711 - - seq %d of %d\n", stamp, app, i, tc.count)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			seen := make([]bool, tc.count)
			for _, g := range collect(t, sub, tc.count, 120*time.Second) {
				var i, total int
				if _, err := fmt.Sscanf(g.Message, "seq %d of %d", &i, &total); err != nil || i < 0 || i >= tc.count ||
					g.Message != fmt.Sprintf("seq %d of %d", i, total) {
					t.Fatalf("unexpected message %q", g.Message)
				}
				if seen[i] {
					t.Fatalf("message %d twice", i)
				}
				seen[i] = true
				if g.subject != "logs.srchost_example."+app+".info" || g.PID != 4711 || g.Host != "srchost.example" ||
					g.Facility.String() != "daemon" || g.Fields["parse_error"] != "" {
					t.Fatalf("entry on %s: %s", g.subject, g.AppendJSON(nil))
				}
				if d := g.Time.Sub(time.Now()); d > time.Minute || d < -10*time.Minute {
					t.Fatalf("time %v", g.Time)
				}
			}
			t.Logf("%d messages through rsyslog in %v", tc.count, time.Since(begin).Round(time.Millisecond))
			expectNone(t, sub, 200*time.Millisecond)
			after := r.Stats()[tc.listener]
			if got := after.Received - before.Received; got != uint64(tc.count) {
				t.Fatalf("listener received %d, want %d", got, tc.count)
			}
		})
	}
	r.stop(t)
	r.checkBalance(t)
}
