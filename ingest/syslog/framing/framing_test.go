package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

type got struct {
	frames    []string
	truncated []bool
	err       error
}

func readAll(r io.Reader, max int) got {
	fr := NewReader(r, max)
	var g got
	for {
		f, err := fr.Next()
		if err != nil {
			g.err = err
			return g
		}
		if len(f.Data) > max {
			panic(fmt.Sprintf("frame of %d bytes over max %d", len(f.Data), max))
		}
		g.frames = append(g.frames, string(f.Data))
		g.truncated = append(g.truncated, f.Truncated)
	}
}

func octet(msgs ...string) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(strconv.Itoa(len(m)) + " " + m)
	}
	return b.String()
}

// chunkReader returns its data in pieces of the given sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.sizes[c.i%len(c.sizes)], len(p), len(c.data))
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestFrames(t *testing.T) {
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name      string
		in        string
		max       int
		want      []string
		truncated []int // indexes of truncated frames
		err       error
	}{
		{"lf", "<13>a\n<13>b\n", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"crlf", "<13>a\r\n<13>b\r\n", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"nul", "<13>a\x00<13>b\x00", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"nul then lf", "<13>a\x00\n<13>b\x00\n", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"blank lines skipped", "\n\n<13>a\n\r\n\n<13>b\n", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"final frame without newline", "<13>a\n<13>b", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"octet", octet("<13>1 - - - - - a", "<13>b\nwith newline", "<13>c"), 1024,
			[]string{"<13>1 - - - - - a", "<13>b\nwith newline", "<13>c"}, nil, io.EOF},
		{"octet with trailing newlines (rsyslog)", "5 <13>a\n5 <13>b\n", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"octet zero length skipped", "5 <13>a0 5 <13>b", 1024, []string{"<13>a", "<13>b"}, nil, io.EOF},
		{"octet exactly max", octet("<13>" + long[:96]), 100, []string{"<13>" + long[:96]}, nil, io.EOF},
		{"octet over max closes", octet("<13>a", "<13>"+long) + octet("<13>c"), 100, []string{"<13>a"}, nil, ErrFrameTooLarge},
		{"octet huge count", "5 <13>a99999999999 <13>x\n", 1024, []string{"<13>a", "99999999999 <13>x"}, nil, io.EOF},
		{"octet cut by close", "5 <13>a10 <13>b", 1024, []string{"<13>a", "<13>b"}, []int{1}, io.EOF},
		{"octet bad header read as a line", "5 <13>a<13>b no count\n5 <13>c", 1024, []string{"<13>a", "<13>b no count", "<13>c"}, nil, io.EOF},
		{"negative count is a line", "-5 <13>1 - - - - - x\n<13>y\n", 1024, []string{"-5 <13>1 - - - - - x", "<13>y"}, nil, io.EOF},
		{"number and text is a line", "123 text\n456 more\n", 1024, []string{"123 text", "456 more"}, nil, io.EOF},
		{"lf over max truncated, next kept", "<13>" + long + "\n<13>b\n", 50, []string{("<13>" + long)[:50], "<13>b"}, []int{0}, io.EOF},
		{"lf exactly max", "<13>" + long[:46] + "\n<13>b\n", 50, []string{"<13>" + long[:46], "<13>b"}, nil, io.EOF},
		{"lf over max at close", "<13>" + long, 50, []string{("<13>" + long)[:50]}, []int{0}, io.EOF},
		{"empty", "", 1024, nil, nil, io.EOF},
		{"only digits", "12", 1024, []string{"12"}, nil, io.EOF},
	} {
		for _, split := range []struct {
			name string
			r    func(string) io.Reader
		}{
			{"whole", func(s string) io.Reader { return strings.NewReader(s) }},
			{"one byte", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }},
			{"odd chunks", func(s string) io.Reader { return &chunkReader{data: []byte(s), sizes: []int{3, 1, 7, 2}} }},
		} {
			t.Run(tc.name+"/"+split.name, func(t *testing.T) {
				g := readAll(split.r(tc.in), tc.max)
				if !errors.Is(g.err, tc.err) {
					t.Fatalf("error %v, want %v", g.err, tc.err)
				}
				if fmt.Sprintf("%q", g.frames) != fmt.Sprintf("%q", tc.want) {
					t.Fatalf("frames\n got %q\nwant %q", g.frames, tc.want)
				}
				for i, tr := range g.truncated {
					want := false
					for _, j := range tc.truncated {
						want = want || i == j
					}
					if tr != want {
						t.Fatalf("frame %d truncated %v, want %v", i, tr, want)
					}
				}
			})
		}
	}
}

func TestModeDetection(t *testing.T) {
	for in, want := range map[string]Mode{
		"12 <13>1 - - - - - hello": OctetCounting,
		"<13>hello\n":              NonTransparent,
		"12 hello\n":               NonTransparent,
		"-5 <13>x\n":               NonTransparent,
		"0 <13>x\n":                NonTransparent,
	} {
		fr := NewReader(strings.NewReader(in), 1024)
		if _, err := fr.Next(); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if fr.Mode() != want {
			t.Errorf("%q: mode %v, want %v", in, fr.Mode(), want)
		}
	}
}

// TestManyFramesOneRead checks that one large read yields every frame
// and that the buffer serves them without another read.
func TestManyFramesOneRead(t *testing.T) {
	var in bytes.Buffer
	var want []string
	for i := range 1000 {
		m := fmt.Sprintf("<13>1 - host app - - - message %d", i)
		want = append(want, m)
		if i%2 == 0 {
			in.WriteString(octet(m))
		} else {
			in.WriteString(m + "\n")
		}
	}
	reads := 0
	r := readerFunc(func(p []byte) (int, error) {
		reads++
		return in.Read(p)
	})
	fr := NewReader(r, 64<<10)
	for i, w := range want {
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if string(f.Data) != w {
			t.Fatalf("frame %d: %q, want %q", i, f.Data, w)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after last frame: %v", err)
	}
	if reads > 4 {
		t.Fatalf("%d reads for %d bytes", reads, 50000)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestLongLineSlowly feeds a frame of max bytes one byte per read: the
// reader must not rescan what it has seen (this would take minutes).
func TestLongLineSlowly(t *testing.T) {
	const max = 256 << 10
	line := "<13>" + strings.Repeat("y", max-4)
	g := readAll(iotest.OneByteReader(strings.NewReader(line+"\n<13>z\n")), max)
	if len(g.frames) != 2 || g.frames[0] != line || g.frames[1] != "<13>z" {
		t.Fatalf("got %d frames", len(g.frames))
	}
}

func TestPeek(t *testing.T) {
	fr := NewReader(iotest.OneByteReader(strings.NewReader("\x16\x03\x01")), 1024)
	b, err := fr.Peek()
	if err != nil || len(b) != 1 || b[0] != 0x16 {
		t.Fatalf("peek %q %v", b, err)
	}
	fr = NewReader(strings.NewReader("<13>a\n"), 1024)
	if b, _ := fr.Peek(); string(b) != "<13>a\n" {
		t.Fatalf("peek %q", b)
	}
	if f, _ := fr.Next(); string(f.Data) != "<13>a" {
		t.Fatalf("next after peek %q", f.Data)
	}
}

// FuzzReader: any byte stream, read whole and one byte at a time, gives
// the same frames, none over the maximum, and ends.
func FuzzReader(f *testing.F) {
	f.Add([]byte("5 <13>a5 <13>b"), uint16(64))
	f.Add([]byte("<13>a\r\n<13>b\x00<13>c"), uint16(3))
	f.Add([]byte("-5 <13>1 x\n"), uint16(64))
	f.Add([]byte("999999999 <"), uint16(64))
	f.Add([]byte("12"), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		m := int(max%512) + 1
		a := readAll(bytes.NewReader(in), m)
		b := readAll(iotest.OneByteReader(bytes.NewReader(in)), m)
		c := readBatches(&chunkReader{data: in, sizes: []int{3, 64, 1}}, m)
		if fmt.Sprintf("%q %v", a.frames, a.truncated) != fmt.Sprintf("%q %v", c.frames, c.truncated) || a.err != c.err {
			t.Fatalf("whole: %q %v %v\nbatches: %q %v %v", a.frames, a.truncated, a.err, c.frames, c.truncated, c.err)
		}
		if fmt.Sprintf("%q %v", a.frames, a.truncated) != fmt.Sprintf("%q %v", b.frames, b.truncated) || a.err != b.err {
			t.Fatalf("whole: %q %v %v\none byte: %q %v %v", a.frames, a.truncated, a.err, b.frames, b.truncated, b.err)
		}
		total := 0
		for _, fr := range a.frames {
			total += len(fr)
		}
		if total > len(in) {
			t.Fatalf("%d bytes of frames from %d bytes", total, len(in))
		}
	})
}

// FuzzRoundTrip: messages framed either way come back exactly.
func FuzzRoundTrip(f *testing.F) {
	f.Add("<13>a\x1f<13>b", true)
	f.Add("<13>1 - - - - - x\x1f\x1f", false)
	f.Fuzz(func(t *testing.T, joined string, counted bool) {
		var msgs []string
		for m := range strings.SplitSeq(joined, "\x1f") {
			if !counted {
				m = strings.Map(func(r rune) rune {
					if r == '\n' || r == 0 {
						return -1
					}
					return r
				}, m)
				m = strings.TrimRight(m, "\r")
			}
			if m != "" && len(m) <= 4096 {
				msgs = append(msgs, "<13>"+m)
			}
		}
		var in string
		if counted {
			in = octet(msgs...)
		} else {
			in = strings.Join(msgs, "\n")
		}
		g := readAll(&chunkReader{data: []byte(in), sizes: []int{1, 5, 100}}, 8192)
		if g.err != io.EOF || fmt.Sprintf("%q", g.frames) != fmt.Sprintf("%q", msgs) {
			t.Fatalf("in %q:\n got %q %v\nwant %q", in, g.frames, g.err, msgs)
		}
	})
}

func BenchmarkReader(b *testing.B) {
	msg := "<165>1 2026-03-10T11:59:59.003Z mymachine.example.com evntslog 1234 ID47 - An application event log entry with some text in it to make it about 200 bytes long"
	for _, counted := range []bool{true, false} {
		var in []byte
		for range 10000 {
			if counted {
				in = append(in, octet(msg)...)
			} else {
				in = append(in, msg+"\n"...)
			}
		}
		b.Run(map[bool]string{true: "octet", false: "lf"}[counted], func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				fr := NewReader(bytes.NewReader(in), 64<<10)
				for {
					if _, err := fr.Next(); err != nil {
						break
					}
				}
			}
		})
	}
}

// readBatches reads everything with Batch, converting each region once,
// as the receiver does.
func readBatches(r io.Reader, max int) got {
	fr := NewReader(r, max)
	var g got
	var frames []Frame
	for {
		var region []byte
		var err error
		frames, region, err = fr.Batch(frames[:0], 100)
		if err != nil {
			g.err = err
			return g
		}
		s := string(region)
		for _, f := range frames {
			off := Offset(region, f)
			if off < 0 || off+len(f.Data) > len(s) || s[off:off+len(f.Data)] != string(f.Data) {
				panic(fmt.Sprintf("frame at %d (%d bytes) not in region of %d", off, len(f.Data), len(s)))
			}
			g.frames = append(g.frames, s[off:off+len(f.Data)])
			g.truncated = append(g.truncated, f.Truncated)
		}
	}
}

// TestBatch: Batch gives the frames Next gives, however the stream is
// cut, each found in its region.
func TestBatch(t *testing.T) {
	var in strings.Builder
	for i := range 500 {
		m := fmt.Sprintf("<13>1 - host app - - - message %d %s", i, strings.Repeat("p", i%300))
		if i%3 == 0 {
			in.WriteString(octet(m))
		} else {
			in.WriteString(m + "\n")
		}
	}
	in.WriteString("<13>" + strings.Repeat("L", 5000) + "\n<13>end")
	for _, sizes := range [][]int{{1 << 20}, {1}, {7, 300, 4096}, {65536, 3}} {
		want := readAll(strings.NewReader(in.String()), 1000)
		got := readBatches(&chunkReader{data: []byte(in.String()), sizes: sizes}, 1000)
		if fmt.Sprintf("%q %v %v", got.frames, got.truncated, got.err) != fmt.Sprintf("%q %v %v", want.frames, want.truncated, want.err) {
			t.Fatalf("sizes %v: batches differ from Next", sizes)
		}
	}
}
