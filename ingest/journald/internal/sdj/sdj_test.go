//go:build cgo && linux

package sdj_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/ingest/journald/internal/sdj"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	journaldtest.MaybeWriter()
	goleak.VerifyTestMain(m)
}

// readAll reads every entry with TEST_ID=id, returning field maps.
func readAll(t *testing.T, j *sdj.Journal, names []string) []map[string]string {
	t.Helper()
	buf := make([]byte, 1<<16)
	var out []map[string]string
	for {
		res, err := j.Read(buf, 64)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		err = sdj.Records(buf[:res.Used], func(rec *sdj.Record) error {
			m := map[string]string{"__CURSOR": string(rec.Cursor), "__REALTIME": fmt.Sprint(rec.Realtime)}
			for _, f := range rec.Fields {
				if f.Index == sdj.AllFields {
					k, v, _ := strings.Cut(string(f.Value), "=")
					m[k] = v
					continue
				}
				m[names[f.Index]] = string(f.Value)
				if f.Truncated {
					m[names[f.Index]+".truncated"] = "1"
				}
			}
			out = append(out, m)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.EOF {
			return out
		}
	}
}

func TestReadDirectory(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	jd := journaldtest.Start(t)
	id := fmt.Sprint(time.Now().UnixNano())
	for i := range 5 {
		if err := jd.Send("MESSAGE=hello "+fmt.Sprint(i), "TEST_ID="+id, "PRIORITY=3", "MULTI=a\nb", "BIN=\xff\x00z", "BIG="+strings.Repeat("x", 3000)); err != nil {
			t.Fatal(err)
		}
	}
	j, err := sdj.OpenDirectory(jd.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.AddMatch("TEST_ID=" + id); err != nil {
		t.Fatal(err)
	}
	if err := j.SetDataThreshold(1000); err != nil {
		t.Fatal(err)
	}
	names := []string{"MESSAGE", "PRIORITY", "MULTI", "BIN", "BIG"}
	j.SetFields(names, false)
	var got []map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 5 && time.Now().Before(deadline) {
		got = append(got, readAll(t, j, names)...)
		if len(got) < 5 {
			if _, err := j.Wait(100 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got) != 5 {
		t.Fatalf("got %d entries, want 5", len(got))
	}
	for i, m := range got {
		if m["MESSAGE"] != fmt.Sprint("hello ", i) || m["PRIORITY"] != "3" || m["MULTI"] != "a\nb" || m["BIN"] != "\xff\x00z" {
			t.Errorf("entry %d: %q", i, m)
		}
		if len(m["BIG"]) != 1000 || m["BIG.truncated"] != "1" {
			t.Errorf("entry %d: BIG has %d bytes, truncated %q", i, len(m["BIG"]), m["BIG.truncated"])
		}
	}
	t.Logf("%v", got[0]["__CURSOR"])
	_ = os.Stderr
}
