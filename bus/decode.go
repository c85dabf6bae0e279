package bus

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decoder reads the entry schema straight from the bytes: every entry a
// delivery path filters or re-encodes is decoded, so this avoids
// encoding/json's reflection (about 5× faster, a few allocations). It
// accepts exactly what encoding/json accepts for wireEntry — the
// differential fuzz target FuzzDecodeAgainstStd holds it to that.
type decoder struct {
	b     []byte
	i     int
	depth int
	err   error
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// enter counts one more level of nesting.
func (d *decoder) enter() bool {
	d.depth++
	if d.depth > maxDepth {
		d.fail(errors.New("exceeded max depth"))
		return false
	}
	return true
}

var errSyntax = errors.New("invalid JSON")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) expect(c byte) {
	if d.peek() != c {
		d.fail(errSyntax)
		return
	}
	d.i++
}

// literal consumes true, false or null.
func (d *decoder) literal() string {
	for _, lit := range []string{"true", "false", "null"} {
		if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
			d.i += len(lit)
			return lit
		}
	}
	d.fail(errSyntax)
	return ""
}

// str reads a JSON string (the opening quote is next).
func (d *decoder) str() string {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		d.fail(errSyntax)
		return ""
	}
	d.i++
	start := d.i
	simple := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			raw := d.b[start:d.i]
			d.i++
			if simple {
				if utf8.Valid(raw) {
					return string(raw)
				}
				return repairUTF8(raw)
			}
			return d.unescape(raw)
		case c == '\\':
			simple = false
			d.i += 2
		case c < 0x20:
			d.fail(errSyntax)
			return ""
		default:
			d.i++
		}
	}
	d.fail(errSyntax)
	return ""
}

// repairUTF8 replaces every invalid byte with U+FFFD, as encoding/json does.
func repairUTF8(raw []byte) string {
	out := make([]rune, 0, len(raw))
	for len(raw) > 0 {
		r, n := utf8.DecodeRune(raw)
		out = append(out, r)
		raw = raw[n:]
	}
	return string(out)
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (d *decoder) unescape(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				out = append(out, c)
				i++
				continue
			}
			r, n := utf8.DecodeRune(raw[i:])
			out = utf8.AppendRune(out, r) // U+FFFD for an invalid byte
			i += n
			continue
		}
		if i+1 >= len(raw) {
			d.fail(errSyntax)
			return ""
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			out = append(out, raw[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				d.fail(errSyntax)
				return ""
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2, ok := hex4(raw[i+2:]); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			d.fail(errSyntax)
			return ""
		}
		i += 2
	}
	return string(out)
}

// number reads a JSON number and returns its text.
func (d *decoder) number() []byte {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	intStart := d.i
	if digits() == 0 || d.b[intStart] == '0' && d.i-intStart > 1 {
		d.fail(errSyntax)
		return nil
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			d.fail(errSyntax)
			return nil
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			d.fail(errSyntax)
			return nil
		}
	}
	return d.b[start:d.i]
}

// intValue reads an integer field; null leaves it unset.
func (d *decoder) intValue(key string) (int, bool) {
	switch d.peek() {
	case 'n':
		if d.literal() != "null" {
			d.fail(errSyntax)
		}
		return 0, false
	case '"', '{', '[', 't', 'f':
		d.skip()
		d.fail(fmt.Errorf("%s: not a number", key))
		return 0, false
	}
	num := d.number()
	if d.err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(string(num), 10, strconv.IntSize)
	if err != nil {
		d.fail(fmt.Errorf("%s: %s is not an integer", key, num))
		return 0, false
	}
	return int(n), true
}

// strValue reads a string field; null leaves it unset.
func (d *decoder) strValue(key string) (string, bool) {
	switch d.peek() {
	case '"':
		return d.str(), true
	case 'n':
		if d.literal() != "null" {
			d.fail(errSyntax)
		}
		return "", false
	}
	d.skip()
	d.fail(fmt.Errorf("%s: not a string", key))
	return "", false
}

// skip validates and skips any value.
func (d *decoder) skip() {
	switch d.peek() {
	case '"':
		d.str()
	case '{':
		d.i++
		if !d.enter() {
			return
		}
		defer func() { d.depth-- }()
		if d.peek() == '}' {
			d.i++
			return
		}
		for d.err == nil {
			d.str()
			d.expect(':')
			d.skip()
			if d.peek() == ',' {
				d.i++
				continue
			}
			d.expect('}')
			return
		}
	case '[':
		d.i++
		if !d.enter() {
			return
		}
		defer func() { d.depth-- }()
		if d.peek() == ']' {
			d.i++
			return
		}
		for d.err == nil {
			d.skip()
			if d.peek() == ',' {
				d.i++
				continue
			}
			d.expect(']')
			return
		}
	case 't', 'f', 'n':
		d.literal()
	default:
		d.number()
	}
}

// timeValue reads a time the way time.Time.UnmarshalJSON does (strict
// RFC 3339, no escapes). ok is false for null, which leaves it unset.
func (d *decoder) timeValue(key string) (t time.Time, ok bool) {
	if d.peek() == 'n' {
		if d.literal() != "null" {
			d.fail(errSyntax)
		}
		return t, false
	}
	start := d.i
	if _, isStr := d.strValue(key); !isStr || d.err != nil {
		return t, false
	}
	if err := t.UnmarshalJSON(d.b[start:d.i]); err != nil {
		d.fail(fmt.Errorf("%s: %v", key, err))
		return t, false
	}
	return t, true
}

// fields reads the fields object into m (merging, as encoding/json does);
// null makes it nil.
func (d *decoder) fields(m map[string]string) map[string]string {
	switch d.peek() {
	case 'n':
		if d.literal() != "null" {
			d.fail(errSyntax)
		}
		return nil
	case '{':
	default:
		d.skip()
		d.fail(errors.New("fields: not an object"))
		return m
	}
	d.i++
	if !d.enter() {
		return m
	}
	d.depth--
	if m == nil {
		m = make(map[string]string, 4)
	}
	if d.peek() == '}' {
		d.i++
		return m
	}
	for d.err == nil {
		k := d.str()
		d.expect(':')
		v, _ := d.strValue("fields")
		if d.err != nil {
			return m
		}
		m[k] = v // null stores ""
		if d.peek() == ',' {
			d.i++
			continue
		}
		d.expect('}')
		break
	}
	return m
}

// setStr stores a string value; null leaves *dst as it was.
func (d *decoder) setStr(key string, dst *string) {
	if v, ok := d.strValue(key); ok {
		*dst = v
	}
}

func (d *decoder) timePtr(key string) *time.Time {
	if t, ok := d.timeValue(key); ok {
		return &t
	}
	return nil
}

// decodeWire fills w from data.
func decodeWire(data []byte, w *wireEntry) error {
	d := decoder{b: data}
	switch d.peek() {
	case '{':
	case 'n':
		// A top-level null is not an entry: encoding/json would leave the
		// struct empty, which then has no level.
		d.literal()
		d.ws()
		if d.err != nil || d.i != len(d.b) {
			return errSyntax
		}
		return nil
	default:
		d.skip()
		if d.err != nil {
			return d.err
		}
		return errors.New("not an object")
	}
	d.i++
	d.enter()
	if d.peek() == '}' {
		d.i++
	} else {
		for d.err == nil {
			key := d.str()
			d.expect(':')
			if d.err != nil {
				break
			}
			switch key {
			case "time":
				w.Time = d.timePtr(key)
			case "received":
				w.Received = d.timePtr(key)
			case "host":
				d.setStr(key, &w.Host)
			case "service":
				d.setStr(key, &w.Service)
			case "level":
				w.Level = nil
				if s, ok := d.strValue(key); ok {
					w.Level = &s
				}
			case "severity":
				w.Severity = nil
				if n, ok := d.intValue(key); ok {
					w.Severity = &n
				}
			case "facility":
				d.setStr(key, &w.Facility)
			case "pid":
				if n, ok := d.intValue(key); ok {
					w.PID = n
				}
			case "message":
				d.setStr(key, &w.Message)
			case "source":
				d.setStr(key, &w.Source)
			case "fields":
				w.Fields = d.fields(w.Fields)
			case "id":
				d.setStr(key, &w.ID)
			default:
				d.skip()
			}
			if d.peek() == ',' {
				d.i++
				continue
			}
			d.expect('}')
			break
		}
	}
	d.ws()
	if d.err == nil && d.i != len(d.b) {
		d.fail(errSyntax)
	}
	return d.err
}
