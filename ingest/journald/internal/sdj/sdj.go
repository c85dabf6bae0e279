// Package sdj is a minimal reader of the systemd journal built for
// throughput: libsystemd is loaded at run time with dlopen (the binary does
// not link it, so a host without it still runs the daemon), and one cgo
// call reads a whole batch of entries into a buffer, copying only the
// fields the caller asked for (Read), or keeps reading batches into the
// free buffers of a Ring for as long as there are entries (Pump). Records
// in a buffer are decoded with Records, which is pure Go.
//
// Concurrency: a Journal is not safe for concurrent use, and libsystemd's
// sd_journal object must stay on one OS thread: open it, use it and close
// it from one goroutine that called runtime.LockOSThread. Only Wake may be
// called from any goroutine. A Ring is shared by that goroutine (Pump,
// Collect, CloseWriter) and one consuming goroutine (Next, Slot, Release).
//
// Without cgo (or off Linux) every function returns ErrUnavailable.
package sdj

import (
	"encoding/binary"
	"errors"
)

// ErrUnavailable is returned when the journal cannot be read by this build
// or on this host (no cgo, or no libsystemd.so.0).
var ErrUnavailable = errors.New("sdj: journal reading unavailable")

// ErrNoBuffer is returned by Read when one entry is larger than the
// buffer; call again with a larger one.
var ErrNoBuffer = errors.New("sdj: entry larger than the buffer")

// Event is what Wait saw.
type Event int

// Wait results.
const (
	// Nop: the timeout passed, or a change that needs no action.
	Nop Event = iota
	// Append: entries were added to the journal.
	Append
	// Invalidate: journal files were added or removed (rotation,
	// vacuuming, a journald restart).
	Invalidate
	// Woken: Wake was called.
	Woken
)

// AllFields is the field index of a field the caller did not name, sent
// when SetFields was given all=true; its Value is "NAME=value".
const AllFields = 0x7fff

// truncatedBit is set in a field's index when its value was cut at the
// data threshold.
const truncatedBit = 0x8000

// Field is one field of a record.
type Field struct {
	// Index is the position of the field's name in SetFields, or
	// AllFields.
	Index int
	// Truncated reports that Value was cut at the data threshold.
	Truncated bool
	// Value is the field's value (for AllFields, "NAME=value"). It points
	// into the read buffer.
	Value []byte
}

// Record is one journal entry as Read wrote it.
type Record struct {
	// Realtime is __REALTIME_TIMESTAMP: microseconds since the epoch when
	// journald received the entry.
	Realtime uint64
	// Cursor is the entry's cursor; it points into the read buffer.
	Cursor []byte
	// Fields are the requested fields present in the entry, in the
	// entry's order. A field may appear more than once.
	Fields []Field
}

// Record layout, native byte order:
//
//	u32 total length of the record, this header included
//	u32 number of fields
//	u64 realtime
//	u16 cursor length, cursor bytes
//	per field: u16 index (bit 15: truncated), u32 length, value bytes
const recordHeader = 4 + 4 + 8 + 2

// errBadRecord is returned by Records for a malformed buffer.
var errBadRecord = errors.New("sdj: malformed record buffer")

// Records decodes the records Read wrote into buf[:used], calling fn for
// each. rec is reused between calls: fn must not keep it or its slices.
func Records(buf []byte, fn func(rec *Record) error) error {
	var rec Record
	ne := binary.NativeEndian
	for len(buf) > 0 {
		if len(buf) < recordHeader {
			return errBadRecord
		}
		total := int(ne.Uint32(buf))
		nf := int(ne.Uint32(buf[4:]))
		if total < recordHeader || total > len(buf) {
			return errBadRecord
		}
		r := buf[:total]
		buf = buf[total:]
		rec.Realtime = ne.Uint64(r[8:])
		cl := int(ne.Uint16(r[16:]))
		r = r[recordHeader:]
		if cl > len(r) {
			return errBadRecord
		}
		rec.Cursor = r[:cl]
		r = r[cl:]
		rec.Fields = rec.Fields[:0]
		for range nf {
			if len(r) < 6 {
				return errBadRecord
			}
			idx := ne.Uint16(r)
			vl := int(ne.Uint32(r[2:]))
			r = r[6:]
			if vl > len(r) {
				return errBadRecord
			}
			rec.Fields = append(rec.Fields, Field{Index: int(idx &^ truncatedBit), Truncated: idx&truncatedBit != 0, Value: r[:vl]})
			r = r[vl:]
		}
		if len(r) != 0 {
			return errBadRecord
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	return nil
}

// AppendRecord appends a record in Read's layout to buf: for tests and
// fuzzing of the decoder, and for benchmarks that need no journal.
func AppendRecord(buf []byte, rec *Record) []byte {
	ne := binary.NativeEndian
	start := len(buf)
	buf = ne.AppendUint32(buf, 0)
	buf = ne.AppendUint32(buf, uint32(len(rec.Fields)))
	buf = ne.AppendUint64(buf, rec.Realtime)
	buf = ne.AppendUint16(buf, uint16(len(rec.Cursor)))
	buf = append(buf, rec.Cursor...)
	for _, f := range rec.Fields {
		idx := uint16(f.Index) &^ truncatedBit
		if f.Truncated {
			idx |= truncatedBit
		}
		buf = ne.AppendUint16(buf, idx)
		buf = ne.AppendUint32(buf, uint32(len(f.Value)))
		buf = append(buf, f.Value...)
	}
	ne.PutUint32(buf[start:], uint32(len(buf)-start))
	return buf
}
