package grpc

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// rawMsg is a message already in protobuf wire form: the codec sends its
// bytes as they are. Entries are encoded once and the same bytes go to
// every stream that selects them.
type rawMsg struct{ b []byte }

// codec is the proto codec, except that it passes rawMsg through.
type codec struct{}

var protoCodec = encoding.GetCodecV2(protoenc.Name)

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return protoCodec.Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }

func (codec) Name() string { return protoenc.Name }

// encCache remembers the encoding of recent entries by sequence, so that
// an entry sent to many streams is decoded and encoded once, as long as
// the streams are within 4096 entries of each other. A slot is trusted
// only when the entry's JSON is the same (a recreated stream reuses
// sequences). Encodings over 2KiB are not kept, which bounds the cache
// to 8MiB (plus the entries' JSON, which the bus's ring of recent
// entries holds anyway).
type encCache struct {
	slots [4096]atomic.Pointer[encoded]
}

const maxCachedEncoding = 2 << 10

type encoded struct {
	seq  uint64
	data []byte // the entry's JSON, shared with the bus
	out  []byte
}

// get returns the encoding of ev, from the cache or made by enc.
func (c *encCache) get(ev *bus.Event, enc func(*bus.Event) ([]byte, error)) ([]byte, error) {
	slot := &c.slots[ev.Seq%uint64(len(c.slots))]
	if e := slot.Load(); e != nil && e.seq == ev.Seq && bytes.Equal(e.data, ev.Data) {
		return e.out, nil
	}
	out, err := enc(ev)
	if err != nil {
		return nil, err
	}
	if len(out) <= maxCachedEncoding {
		slot.Store(&encoded{seq: ev.Seq, data: ev.Data, out: out})
	}
	return out, nil
}

// appendBatchEntry appends one encoded LogEntry to an encoded LogBatch
// (field 1, length-delimited).
func appendBatchEntry(b, entry []byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, entry)
}

// batchEntrySize is the size of one encoded LogEntry in a LogBatch.
func batchEntrySize(entry []byte) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(entry))
}

// entryTime is the time shown for an entry: when it happened, else when
// it was received.
func entryTime(e *bus.Entry) time.Time {
	if !e.Time.IsZero() {
		return e.Time
	}
	return e.Received
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// EntryToV1 converts an entry and its stream sequence to the v1 message.
func EntryToV1(e *bus.Entry, seq uint64) *pb.LogEntry {
	m := &pb.LogEntry{
		Timestamp: formatTime(entryTime(e)),
		Level:     e.Level.String(),
		Message:   e.Message,
		Host:      e.Host,
		Service:   e.Service,
		Severity:  uint32(e.Level),
		Facility:  e.Facility.String(),
		Pid:       int64(e.PID),
		Source:    e.Source,
		Fields:    e.Fields,
		Seq:       seq,
		Id:        e.ID,
	}
	if !e.Time.IsZero() {
		m.Time = timestamppb.New(e.Time)
	}
	if !e.Received.IsZero() {
		m.Received = timestamppb.New(e.Received)
	}
	return m
}

// V1ToEntry converts a v1 message back to an entry (for clients).
func V1ToEntry(m *pb.LogEntry) bus.Entry {
	e := bus.Entry{
		Host: m.GetHost(), Service: m.GetService(), Level: bus.Level(m.GetSeverity()),
		PID: int(m.GetPid()), Message: m.GetMessage(), Source: m.GetSource(),
		Fields: m.GetFields(), ID: m.GetId(),
	}
	if l, err := bus.ParseLevel(m.GetLevel()); err == nil {
		e.Level = l
	}
	if f, err := bus.ParseFacility(m.GetFacility()); err == nil {
		e.Facility = f
	}
	if m.GetTime() != nil {
		e.Time = m.GetTime().AsTime()
	} else if t, err := time.Parse(time.RFC3339Nano, m.GetTimestamp()); err == nil {
		e.Time = t
	}
	if m.GetReceived() != nil {
		e.Received = m.GetReceived().AsTime()
	}
	return e
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

func encodeV1(ev *bus.Event) ([]byte, error) {
	e, err := ev.Entry()
	if err != nil {
		return nil, err
	}
	return marshalOpts.Marshal(EntryToV1(&e, ev.Seq))
}

func encodeLegacy(ev *bus.Event) ([]byte, error) {
	e, err := ev.Entry()
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&legacypb.LogEntry{
		Timestamp: formatTime(entryTime(&e)),
		Level:     e.Level.String(),
		Message:   e.Message,
	})
}

func controlV1(kind pb.Control_Kind, dropped uint64, reason string) *pb.LogEntry {
	return &pb.LogEntry{Control: &pb.Control{Kind: kind, Dropped: dropped, Reason: reason}}
}

// legacyNotice is what a legacy client, which has no control messages,
// receives in place of a dropped notice: an entry from logstream itself.
func legacyNotice(dropped uint64, reason string) *legacypb.LogEntry {
	why := "the client did not keep up"
	switch reason {
	case bus.ReasonGone:
		why = "no longer held by the server"
	case reasonTooLarge:
		why = "larger than grpc.max_send_msg_size"
	}
	return &legacypb.LogEntry{
		Timestamp: formatTime(time.Now()),
		Level:     bus.LevelWarning.String(),
		Message:   fmt.Sprintf("logstream: %d entries dropped: %s", dropped, why),
	}
}
