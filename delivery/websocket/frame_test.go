package websocket

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
)

func TestAppendEntry(t *testing.T) {
	cases := []struct{ data, want string }{
		{`{}`, `{"seq":7}`},
		{`{ }`, `{ "seq":7}`},
		{`{"a":1}`, `{"a":1,"seq":7}`},
		{"{\"a\":1}\n ", `{"a":1,"seq":7}`},
		{`{"seq":99,"m":"x"}`, `{"seq":99,"m":"x","seq":7}`},
	}
	for _, c := range cases {
		got := string(appendEntry(nil, true, 7, []byte(c.data)))
		if got != c.want {
			t.Errorf("appendEntry(%s) = %s, want %s", c.data, got, c.want)
		}
	}
	var v struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(appendEntry(nil, true, 7, []byte(`{"seq":99}`)), &v); err != nil || v.Seq != 7 {
		t.Fatalf("a seq key in the entry wins over the server's: %v %d", err, v.Seq)
	}
	b := append([]byte(nil), framePrefixEntries...)
	b = appendEntry(b, true, 1, []byte(`{"message":"a"}`))
	b = appendEntry(b, false, 2, []byte(`{"message":"b"}`))
	b = append(b, ']', '}')
	if string(b) != `{"type":"entries","entries":[{"message":"a","seq":1},{"message":"b","seq":2}]}` {
		t.Fatalf("frame %s", b)
	}
}

func TestValidity(t *testing.T) {
	var v validity
	for _, c := range []struct {
		data string
		ok   bool
	}{
		{`{"message":"x"}`, true},
		{`{}`, true},
		{`[1]`, false},
		{`"str"`, false},
		{`{"a":1},{"b":2}`, false},
		{`{"a":1`, false},
		{``, false},
		{` {"a":1}`, false},
		{"{\"a\":\"\xff\"}", true}, // json.Valid accepts bad UTF-8 in strings; browsers then see U+FFFD
	} {
		for range 2 { // second time from the cache
			if got := v.valid(42, []byte(c.data)); got != c.ok {
				t.Errorf("valid(%q) = %v, want %v", c.data, got, c.ok)
			}
		}
	}
}

// FuzzEntryFrame checks that whatever arrives on the subjects, a frame is
// either valid JSON holding the entry with its seq, or the entry is
// skipped: a stray publisher can never break or forge a frame.
func FuzzEntryFrame(f *testing.F) {
	for _, s := range []string{`{}`, `{"message":"x"}`, `{"seq":1}`, `{"a":1},{"seq":2}`, `{"a":"}"}`, "{\n}\n", `[]`} {
		f.Add([]byte(s), uint64(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, seq uint64) {
		seq &= 1<<40 - 1
		var v validity
		if !v.valid(seq, data) {
			return
		}
		b := append([]byte(nil), framePrefixEntries...)
		b = appendEntry(b, true, seq, data)
		b = appendEntry(b, false, seq+1, []byte(`{"m":1}`))
		b = append(b, ']', '}')
		var fr struct {
			Type    string `json:"type"`
			Entries []struct {
				Seq uint64 `json:"seq"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatalf("frame not JSON: %v: %s", err, b)
		}
		if fr.Type != "entries" || len(fr.Entries) != 2 || fr.Entries[0].Seq != seq || fr.Entries[1].Seq != seq+1 {
			t.Fatalf("frame %s decoded as %+v", b, fr)
		}
	})
}

var keyRE = regexp.MustCompile(`^(unknown parameter|message|id|type|hosts|services|level|contains|regex|backlog|since|after|backlog, since, after|[a-z]+: given)\b`)

// FuzzParseQuery checks that any query string gives a filter or an error
// naming the parameter, never a panic.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "hosts=web*,db1&level=err", "regex=%28", "backlog=10", "since=5m", "after=12",
		"since=2026-01-02T03:04:05Z", "backlog=1&after=2", "host=a.b.c&service=x*y", "contains=%00%ff", "level=7"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		sp, err := parseQuery(q, 1000, now)
		if err != nil {
			if !keyRE.MatchString(err.Error()) {
				t.Fatalf("error %q does not start with the parameter", err)
			}
			return
		}
		if len(sp.filter.Subjects("logs")) == 0 {
			t.Fatalf("filter %+v selects no subject", sp.filter)
		}
		if !json.Valid(subscribedMessage("", sp.req)) {
			t.Fatal("subscribed frame is not JSON")
		}
		_ = sp.filter.Compile().Match(&bus.Entry{Host: "h", Service: "s", Message: "m"})
	})
}

// FuzzParseControl checks that any control message gives a request or an
// error naming what is wrong, never a panic.
func FuzzParseControl(f *testing.F) {
	for _, s := range []string{`{"type":"subscribe","hosts":["web*"],"level":"err","backlog":5}`, `{"type":"ping","id":"1"}`,
		`{"type":"subscribe","regex":"("}`, `{}`, `[]`, `{"type":"subscribe","after":1,"since":"1h"}`, `{"type":"x"}`, `{"type":"ping"} {}`} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		sp, err := parseControl(data, 1000, now)
		if err != nil {
			if !keyRE.MatchString(err.Error()) {
				t.Fatalf("error %q does not start with what is wrong", err)
			}
			if !json.Valid(errorMessage(sp.reqID(), CodeBadRequest, err.Error())) {
				t.Fatal("error frame is not JSON")
			}
			return
		}
		if sp.req.Type != "subscribe" && sp.req.Type != "ping" {
			t.Fatalf("type %q accepted", sp.req.Type)
		}
		if msg := subscribedMessage(sp.req.ID, sp.req); !json.Valid(msg) || strings.Contains(string(msg), `"type":"subscribe"`) {
			t.Fatalf("subscribed frame %s", msg)
		}
	})
}
