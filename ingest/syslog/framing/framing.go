// Package framing splits a syslog byte stream (TCP, TLS, unix stream
// sockets) into messages: octet counting (RFC 6587 section 3.4.1, "LEN
// SP MSG") or non-transparent framing (section 3.4.2: each message ends
// with LF, CRLF or NUL), detected per connection from its first bytes.
//
// A Reader reads large blocks into one buffer and hands out frames that
// point into it, so that many frames in one read cost one system call and
// no copy, and a frame split across reads — even one byte per write — is
// put together. Memory is bounded by the maximum message size: a
// non-transparent frame longer than that is cut there (Truncated) and the
// rest of it, up to its LF, is discarded; an octet count beyond it is an
// error (ErrFrameTooLarge), after which the stream cannot be resynchronised
// and the caller closes the connection.
//
// What this fixes over gopkg.in/mcuadros/go-syslog.v2 v2.3.0, whose
// bufio.Scanner split functions panic on a negative octet count
// ("-5 <13>…": slice bounds out of range) and end the connection, with
// every valid message after it, on any token over 64 KiB; and which
// choose octet counting for any line that starts with a number and a
// space.
//
// A Reader is not safe for concurrent use.
package framing

import (
	"bytes"
	"errors"
	"io"
)

// ErrFrameTooLarge is returned by Next for an octet count above the
// maximum message size.
var ErrFrameTooLarge = errors.New("framing: octet count exceeds the maximum message size")

// Mode is a connection's framing.
type Mode uint8

const (
	// Unknown: no byte has been read yet.
	Unknown Mode = iota
	// OctetCounting is RFC 6587 section 3.4.1: "LEN SP MSG".
	OctetCounting
	// NonTransparent is RFC 6587 section 3.4.2: MSG ended by LF (CRLF,
	// and NUL, are accepted too).
	NonTransparent
)

func (m Mode) String() string {
	switch m {
	case OctetCounting:
		return "octet-counting"
	case NonTransparent:
		return "non-transparent"
	}
	return "unknown"
}

// Frame is one message. Data is valid until the next call to Next.
type Frame struct {
	Data []byte
	// Truncated: the message was longer than the maximum and was cut, or
	// (octet counting) the connection ended before all of it arrived.
	Truncated bool
}

// maxCountDigits bounds the octet count header: counts need at most 9
// digits, anything longer is not a header.
const maxCountDigits = 9

// initialBuffer is the size of a Reader's first buffer; it grows, up to
// the maximum message size plus a header, when a frame needs more.
const initialBuffer = 64 << 10

// Reader reads frames from a stream.
type Reader struct {
	rd      io.Reader
	buf     []byte
	r, w    int // unread data is buf[r:w]
	max     int
	limit   int // largest buffer: max + header + delimiter
	mode    Mode
	discard bool  // dropping the rest of a truncated frame up to its LF
	scanned int   // bytes from r known to hold no LF or NUL
	err     error // sticky read error
}

// NewReader returns a Reader of frames of at most max bytes.
func NewReader(rd io.Reader, max int) *Reader {
	if max < 1 {
		max = 1
	}
	limit := max + maxCountDigits + 2
	return &Reader{rd: rd, buf: make([]byte, min(initialBuffer, limit)), max: max, limit: limit}
}

// Mode returns the framing detected, Unknown before the first frame.
func (fr *Reader) Mode() Mode { return fr.mode }

// Peek returns the buffered bytes once at least one has arrived, reading
// if none has, without consuming them. It lets a caller recognise another
// protocol (a TLS ClientHello) before any framing.
func (fr *Reader) Peek() ([]byte, error) {
	for fr.w == fr.r {
		if fr.err != nil {
			return nil, fr.err
		}
		fr.fill()
	}
	return fr.buf[fr.r:fr.w], nil
}

// Next returns the next frame. At the end of the stream a final frame
// without its delimiter is returned first, then the read error (io.EOF
// for a clean end). Empty frames (blank lines, "0 ") are skipped.
func (fr *Reader) Next() (Frame, error) { return fr.next(false) }

// errNeedFill is next's answer, with noFill, when the next frame is not
// complete in the buffer.
var errNeedFill = errors.New("framing: need a read")

// Batch appends to frames every frame it can return with at most one
// read: it reads only when no complete frame is buffered, then returns
// the frames that read completed (at most max). All of them lie, in
// order, in region — one slice of the buffer — so a caller can convert
// region to a string once and cut each message from it; frame i starts
// at Offset(region, frames[i]). Frames and region are valid until the
// next call. The error is that of Next, returned with no frames.
func (fr *Reader) Batch(frames []Frame, max int) ([]Frame, []byte, error) {
	f, err := fr.next(false)
	if err != nil {
		return frames, nil, err
	}
	// next(true) never moves buffered data, but may grow into a new
	// buffer before it reports errNeedFill: the frames are in this one.
	buf := fr.buf
	start := cap(buf) - cap(f.Data)
	frames = append(frames, f)
	end := start + len(f.Data)
	for len(frames) < max {
		f, err := fr.next(true)
		if err != nil {
			break // errNeedFill, or an error the next call returns again
		}
		frames = append(frames, f)
		end = cap(buf) - cap(f.Data) + len(f.Data)
	}
	return frames, buf[start:end], nil
}

// Offset returns where f starts in region, both from one Batch.
func Offset(region []byte, f Frame) int { return cap(region) - cap(f.Data) }

func (fr *Reader) next(noFill bool) (Frame, error) {
	for {
		data := fr.buf[fr.r:fr.w]
		if fr.mode == Unknown {
			if len(data) == 0 {
				if fr.err != nil {
					return Frame{}, fr.err
				}
				if noFill {
					return Frame{}, errNeedFill
				}
				fr.fill()
				continue
			}
			m, ok := detect(data, fr.err != nil)
			if !ok {
				if noFill {
					return Frame{}, errNeedFill
				}
				fr.fill()
				continue
			}
			fr.mode = m
		}
		if fr.mode == OctetCounting && !fr.discard {
			f, status := fr.octetFrame(data)
			switch status {
			case frameOK:
				if len(f.Data) == 0 {
					continue
				}
				return f, nil
			case frameTooLarge:
				fr.err = ErrFrameTooLarge
				fr.r = fr.w
				return Frame{}, fr.err
			case frameNeedMore:
				if fr.err != nil {
					if len(data) == 0 {
						return Frame{}, fr.err
					}
					// The stream ended inside a frame: deliver what came.
					f := fr.partialCounted(data)
					fr.r = fr.w
					if len(f.Data) == 0 {
						return Frame{}, fr.err
					}
					return f, nil
				}
				if noFill {
					return Frame{}, errNeedFill
				}
				fr.fill()
				continue
			}
			// frameNotCounted: this frame has no count; read it as a line.
		}
		f, ok := fr.lineFrame(data)
		if ok {
			if len(f.Data) == 0 {
				continue
			}
			return f, nil
		}
		if fr.err != nil {
			if fr.r == fr.w || fr.discard {
				fr.r, fr.discard, fr.scanned = fr.w, false, 0
				return Frame{}, fr.err
			}
			// A final frame without delimiter.
			f := Frame{Data: trimLine(fr.buf[fr.r:fr.w])}
			fr.r, fr.scanned = fr.w, 0
			if len(f.Data) == 0 {
				return Frame{}, fr.err
			}
			return f, nil
		}
		if noFill {
			return Frame{}, errNeedFill
		}
		fr.fill()
	}
}

// detect decides the framing from the first bytes: a count (1 to 9
// digits, the first not 0), a space and '<' is octet counting; anything
// else is non-transparent, so a line such as "-5 <13>…" or "123 text"
// is a line. It asks for more bytes (ok false) while they could still
// change the answer, unless the stream has ended.
func detect(data []byte, eof bool) (Mode, bool) {
	if data[0] < '1' || data[0] > '9' {
		return NonTransparent, true
	}
	i := 1
	for i < len(data) && i < maxCountDigits && isDigit(data[i]) {
		i++
	}
	switch {
	case i+1 < len(data):
		if data[i] == ' ' && data[i+1] == '<' {
			return OctetCounting, true
		}
		return NonTransparent, true
	case i < len(data) && data[i] != ' ':
		return NonTransparent, true
	case eof:
		return NonTransparent, true
	}
	return Unknown, false
}

const (
	frameOK = iota
	frameNeedMore
	frameTooLarge
	frameNotCounted
)

// octetFrame reads "LEN SP MSG" at the start of data.
func (fr *Reader) octetFrame(data []byte) (Frame, int) {
	n, i := 0, 0
	for i < len(data) && isDigit(data[i]) {
		if i == maxCountDigits {
			return Frame{}, frameNotCounted
		}
		n = n*10 + int(data[i]-'0')
		i++
	}
	if i == len(data) {
		return Frame{}, frameNeedMore
	}
	if i == 0 || data[i] != ' ' {
		return Frame{}, frameNotCounted
	}
	if n > fr.max {
		return Frame{}, frameTooLarge
	}
	end := i + 1 + n
	if end > len(data) {
		if end > len(fr.buf)-fr.r {
			fr.grow(end)
		}
		return Frame{}, frameNeedMore
	}
	fr.r += end
	return Frame{Data: data[i+1 : end]}, frameOK
}

// partialCounted is what arrived of a counted frame cut by the end of the
// stream: the message after the count, marked truncated.
func (fr *Reader) partialCounted(data []byte) Frame {
	i := 0
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	if i < len(data) && data[i] == ' ' {
		return Frame{Data: data[i+1:], Truncated: true}
	}
	if len(data) > fr.max {
		return Frame{Data: data[:fr.max], Truncated: true}
	}
	return Frame{Data: trimLine(data)}
}

// lineFrame reads a frame ended by LF or NUL, cutting it at max bytes.
// fr.scanned remembers how much of data is known to hold no delimiter,
// so that a long frame arriving in small pieces is scanned once.
func (fr *Reader) lineFrame(data []byte) (Frame, bool) {
	if fr.discard {
		i := indexDelim(data[fr.scanned:])
		if i < 0 {
			fr.r, fr.scanned = fr.w, 0
			return Frame{}, false
		}
		fr.r += fr.scanned + i + 1
		fr.discard, fr.scanned = false, 0
		return Frame{}, true // an empty frame: the caller loops
	}
	search := data
	if len(search) > fr.max+1 {
		search = search[:fr.max+1]
	}
	if i := indexDelim(search[fr.scanned:]); i >= 0 {
		i += fr.scanned
		fr.r += i + 1
		fr.scanned = 0
		return Frame{Data: trimLine(data[:i])}, true
	}
	if len(data) > fr.max {
		fr.r += fr.max
		fr.discard, fr.scanned = true, 0
		return Frame{Data: data[:fr.max], Truncated: true}, true
	}
	fr.scanned = len(data)
	return Frame{}, false
}

// indexDelim returns the index of the first LF or NUL in b, or -1.
func indexDelim(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, 0)
	}
	if z := bytes.IndexByte(b[:i], 0); z >= 0 {
		return z
	}
	return i
}

// trimLine drops a trailing CR and NULs.
func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

// grow makes room for at least need unread bytes, up to the limit.
func (fr *Reader) grow(need int) {
	size := min(max(need, 2*len(fr.buf)), fr.limit)
	if size <= len(fr.buf) {
		return
	}
	nb := make([]byte, size)
	fr.w = copy(nb, fr.buf[fr.r:fr.w])
	fr.r = 0
	fr.buf = nb
}

// fill reads once into the free end of the buffer, first moving the
// unread bytes to the front.
func (fr *Reader) fill() {
	if fr.r > 0 {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
	}
	if fr.w == len(fr.buf) {
		fr.grow(len(fr.buf) + 1)
		if fr.w == len(fr.buf) {
			// Cannot happen: frames fit in the limit. Drop rather than spin.
			fr.w = 0
		}
	}
	n, err := fr.rd.Read(fr.buf[fr.w:])
	fr.w += n
	if err != nil {
		fr.err = err
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
