package websocket

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
)

// Frames are JSON text messages, one object each, told apart by "type":
//
//	{"type":"subscribed","filter":{…the request, normalised…}}
//	{"type":"entries","entries":[{…entry JSON…,"seq":42},…]}
//	{"type":"dropped","count":17,"reason":"slow"}      (or "gone")
//	{"type":"caught_up"}
//	{"type":"error","code":4400,"message":"regex: …"}
//	{"type":"pong"}
//
// Each element of entries is the entry's JSON object exactly as it travels
// on NATS, copied, not re-encoded, with its stream sequence added as "seq".

// Close codes beyond RFC 6455's, in the private range 4000-4999.
const (
	CodeSlow           = 4008 // the client's queue overflowed (policy disconnect)
	CodeBadRequest     = 4400 // bad filter or control message
	CodeUnauthorized   = 4401 // token missing or invalid
	CodeForbidden      = 4403 // the token's scope excludes the whole filter
	CodeTooManyRequest = 4429 // subscribe requests too frequent
)

var (
	framePrefixEntries = []byte(`{"type":"entries","entries":[`)
	frameCaughtUpMsg   = []byte(`{"type":"caught_up"}`)
)

// appendEntry appends one element of the entries array: the entry's JSON
// object with "seq" added as its last key (last, so that it wins over a
// "seq" key a foreign publisher may have put in the object). data must be
// a valid JSON object (see validity).
func appendEntry(b []byte, first bool, seq uint64, data []byte) []byte {
	if !first {
		b = append(b, ',')
	}
	obj := bytes.TrimRight(data, " \t\r\n")
	obj = obj[:len(obj)-1] // the closing brace
	b = append(b, obj...)
	if len(bytes.TrimRight(obj, " \t\r\n")) > 1 {
		b = append(b, ',')
	}
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

func appendDropped(b []byte, count uint64, reason string) []byte {
	b = append(b, `{"type":"dropped","count":`...)
	b = strconv.AppendUint(b, count, 10)
	b = append(b, `,"reason":`...)
	b = strconv.AppendQuote(b, reason)
	return append(b, '}')
}

type errorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func errorMessage(id string, code int, msg string) []byte {
	b, _ := json.Marshal(errorFrame{Type: "error", ID: id, Code: code, Message: msg})
	return b
}

type subscribedFrame struct {
	Type   string  `json:"type"`
	ID     string  `json:"id,omitempty"`
	Filter request `json:"filter"`
}

func subscribedMessage(id string, r request) []byte {
	r.Type, r.ID = "", ""
	b, _ := json.Marshal(subscribedFrame{Type: "subscribed", ID: id, Filter: r})
	return b
}

type pongFrame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

func pongMessage(id string) []byte {
	b, _ := json.Marshal(pongFrame{Type: "pong", ID: id})
	return b
}

// bufPool holds frame buffers; a client holds one only while it writes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // do not keep a rare huge frame's buffer
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// validity remembers, for the most recent entries, whether their data is
// a valid JSON object, so that one entry sent to a thousand clients is
// checked once. Anything on the subjects that is not JSON (a stray NATS
// publisher) is skipped rather than spliced into a frame, where it would
// break the frame for the client. Slots hold seq<<17 | len<<1 | valid;
// races between writers are benign (both compute the same answer).
type validity struct {
	slots [4096]atomic.Uint64
}

func (v *validity) valid(seq uint64, data []byte) bool {
	key := seq<<17 | uint64(len(data)&0xffff)<<1
	slot := &v.slots[seq%uint64(len(v.slots))]
	if x := slot.Load(); x&^1 == key {
		return x&1 == 1
	}
	ok := len(data) > 1 && data[0] == '{' && json.Valid(data)
	if ok {
		slot.Store(key | 1)
	} else {
		slot.Store(key)
	}
	return ok
}
