package main

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
)

// tailPrinter writes entries as aligned text (coloured on a terminal) or as
// JSON lines. Text output never passes control characters from a message
// to the terminal: they are shown escaped (\x1b), so that a log line
// cannot move the cursor or change colours.
type tailPrinter struct {
	w     *bufio.Writer
	json  bool
	color bool
	utc   bool
	hostW int // column widths, grown to the widest seen
	svcW  int
	buf   []byte
}

const (
	tailMinHostW = 12
	tailMinSvcW  = 20
	tailMaxColW  = 32
)

func newTailPrinter(w io.Writer, o *tailOptions) *tailPrinter {
	return &tailPrinter{w: bufio.NewWriterSize(w, 64<<10), json: o.json, color: o.color, utc: o.utc, hostW: tailMinHostW, svcW: tailMinSvcW}
}

func (p *tailPrinter) flush() error { return p.w.Flush() }

func tailIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ANSI SGR sequences.
const (
	sgrReset  = "\x1b[0m"
	sgrDim    = "\x1b[2m"
	sgrBold   = "\x1b[1m"
	sgrRed    = "\x1b[31m"
	sgrBRed   = "\x1b[1;31m"
	sgrYellow = "\x1b[33m"
	sgrCyan   = "\x1b[36m"
	sgrBlue   = "\x1b[34m"
)

var tailLevelColor = [bus.NumLevels]string{sgrBRed, sgrBRed, sgrBRed, sgrRed, sgrYellow, sgrBold, "", sgrDim}

func (p *tailPrinter) entry(m *pb.LogEntry) error {
	e := lsgrpc.V1ToEntry(m)
	b := p.buf[:0]
	if p.json {
		// The bus's JSON schema, with the stream sequence first.
		j := e.AppendJSON(nil)
		b = append(b, `{"seq":`...)
		b = strconv.AppendUint(b, m.GetSeq(), 10)
		if len(j) > 2 {
			b = append(b, ',')
		}
		b = append(b, j[1:]...)
		b = append(b, '\n')
		p.buf = b
		_, err := p.w.Write(b)
		return err
	}

	t := e.Time
	if t.IsZero() {
		t = e.Received
	}
	if p.utc {
		t = t.UTC()
	} else {
		t = t.Local()
	}
	paint := func(sgr string, f func()) {
		if p.color && sgr != "" {
			b = append(b, sgr...)
			f()
			b = append(b, sgrReset...)
			return
		}
		f()
	}
	paint(sgrDim, func() { b = t.AppendFormat(b, "2006-01-02 15:04:05.000") })
	b = append(b, ' ')

	host := tailClean(e.Host)
	svc := tailClean(e.Service)
	if svc == "" {
		svc = "-"
	}
	if e.PID > 0 {
		svc += "[" + strconv.Itoa(e.PID) + "]"
	}
	p.hostW = min(max(p.hostW, utf8.RuneCountInString(host)), tailMaxColW)
	p.svcW = min(max(p.svcW, utf8.RuneCountInString(svc)), tailMaxColW)
	paint(sgrBlue, func() { b = tailPad(b, host, p.hostW) })
	b = append(b, ' ')
	paint(sgrCyan, func() { b = tailPad(b, svc, p.svcW) })
	b = append(b, ' ')
	lvl := e.Level
	if !lvl.Valid() {
		lvl = bus.LevelNotice
	}
	paint(tailLevelColor[lvl], func() { b = tailPad(b, lvl.String(), 7) })
	b = append(b, ' ')

	// The message; continuation lines are indented to its column.
	indent := 24 + p.hostW + 1 + p.svcW + 1 + 8
	msgColor := ""
	if lvl <= bus.LevelErr {
		msgColor = tailLevelColor[lvl]
	}
	paint(msgColor, func() {
		for i, line := range strings.Split(strings.TrimRight(e.Message, "\n"), "\n") {
			if i > 0 {
				b = append(b, '\n')
				b = append(b, strings.Repeat(" ", indent)...)
			}
			b = tailEscape(b, strings.TrimSuffix(line, "\r"))
		}
	})
	b = append(b, '\n')
	p.buf = b
	_, err := p.w.Write(b)
	return err
}

// tailPad appends s cut or padded with spaces to width runes.
func tailPad(b []byte, s string, width int) []byte {
	n := 0
	for i, r := range s {
		if n == width {
			if width > 1 {
				// Cut: mark it.
				b = b[:len(b)-len(string(tailLastRune(s[:i])))]
				b = append(b, "…"...)
			}
			return b
		}
		b = utf8.AppendRune(b, r)
		n++
	}
	for ; n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

func tailLastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

// tailClean replaces control characters and invalid UTF-8 in a short field.
func tailClean(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) }) {
		return s
	}
	return string(tailEscape(nil, s))
}

// tailEscape appends s with control characters (but tab) escaped as
// \xNN or \u00NN, and invalid UTF-8 bytes as \xNN.
func tailEscape(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'x', tailHex(s[i]>>4), tailHex(s[i]&0xf))
		case r == '\t':
			b = append(b, '\t')
		case r < 0x20 || r == 0x7f:
			b = append(b, '\\', 'x', tailHex(byte(r)>>4), tailHex(byte(r)&0xf))
		case r >= 0x80 && r < 0xa0: // C1 controls, such as CSI
			b = append(b, `\u00`...)
			b = append(b, tailHex(byte(r)>>4), tailHex(byte(r)&0xf))
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

func tailHex(c byte) byte { return "0123456789abcdef"[c&0xf] }
