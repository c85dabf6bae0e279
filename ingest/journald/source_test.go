//go:build cgo && linux

package journald_test

import (
	"fmt"
	"os"
	"slices"
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
		if parts := strings.Split(e.ID, "-"); len(parts) != 3 || !strings.HasPrefix(e.Fields["_BOOT_ID"], parts[0]) || len(parts[0]) != 16 || len(parts[1]) != 16 {
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

// TestMessageSafety: binary and invalid UTF-8 messages are escaped, not
// dropped; an oversized message is cut and marked; an oversized field is
// dropped and counted; the entries around them arrive intact.
func TestMessageSafety(t *testing.T) {
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) {
		c.MaxFieldBytes = 4096
		c.Fields = append(c.Fields, "BIGFIELD", "BINFIELD")
	})
	h.start()
	big := strings.Repeat("é", 3000) // 6000 bytes: cut at 4096 inside a rune
	h.send("MESSAGE=before", "SEQ=0")
	h.send("MESSAGE=bad \xff\xfe utf8 \\ backslash", "SEQ=1", "BINFIELD=\x00\xffz")
	h.send("MESSAGE=nul\x00 and\nnewline\ttab\x1b[31m", "SEQ=2")
	h.send("MESSAGE="+big, "SEQ=3", "BIGFIELD="+strings.Repeat("x", 5000))
	h.send("SEQ=4") // no MESSAGE at all
	h.send("MESSAGE=after", "SEQ=5")
	got := h.collect(6, 20*time.Second)
	checkSeqs(t, got, 6)
	by := map[string]bus.Entry{}
	for _, r := range got {
		by[r.Entry.Fields["SEQ"]] = r.Entry
	}
	if e := by["1"]; e.Message != `bad \xff\xfe utf8 \\ backslash` || e.Fields[journald.FieldMessageEscaped] != "true" ||
		string(journald.Unescape(e.Message)) != "bad \xff\xfe utf8 \\ backslash" || e.Fields["BINFIELD"] != "\x00\\xffz" {
		t.Errorf("invalid UTF-8: message %q fields %q", e.Message, e.Fields)
	}
	if e := by["2"]; e.Message != "nul\x00 and\nnewline\ttab\x1b[31m" || e.Fields[journald.FieldMessageEscaped] != "" {
		t.Errorf("control characters: %q %q", e.Message, e.Fields)
	}
	e := by["3"]
	if e.Fields[journald.FieldMessageTruncated] != "true" || len(e.Message) > 4096 || len(e.Message) < 4090 || !utf8Valid(e.Message) || e.Fields["BIGFIELD"] != "" {
		t.Errorf("oversized: message of %d bytes, fields %v", len(e.Message), keys(e.Fields))
	}
	if e := by["4"]; e.Message != "" {
		t.Errorf("no MESSAGE: %q", e.Message)
	}
	h.waitMetric(1, "logstream_journald_entries_truncated_total")
	h.waitMetric(1, "logstream_journald_fields_dropped_total")
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\ufffd") == s }

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// TestMatches checks journald's match engine as configured: (units ∨
// identifiers) ∧ level ∧ fields.
func TestMatches(t *testing.T) {
	unit := "lsmatch-" + newTestID()[:8] + ".service"
	h := newHarness(t, harnessOpts{}, func(c *journald.Config) {
		c.Matches.Units = []string{strings.TrimSuffix(unit, ".service")} // suffix added
		c.Matches.Identifiers = []string{"wanted-a", "wanted-b"}
		c.Matches.Level = "warning"
		c.Matches.Fields = []string{"COLOR=red", "COLOR=blue", "SHAPE=round"}
	})
	h.start()
	type msg struct {
		fields []string
		want   bool
	}
	msgs := []msg{
		{[]string{"SYSLOG_IDENTIFIER=wanted-a", "PRIORITY=3", "COLOR=red", "SHAPE=round"}, true},
		{[]string{"SYSLOG_IDENTIFIER=wanted-b", "PRIORITY=4", "COLOR=blue", "SHAPE=round"}, true},
		{[]string{"SYSLOG_IDENTIFIER=other", "PRIORITY=3", "COLOR=red", "SHAPE=round"}, false},      // identifier
		{[]string{"SYSLOG_IDENTIFIER=wanted-a", "PRIORITY=5", "COLOR=red", "SHAPE=round"}, false},   // level
		{[]string{"SYSLOG_IDENTIFIER=wanted-a", "COLOR=red", "SHAPE=round"}, false},                 // no PRIORITY
		{[]string{"SYSLOG_IDENTIFIER=wanted-a", "PRIORITY=0", "COLOR=green", "SHAPE=round"}, false}, // field value
		{[]string{"SYSLOG_IDENTIFIER=wanted-a", "PRIORITY=0", "COLOR=red"}, false},                  // second field
	}
	for i, m := range msgs {
		h.send(append([]string{fmt.Sprintf("MESSAGE=m%d", i), fmt.Sprintf("SEQ=%d", i)}, m.fields...)...)
	}
	// An entry of the unit, through its cgroup, with another identifier.
	w := h.jd.StartWriter(journaldtest.WriterSpec{TestID: h.id, Identifier: "not-listed", First: 100, Count: 1, Priority: 2,
		Fields: map[string]string{"COLOR": "blue", "SHAPE": "round"}, Cgroups: journaldtest.Cgroup(t, "system.slice/"+unit), Linger: 2 * time.Second})
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	// A sentinel that matches, written last: once it is on the bus,
	// everything before it was considered.
	h.send("MESSAGE=last", "SEQ=999", "SYSLOG_IDENTIFIER=wanted-a", "PRIORITY=1", "COLOR=red", "SHAPE=round")
	var got []string
	for _, r := range h.collect(4, 20*time.Second) {
		got = append(got, r.Entry.Fields["SEQ"])
	}
	slices.Sort(got) // entries of different services may be stored in another order
	want := []string{"0", "1", "100", "999"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("matched SEQ %v, want %v", got, want)
	}
	h.waitMetric(4, "logstream_journald_entries_read_total") // journald's matches filter
}

// TestExcludeOwnUnit: entries of logstreamd.service (the default
// exclude_units) never reach the bus.
func TestExcludeOwnUnit(t *testing.T) {
	h := newHarness(t, harnessOpts{}, nil)
	h.start()
	own := h.jd.StartWriter(journaldtest.WriterSpec{TestID: h.id, Identifier: "logstreamd", Count: 3, Message: "own %d",
		Cgroups: journaldtest.Cgroup(t, "system.slice/logstreamd.service"), Linger: 2 * time.Second})
	other := h.jd.StartWriter(journaldtest.WriterSpec{TestID: h.id, Identifier: "other", First: 10, Count: 3, Message: "other %d",
		Cgroups: journaldtest.Cgroup(t, "system.slice/lsother-"+h.id[:8]+".service"), Linger: 2 * time.Second})
	if err := own.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := other.Wait(); err != nil {
		t.Fatal(err)
	}
	h.send("MESSAGE=sentinel", "SEQ=99")
	got := h.collect(4, 20*time.Second)
	for _, r := range got {
		if strings.HasPrefix(r.Entry.Message, "own") || r.Entry.Fields["_SYSTEMD_UNIT"] == "logstreamd.service" {
			t.Errorf("own unit's entry published: %+v", r.Entry)
		}
	}
	if len(got) != 4 {
		t.Errorf("got %d entries, want 3 of the other unit and the sentinel", len(got))
	}
	for _, r := range got {
		if r.Entry.Fields["SEQ"] == "10" && r.Entry.Service != "lsother-"+h.id[:8] {
			t.Errorf("service %q from unit %q", r.Entry.Service, r.Entry.Fields["_SYSTEMD_UNIT"])
		}
	}
	h.waitMetric(3, "logstream_journald_entries_excluded_total")
}
