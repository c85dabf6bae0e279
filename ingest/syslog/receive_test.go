package syslog

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

// TestReceive sends RFC 5424 and RFC 3164 messages over {udp, tcp} ×
// {octet counting, LF, CRLF, NUL} into a real bus and checks each on its
// subject with its fields.
func TestReceive(t *testing.T) {
	b := bustest.Open(t)
	r := start(t, testConfig(udpL(), tcpL()), b.Publisher())
	sub := subscribe(t, b)

	type msg struct {
		line    string
		subject string
		check   func(e got) error
	}
	msgs := []msg{
		{`<165>1 2026-03-10T11:59:59.5Z web1.example.com nginx 812 ID47 [origin@1 ip="10.0.0.1"] upstream timed out`,
			"logs.web1_example_com.nginx.notice", func(e got) error {
				if e.PID != 812 || e.Facility.String() != "local4" || e.Fields["msgid"] != "ID47" || e.Fields["sd.origin@1.ip"] != "10.0.0.1" ||
					e.Message != "upstream timed out" || !e.Time.Equal(time.Date(2026, 3, 10, 11, 59, 59, 5e8, time.UTC)) || e.Host != "web1.example.com" {
					return fmt.Errorf("fields")
				}
				return nil
			}},
		{`<11>Mar 10 11:59:58 db1 postgres[99]: connection refused`, "logs.db1.postgres.err", func(e got) error {
			if e.PID != 99 || e.Facility.String() != "user" || e.Message != "connection refused" {
				return fmt.Errorf("fields")
			}
			return nil
		}},
		// No HOSTNAME: the peer's address.
		{`<14>Mar 10 11:59:58 cron[7]: job done`, "logs.127_0_0_1.cron.info", func(e got) error {
			if e.Host != "127.0.0.1" || e.Message != "job done" {
				return fmt.Errorf("host %q", e.Host)
			}
			return nil
		}},
		// Unparseable: kept, notice, parse_error.
		{`garbage without pri`, "logs.127_0_0_1.unknown.notice", func(e got) error {
			if e.Message != "garbage without pri" || e.Fields["parse_error"] == "" {
				return fmt.Errorf("fields")
			}
			return nil
		}},
	}
	for _, tc := range []struct {
		name, network string
		listener      int
		frame         func(string) string
	}{
		{"udp", "udp", 0, func(s string) string { return s }},
		{"udp with newline", "udp", 0, func(s string) string { return s + "\n" }},
		{"tcp octet counting", "tcp", 1, func(s string) string { return strconv.Itoa(len(s)) + " " + s }},
		{"tcp lf", "tcp", 1, func(s string) string { return s + "\n" }},
		{"tcp crlf", "tcp", 1, func(s string) string { return s + "\r\n" }},
		{"tcp nul", "tcp", 1, func(s string) string { return s + "\x00" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.network, r.addr(tc.listener))
			if tc.network == "udp" {
				for _, m := range msgs {
					write(t, c, tc.frame(m.line))
				}
			} else {
				// All in one write: many frames in one read. The first is
				// RFC 5424, so octet counting is detected.
				var all strings.Builder
				for _, m := range msgs {
					all.WriteString(tc.frame(m.line))
				}
				write(t, c, all.String())
			}
			// Entries of different subjects may arrive in any order (the
			// publisher spreads subjects over connections).
			bySubject := map[string]got{}
			for _, g := range collect(t, sub, len(msgs), 10*time.Second) {
				bySubject[g.subject] = g
			}
			for _, m := range msgs {
				g, ok := bySubject[m.subject]
				if !ok {
					t.Errorf("%q: nothing on %s (got %v)", m.line, m.subject, bySubject)
					continue
				}
				if g.Source != bus.SourceSyslog {
					t.Errorf("%q: source %q", m.line, g.Source)
				}
				if err := m.check(g); err != nil {
					t.Errorf("%q: %v: %s", m.line, err, g.AppendJSON(nil))
				}
			}
		})
	}
	r.stop(t)
	r.checkBalance(t)
}

// TestTCPSplitWrites: frames written one byte per write (Nagle off) and a
// final frame without newline at close arrive exactly as sent, in both
// framings.
func TestTCPSplitWrites(t *testing.T) {
	sink := &memSink{}
	r := start(t, testConfig(tcpL()), sink)
	msgs := []string{"<13>1 - h a - - - first", "<13>1 - h a - - - second with \"quotes\"", "<13>Mar 10 11:59:58 h a: third"}
	for _, octet := range []bool{true, false} {
		var stream strings.Builder
		for i, m := range msgs {
			switch {
			case octet:
				stream.WriteString(strconv.Itoa(len(m)) + " " + m)
			case i < len(msgs)-1:
				stream.WriteString(m + "\n")
			default:
				stream.WriteString(m) // no newline: delivered at close
			}
		}
		c := dial(t, "tcp", r.addr(0)).(*net.TCPConn)
		_ = c.SetNoDelay(true)
		for _, b := range []byte(stream.String()) {
			write(t, c, string([]byte{b}))
		}
		c.Close()
		waitFor(t, "3 more entries", func() bool { return sink.len() == 3*(1+boolInt(!octet)) })
	}
	got := sink.all()
	for i, e := range got {
		if want := msgs[i%3][strings.LastIndex(msgs[i%3], " ")+1:]; !strings.HasSuffix(e.Message, want) {
			t.Fatalf("entry %d: %q", i, e.Message)
		}
	}
	st := r.Stats()[0]
	if st.Received != 6 || st.Closed[CloseEOF] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
