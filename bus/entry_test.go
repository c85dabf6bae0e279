package bus_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
)

func TestParseLevel(t *testing.T) {
	good := map[string]bus.Level{
		"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
		"0": 0, "7": 7, "ERR": 3, " Warning ": 4,
		"emergency": 0, "panic": 0, "fatal": 2, "critical": 2, "error": 3, "warn": 4,
		"information": 6, "informational": 6, "trace": 7,
	}
	for in, want := range good {
		got, err := bus.ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "8", "-1", "07", "errr", "verbose", "3.0"} {
		if l, err := bus.ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) = %v, want an error", bad, l)
		}
	}
	if bus.LevelErr.String() != "err" || bus.Level(9).String() != "level(9)" {
		t.Error("String")
	}
}

func TestFacility(t *testing.T) {
	if f := bus.FacilityFromCode(3); f.String() != "daemon" || f.Code() != 3 {
		t.Errorf("daemon: %v %d", f, f.Code())
	}
	if f := bus.FacilityFromCode(0); f.String() != "kern" || f == bus.NoFacility {
		t.Error("kern must differ from no facility")
	}
	if f := bus.FacilityFromCode(24); f != bus.NoFacility || f.Code() != -1 {
		t.Error("24 is no facility")
	}
	if f, err := bus.ParseFacility("local7"); err != nil || f.Code() != 23 {
		t.Error("local7")
	}
}

func TestEntryJSONRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	tests := []bus.Entry{
		{},
		{Level: bus.LevelInfo, Message: "hello"},
		{
			Time: ts, Received: ts.Add(time.Millisecond), Host: "web1", Service: "nginx",
			Level: bus.LevelErr, Facility: bus.FacilityFromCode(0), PID: 42,
			Message: "quote \" backslash \\ newline \n tab \t ctl \x01 html <script>&' u2028 \u2028 日本",
			Source:  bus.SourceJournald, Fields: map[string]string{"b": "2", "a": "1", "sd.x@1.k": "v\"]"},
			ID: "boot:1",
		},
	}
	for i, e := range tests {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Fatalf("%d: invalid JSON %s", i, data)
		}
		var got bus.Entry
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("%d: %v in %s", i, err, data)
		}
		want := e
		want.Time, want.Received = e.Time.UTC(), e.Received.UTC()
		if e.Time.IsZero() {
			want.Time = time.Time{}
		}
		if e.Received.IsZero() {
			want.Received = time.Time{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d: round trip\n got %+v\nwant %+v\njson %s", i, got, want, data)
		}
	}
}

func TestEntryJSONSchema(t *testing.T) {
	e := bus.Entry{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Host: "h", Service: "s",
		Level: bus.LevelWarning, Facility: bus.FacilityFromCode(3), Message: "m", Source: "syslog",
		Fields: map[string]string{"z": "1", "a": "2"},
	}
	got := string(e.AppendJSON(nil))
	want := `{"time":"2026-01-02T03:04:05.000000006Z","host":"h","service":"s","level":"warning","severity":4,"facility":"daemon","message":"m","source":"syslog","fields":{"a":"2","z":"1"}}`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	// Invalid UTF-8 is replaced, never passed through.
	bad := bus.Entry{Level: bus.LevelInfo, Message: "a\xffb"}
	if s := string(bad.AppendJSON(nil)); !strings.Contains(s, `"a\ufffdb"`) {
		t.Errorf("invalid UTF-8 not replaced: %s", s)
	}
}

// TestEntryFieldsSorted: fields are written in key order, with up to 16
// fields (sorted in place) and with more.
func TestEntryFieldsSorted(t *testing.T) {
	for _, n := range []int{0, 1, 2, 16, 17, 100} {
		fields := map[string]string{}
		for i := range n {
			fields[fmt.Sprintf("k%03d", (i*37)%n)] = fmt.Sprint(i)
		}
		e := bus.Entry{Level: bus.LevelInfo, Fields: fields}
		data := e.AppendJSON(nil)
		var raw struct {
			Fields json.RawMessage `json:"fields"`
		}
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatalf("%d fields: %v\n%s", n, err, data)
		}
		var want strings.Builder
		want.WriteByte('{')
		for i := range n {
			if i > 0 {
				want.WriteByte(',')
			}
			k := fmt.Sprintf("k%03d", i)
			fmt.Fprintf(&want, "%q:%q", k, fields[k])
		}
		want.WriteByte('}')
		if n == 0 {
			if raw.Fields != nil {
				t.Errorf("no fields, yet %s", raw.Fields)
			}
			continue
		}
		if string(raw.Fields) != want.String() {
			t.Errorf("%d fields:\n got %s\nwant %s", n, raw.Fields, want.String())
		}
	}
}

func TestEntryTimeFormat(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1999, 7, 9, 0, 0, 0, 100, time.FixedZone("X", -5*3600)),
		time.Date(1, 1, 1, 0, 0, 0, 120000000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Unix(0, 1<<62),
	} {
		e := bus.Entry{Time: ts, Level: bus.LevelInfo}
		want := `{"time":"` + ts.UTC().Format(time.RFC3339Nano) + `",`
		if got := string(e.AppendJSON(nil)); !strings.HasPrefix(got, want) {
			t.Errorf("%v: got %s, want prefix %s", ts, got, want)
		}
	}
}

func TestEntryUnmarshalErrors(t *testing.T) {
	for _, in := range []string{
		`{}`, `{"level":"verbose"}`, `{"severity":9}`, `{"level":"err","severity":4}`,
		`{"level":"err","facility":"nope"}`, `[1]`, `{"level":"err","time":"yesterday"}`,
	} {
		var e bus.Entry
		if err := json.Unmarshal([]byte(in), &e); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
	var e bus.Entry
	if err := json.Unmarshal([]byte(`{"severity":3,"future_key":[1,2]}`), &e); err != nil || e.Level != bus.LevelErr {
		t.Errorf("severity only / unknown keys: %v %v", e.Level, err)
	}
}

// FuzzEntryJSON: any entry encodes to valid JSON that decodes back to the
// same entry (strings compared after UTF-8 repair).
func FuzzEntryJSON(f *testing.F) {
	f.Add("h", "s", "m", uint8(3), "k", "v", int64(1e18))
	f.Add("\xff", "\x00", "\u2028\"\\", uint8(9), "", "\xc3", int64(-5))
	f.Fuzz(func(t *testing.T, host, service, msg string, lvl uint8, k, v string, ns int64) {
		e := bus.Entry{Time: time.Unix(0, ns), Host: host, Service: service, Level: bus.Level(lvl % 8), Message: msg, PID: int(lvl)}
		if k != "" {
			e.Fields = map[string]string{k: v}
		}
		data := e.AppendJSON(nil)
		if !json.Valid(data) {
			t.Fatalf("invalid JSON: %q", data)
		}
		var got bus.Entry
		if err := got.UnmarshalJSON(data); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		fix := func(s string) string { // every invalid byte becomes U+FFFD
			var b strings.Builder
			for _, r := range s {
				b.WriteRune(r)
			}
			return b.String()
		}
		if got.Host != fix(host) || got.Service != fix(service) || got.Message != fix(msg) || got.Level != e.Level {
			t.Fatalf("round trip changed the entry: %+v vs %+v", got, e)
		}
		if !got.Time.Equal(e.Time) {
			t.Fatalf("time %v vs %v", got.Time, e.Time)
		}
	})
}

// FuzzEntryUnmarshal: arbitrary bytes never panic the decoder.
func FuzzEntryUnmarshal(f *testing.F) {
	f.Add([]byte(`{"level":"err","message":"x"}`))
	f.Add([]byte(`{"severity":3,"fields":{"a":"b"},"time":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e bus.Entry
		if err := e.UnmarshalJSON(data); err == nil && !e.Level.Valid() {
			t.Fatalf("accepted invalid level %d", e.Level)
		}
	})
}
