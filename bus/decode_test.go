package bus

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var knownKeys = []string{"time", "received", "host", "service", "level", "severity", "facility", "pid", "message", "source", "fields", "id"}

// foldedKey reports whether data's top-level object has a key that
// encoding/json would match to a known key case-insensitively only; the
// fast decoder matches keys exactly, on purpose.
func foldedKey(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		for _, known := range knownKeys {
			if k != known && (strings.EqualFold(k, known) || strings.EqualFold(strings.NewReplacer("\u212a", "k", "\u017f", "s").Replace(k), known)) {
				return true
			}
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

func sameWire(a, b *wireEntry) bool {
	eqTime := func(x, y *time.Time) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.Equal(*y) && x.Location().String() == y.Location().String()
	}
	if !eqTime(a.Time, b.Time) || !eqTime(a.Received, b.Received) {
		return false
	}
	ac, bc := *a, *b
	ac.Time, ac.Received, bc.Time, bc.Received = nil, nil, nil, nil
	return reflect.DeepEqual(ac, bc)
}

func checkAgainstStd(t *testing.T, data []byte) {
	if foldedKey(data) {
		return
	}
	var want, got wireEntry
	stdErr := json.Unmarshal(data, &want)
	err := decodeWire(data, &got)
	if (stdErr == nil) != (err == nil) {
		t.Fatalf("input %q: encoding/json says %v, decoder says %v", data, stdErr, err)
	}
	if err == nil && !sameWire(&want, &got) {
		t.Fatalf("input %q:\n std %+v\n got %+v", data, want, got)
	}
}

func TestDecodeAgainstStd(t *testing.T) {
	for _, in := range decodeSeeds {
		checkAgainstStd(t, []byte(in))
	}
}

var decodeSeeds = []string{
	`{"time":"2026-01-02T03:04:05.123456789Z","received":"2026-01-02T03:04:05Z","host":"h","service":"s","level":"err","severity":3,"facility":"daemon","pid":12,"message":"m\n\"\\\u00e9\ud83d\ude00","source":"syslog","fields":{"a":"1","b":"\u0000"},"id":"x"}`,
	`{}`, `null`, `[]`, `"x"`, `3`, `{"host":null}`, `{"host":"a","host":"b"}`, `{"host":"a","host":null}`,
	`{"fields":null}`, `{"fields":{"a":null}}`, `{"fields":{"a":"1"},"fields":{"b":"2"}}`, `{"fields":[]}`,
	`{"pid":1.0}`, `{"pid":-0}`, `{"pid":1e3}`, `{"pid":99999999999999999999}`, `{"pid":"1"}`, `{"pid":01}`,
	`{"severity":null}`, `{"level":3}`, `{"time":"2026-01-02T03:04:05+01:00"}`, `{"time":"2026-01-02 03:04:05Z"}`,
	`{"time":"2026-01-02T03:04:05\u005a"}`, `{"time":null}`, `{"x":[1,{"y":[true,false,null]}],"host":"h"}`,
	`{"host":"\ud800"}`, `{"host":"\ud800\u0041"}`, `{"host":"a\xffb"}`, `{"host":"\q"}`, `{"host":"a` + "\x01" + `"}`,
	`{"host":"h"} x`, `{"host":"h",}`, `{,}`, ` { "host" : "h" } `, `{"Host":"h"}`, `{"x":-}`, `{"x":1.}`, `{"x":.5}`,
	`{"x":tru}`, `{"x":nul}`, `{"x":"\u12"}`, `{"message":"` + strings.Repeat("é", 100) + `"}`,
}

// FuzzDecodeAgainstStd holds the fast decoder to encoding/json's verdict
// and result on any input.
func FuzzDecodeAgainstStd(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkAgainstStd(t, data) })
}

func BenchmarkDecodeStd(b *testing.B) {
	e := Entry{Time: time.Now(), Received: time.Now(), Host: "web1", Service: "nginx", Level: LevelErr, PID: 42,
		Message: "GET /api/v1/items?id=12345 HTTP/1.1 200 512 0.004 upstream=10.0.0.12:8080", Source: SourceSyslog}
	data := e.AppendJSON(nil)
	b.ReportAllocs()
	for b.Loop() {
		var w wireEntry
		if err := json.Unmarshal(data, &w); err != nil {
			b.Fatal(err)
		}
	}
}
