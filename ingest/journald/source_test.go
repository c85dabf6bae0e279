//go:build cgo && linux

package journald_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/ingest/journald"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// TestWriters writes through every writer a host has — the native
// protocol from the test process, go-systemd's journal package, logger
// --journald and systemd-cat — and checks subject, fields and ID on the
// bus.
func TestWriters(t *testing.T) {
	journaldtest.Need(t, "logger", "systemd-cat", "unshare")
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) { c.Fields = append(c.Fields, "WRITER") })
	h.start()

	h.send("MESSAGE=native hello", "PRIORITY=3", "SYSLOG_IDENTIFIER=nativeapp", "SYSLOG_FACILITY=3", "WRITER=native")
	w := h.jd.StartWriter(journaldtest.WriterSpec{TestID: h.id, Identifier: "gosystemd", Count: 1, Priority: 4,
		Message: "go-systemd %d", Fields: map[string]string{"WRITER": "gosystemd"}})
	if err := w.Wait(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	h.jd.Run("MESSAGE=logger native\nPRIORITY=5\nSYSLOG_IDENTIFIER=loggerapp\nWRITER=logger\nTEST_ID="+h.id+"\n", "logger", "--journald")
	// systemd-cat cannot add fields: its entries are found by identifier.
	h.jd.Run("", "systemd-cat", "-t", "catapp-"+h.id, "-p", "debug", "sh", "-c", "echo from systemd-cat")

	got := h.collect(3, 20*time.Second)
	host, _ := hostname()
	byWriter := map[string]received{}
	for _, r := range got {
		byWriter[r.Entry.Fields["WRITER"]] = r
	}
	cases := []struct {
		writer, subject, message string
		level                    bus.Level
		transport                string
	}{
		{"native", "logs." + host + ".nativeapp.err", "native hello", bus.LevelErr, "journal"},
		{"gosystemd", "logs." + host + ".gosystemd.warning", "go-systemd 0", bus.LevelWarning, "journal"},
		{"logger", "logs." + host + ".loggerapp.notice", "logger native", bus.LevelNotice, "journal"},
	}
	for _, c := range cases {
		r, ok := byWriter[c.writer]
		if !ok {
			t.Errorf("%s: no entry on the bus (got %d entries)", c.writer, len(got))
			continue
		}
		e := r.Entry
		if r.Subject != c.subject || e.Message != c.message || e.Level != c.level || e.Source != bus.SourceJournald {
			t.Errorf("%s: got subject %q message %q level %v source %q; want %q %q %v journald",
				c.writer, r.Subject, e.Message, e.Level, e.Source, c.subject, c.message, c.level)
		}
		if e.Fields["_TRANSPORT"] != c.transport || e.Fields["_BOOT_ID"] == "" || e.Fields["SYSLOG_IDENTIFIER"] == "" {
			t.Errorf("%s: fields %v", c.writer, e.Fields)
		}
		if parts := strings.Split(e.ID, "-"); len(parts) != 3 || parts[0] != e.Fields["_BOOT_ID"] || len(parts[1]) != 32 {
			t.Errorf("%s: ID %q is not <boot_id>-<seqnum_id>-<seqnum>", c.writer, e.ID)
		}
		if e.PID == 0 || e.Time.IsZero() || e.Received.IsZero() || e.Host != host {
			t.Errorf("%s: pid %d time %v received %v host %q", c.writer, e.PID, e.Time, e.Received, e.Host)
		}
	}
	if e := byWriter["native"].Entry; e.Facility.String() != "daemon" {
		t.Errorf("native: facility %q, want daemon", e.Facility)
	}
	// systemd-cat's entry has no TEST_ID: look for its identifier.
	cat := collectFrom(t, h.b, func(e bus.Entry) bool { return e.Service == "catapp-"+h.id }, 1, 20*time.Second)
	if len(cat) != 1 || cat[0].Entry.Message != "from systemd-cat" || cat[0].Entry.Level != bus.LevelDebug || cat[0].Entry.Fields["_TRANSPORT"] != "stdout" {
		t.Errorf("systemd-cat: %+v", cat)
	}
}

func hostname() (string, error) {
	h, err := os.Hostname()
	return bus.SanitizeToken(h), err
}
