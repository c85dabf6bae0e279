package sdj

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordsRoundTrip(t *testing.T) {
	in := []Record{
		{Realtime: 1, Cursor: []byte("s=a;i=1"), Fields: []Field{{Index: 0, Value: []byte("hello")}, {Index: 3, Truncated: true, Value: []byte("cut")}}},
		{Realtime: 2, Cursor: []byte("c2")},
		{Realtime: 3, Cursor: []byte("c3"), Fields: []Field{{Index: AllFields, Value: []byte("X=\x00\xff")}}},
	}
	var buf []byte
	ends := map[int]bool{}
	for i := range in {
		buf = AppendRecord(buf, &in[i])
		ends[len(buf)] = true
	}
	var out []Record
	err := Records(buf, func(r *Record) error {
		c := Record{Realtime: r.Realtime, Cursor: bytes.Clone(r.Cursor)}
		for _, f := range r.Fields {
			c.Fields = append(c.Fields, Field{Index: f.Index, Truncated: f.Truncated, Value: bytes.Clone(f.Value)})
		}
		out = append(out, c)
		return nil
	})
	if err != nil || len(out) != len(in) {
		t.Fatalf("Records: %d records, %v", len(out), err)
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Realtime != b.Realtime || !bytes.Equal(a.Cursor, b.Cursor) || len(a.Fields) != len(b.Fields) {
			t.Fatalf("record %d: %+v != %+v", i, a, b)
		}
		for j := range a.Fields {
			if a.Fields[j].Index != b.Fields[j].Index || a.Fields[j].Truncated != b.Fields[j].Truncated || !bytes.Equal(a.Fields[j].Value, b.Fields[j].Value) {
				t.Fatalf("record %d field %d: %+v != %+v", i, j, a.Fields[j], b.Fields[j])
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := Records(buf, func(*Record) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Records did not stop at the callback's error: %v after %d", err, n)
	}
	for cut := 1; cut < len(buf); cut++ {
		if err := Records(buf[:cut], func(*Record) error { return nil }); err == nil && !ends[cut] {
			t.Errorf("a buffer cut at %d decoded without error", cut)
		}
	}
}

// FuzzRecords feeds arbitrary bytes to the decoder: it must not panic nor
// hand out slices outside the buffer.
func FuzzRecords(f *testing.F) {
	f.Add(AppendRecord(nil, &Record{Realtime: 7, Cursor: []byte("c"), Fields: []Field{{Index: 1, Value: []byte("v")}}}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Records(b, func(r *Record) error {
			for _, fl := range r.Fields {
				if fl.Index > AllFields || len(fl.Value) > len(b) {
					t.Fatalf("bad field %+v", fl)
				}
			}
			return nil
		})
	})
}
