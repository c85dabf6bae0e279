// Package parse turns one syslog message — RFC 5424, or RFC 3164 as real
// senders write it — into a bus.Entry. It is the receiver's hot path: one
// pass over the line, no regular expressions, and every string of the
// entry (host, service, message, structured data without escapes) shares
// the memory of the line it was given, so a typical message costs no
// allocation beyond the line itself and, when it has some, its fields map.
//
// Format is detected per message: "<PRI>" followed by a version number,
// a space and a time stamp (or "-") is RFC 5424; anything else after a
// PRI is RFC 3164, parsed leniently. A line that cannot be parsed is kept
// whole as the message, at level notice, with a parse_error field.
//
// Why not gopkg.in/mcuadros/go-syslog.v2's parsers: they are the
// reference these are fuzzed against (see parse_test.go), but at 1.9 µs
// and 20 allocations per RFC 5424 message (1.1 µs, 11 for RFC 3164, most
// of it building a map[string]interface{} per message) they would take
// half a core at the 300,000 messages/s the receiver is built for, and
// v2.3.0's RFC 3164 parser gets much of the lenient corpus wrong: it
// panics on a PRI-only line, ignores the PID in "tag[pid]:", calls
// os.Hostname for every message without HOSTNAME, cannot read RFC 3339
// stamps with fractions, resolves year-less stamps against time.Now
// without regard to new year, drops the tag after two spaces; and its
// RFC 5424 parser returns structured data as one raw string, cut at the
// first "] " even inside an escaped value.
//
// Parse is a pure function, safe for concurrent use.
package parse

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/logstream/logstream/bus"
)

// Format is the syslog format a message was read as.
type Format uint8

const (
	// Unparsed: the line could not be parsed; the entry holds it whole.
	Unparsed Format = iota
	// RFC3164 is the BSD format, as glibc, /dev/log senders and network
	// devices write it.
	RFC3164
	// RFC5424 is the IETF format.
	RFC5424
)

func (f Format) String() string {
	switch f {
	case RFC3164:
		return "rfc3164"
	case RFC5424:
		return "rfc5424"
	}
	return "unparsed"
}

// Field keys set by Parse besides structured data ("sd.<id>.<param>").
const (
	FieldMsgID      = "msgid"
	FieldProcID     = "procid" // RFC 5424 PROCID or RFC 3164 [pid] that is not a number
	FieldParseError = "parse_error"
)

// UnknownService is the service of a message with no APP-NAME or tag.
const UnknownService = "unknown"

// Options are what Parse needs besides the line.
type Options struct {
	// Received is when the message was read. It is the entry's time when
	// the message has none, and the reference against which RFC 3164's
	// year-less stamps get their year.
	Received time.Time
	// Location is the time zone of RFC 3164 stamps without an offset.
	// nil means UTC.
	Location *time.Location
}

// Parse errors, in the parse_error field of an entry.
var (
	ErrNoPRI         = errors.New("no PRI")
	ErrBadPRI        = errors.New("invalid PRI")
	ErrTimestamp     = errors.New("rfc5424: invalid TIMESTAMP")
	ErrHeader        = errors.New("rfc5424: incomplete header")
	ErrSD            = errors.New("rfc5424: invalid STRUCTURED-DATA")
	ErrEmptyHeaderSP = errors.New("rfc5424: empty header field")
)

const bom = "\xef\xbb\xbf"

// Parse parses line into e, overwriting it. e.Host stays empty when the
// message names no host: the caller fills in the peer or local host. It
// returns the format the line was read as and, when parsing failed or was
// partial, the error, which is also in e.Fields["parse_error"]. An
// unparsed line is the message whole, at level notice.
func Parse(line string, o *Options, e *bus.Entry) (Format, error) {
	*e = bus.Entry{Received: o.Received, Source: bus.SourceSyslog, Level: bus.LevelNotice}
	line = strings.TrimPrefix(line, bom)
	pri, rest, err := parsePRI(line)
	if err != nil {
		unparsed(e, line, err)
		if err == ErrNoPRI {
			// RFC 3164 section 4.3.3: a message without PRI is user.notice.
			e.Facility = bus.FacilityFromCode(1)
		}
		return Unparsed, err
	}
	e.Facility = bus.FacilityFromCode(pri >> 3)
	e.Level = bus.Level(pri & 7)
	if n := version5424(rest); n > 0 {
		if err := parse5424(rest[n:], e); err != nil {
			if e.Message == "" && e.Service == "" {
				// The header itself is broken: keep the line whole.
				unparsed(e, line, err)
				e.Facility = bus.FacilityFromCode(pri >> 3)
				return Unparsed, err
			}
			setField(e, FieldParseError, err.Error())
			finish(e, o)
			return RFC5424, err
		}
		finish(e, o)
		return RFC5424, nil
	}
	parse3164(rest, o, e)
	finish(e, o)
	return RFC3164, nil
}

func unparsed(e *bus.Entry, line string, err error) {
	*e = bus.Entry{Received: e.Received, Source: bus.SourceSyslog, Level: bus.LevelNotice,
		Service: UnknownService, Message: line}
	setField(e, FieldParseError, err.Error())
	e.Time = e.Received
}

func finish(e *bus.Entry, o *Options) {
	if e.Time.IsZero() {
		e.Time = o.Received
	}
	if e.Service == "" {
		e.Service = UnknownService
	}
}

func setField(e *bus.Entry, k, v string) {
	if e.Fields == nil {
		e.Fields = make(map[string]string, 4)
	}
	e.Fields[k] = v
}

// parsePRI reads "<N>" with N from 0 to 191.
func parsePRI(s string) (int, string, error) {
	if len(s) == 0 || s[0] != '<' {
		return 0, s, ErrNoPRI
	}
	v, i := 0, 1
	for ; i < len(s) && i <= 4 && isDigit(s[i]); i++ {
		v = v*10 + int(s[i]-'0')
	}
	if i == 1 || i > 4 || i >= len(s) || s[i] != '>' || v > 191 {
		return 0, s, ErrBadPRI
	}
	return v, s[i+1:], nil
}

// version5424 returns the length of "VERSION SP" when s (after the PRI)
// starts an RFC 5424 header: a version of one or two digits, a space, and
// then NILVALUE or a four-digit year and '-'. Anything else is RFC 3164,
// so that a 3164 body such as "1 apple" is not taken for 5424.
func version5424(s string) int {
	i := 0
	for i < len(s) && i < 3 && isDigit(s[i]) {
		i++
	}
	if i == 0 || i > 2 || s[0] == '0' || i >= len(s) || s[i] != ' ' {
		return 0
	}
	t := s[i+1:]
	if len(t) >= 2 && t[0] == '-' && t[1] == ' ' || t == "-" {
		return i + 1
	}
	if len(t) >= 5 && isDigit(t[0]) && isDigit(t[1]) && isDigit(t[2]) && isDigit(t[3]) && t[4] == '-' {
		return i + 1
	}
	return 0
}

// parse5424 parses what follows "<PRI>VERSION SP". On a header error
// e.Message and e.Service are left empty; on a structured data error the
// header is kept and the rest of the line becomes the message.
func parse5424(s string, e *bus.Entry) error {
	var f [5]string
	for i := range f {
		sp := strings.IndexByte(s, ' ')
		if sp < 0 {
			if i < 4 {
				return ErrHeader
			}
			f[i], s = s, ""
		} else {
			f[i], s = s[:sp], s[sp+1:]
		}
		if f[i] == "" {
			return ErrEmptyHeaderSP
		}
	}
	if f[0] != "-" {
		t, ok := parseRFC3339(f[0], nil)
		if !ok {
			return ErrTimestamp
		}
		e.Time = t
	}
	e.Host = nilvalue(f[1])
	e.Service = nilvalue(f[2])
	setPID(e, nilvalue(f[3]))
	if id := nilvalue(f[4]); id != "" {
		setField(e, FieldMsgID, id)
	}
	if e.Service == "" {
		e.Service = UnknownService
	}
	switch {
	case s == "":
		return nil
	case s[0] == '-':
		s = s[1:]
	case s[0] == '[':
		rest, err := parseSD(s, e)
		if err != nil {
			// Keep no half of it: the raw text is in the message.
			for k := range e.Fields {
				if strings.HasPrefix(k, "sd.") {
					delete(e.Fields, k)
				}
			}
			e.Message = s
			return err
		}
		s = rest
	default:
		e.Message = s
		return ErrSD
	}
	if len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	e.Message = strings.TrimPrefix(s, bom)
	return nil
}

func nilvalue(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// setPID sets e.PID from a numeric process ID, else the procid field.
func setPID(e *bus.Entry, id string) {
	if id == "" {
		return
	}
	if n, err := strconv.Atoi(id); err == nil && n > 0 && n <= 1<<31-1 {
		e.PID = n
		return
	}
	setField(e, FieldProcID, id)
}

// parseSD parses one or more SD-ELEMENTs into "sd.<id>.<param>" fields
// (an element without parameters becomes "sd.<id>" with an empty value;
// a repeated parameter's values are joined with ","). It returns what
// follows the last element.
func parseSD(s string, e *bus.Entry) (string, error) {
	for len(s) > 0 && s[0] == '[' {
		i := 1
		for i < len(s) && s[i] != ' ' && s[i] != ']' && s[i] != '=' && s[i] != '"' {
			i++
		}
		if i == 1 || i >= len(s) || (s[i] != ' ' && s[i] != ']') {
			return s, ErrSD
		}
		id := s[1:i]
		params := 0
		for i < len(s) && s[i] == ' ' {
			for i < len(s) && s[i] == ' ' {
				i++
			}
			j := i
			for j < len(s) && s[j] != '=' && s[j] != ' ' && s[j] != ']' && s[j] != '"' {
				j++
			}
			if j == i || j+1 >= len(s) || s[j] != '=' || s[j+1] != '"' {
				return s, ErrSD
			}
			name := s[i:j]
			val, n, ok := sdValue(s[j+2:])
			if !ok {
				return s, ErrSD
			}
			i = j + 2 + n
			addSD(e, "sd."+id+"."+name, val)
			params++
		}
		if i >= len(s) || s[i] != ']' {
			return s, ErrSD
		}
		if params == 0 {
			addSD(e, "sd."+id, "")
		}
		s = s[i+1:]
	}
	return s, nil
}

func addSD(e *bus.Entry, k, v string) {
	if old, ok := e.Fields[k]; ok {
		v = old + "," + v
	}
	setField(e, k, v)
}

// sdValue reads a PARAM-VALUE up to its closing quote, undoing the
// escapes \" \\ and \] (a backslash before any other character is kept,
// as RFC 5424 section 6.3.3 says). It returns the value, the bytes
// consumed including the closing quote, and whether one was found.
func sdValue(s string) (string, int, bool) {
	esc := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\' || s[i+1] == ']') {
			esc = true
			i++
			continue
		}
		if c == '"' {
			break
		}
	}
	if i >= len(s) {
		return "", 0, false
	}
	if !esc {
		return s[:i], i + 1, true
	}
	var b strings.Builder
	b.Grow(i)
	for j := 0; j < i; j++ {
		if s[j] == '\\' && j+1 < i && (s[j+1] == '"' || s[j+1] == '\\' || s[j+1] == ']') {
			j++
		}
		b.WriteByte(s[j])
	}
	return b.String(), i + 1, true
}

// parse3164 parses what follows the PRI of an RFC 3164 message, as
// leniently as rsyslog: an optional Cisco sequence number ("123: "), an
// optional time stamp ("Mmm dd hh:mm:ss" with optional fraction and year,
// or RFC 3339), an optional HOSTNAME, an optional "tag[pid]:" or "tag:",
// and the message. Without a time stamp there is no HOSTNAME (RFC 3164
// section 4.3.2); a word followed by ':' right after the time stamp is a
// tag, not a host (glibc and /dev/log senders omit the host).
func parse3164(s string, o *Options, e *bus.Entry) {
	t, n, ok := parse3164Time(s, o)
	if !ok {
		// Cisco IOS: "<189>123: *Mar  1 18:46:11.123: %SYS-5-...".
		if seq := ciscoSeq(s); seq > 0 {
			if t, n, ok = parse3164Time(s[seq:], o); ok {
				n += seq
			}
		}
	}
	if ok {
		e.Time = t
		s = trimSpaces(s[n:])
		word, rest, more := strings.Cut(s, " ")
		switch {
		case more && isIPv6(word):
			e.Host = word
			s = trimSpaces(rest)
			parseTag(s, e)
		case parseTag(s, e):
		case more && plausibleHost(word):
			e.Host = word
			s = trimSpaces(rest)
			parseTag(s, e)
		}
	} else {
		parseTag(s, e)
	}
	if e.Service == "" {
		e.Message = strings.TrimPrefix(s, bom)
	}
}

func ciscoSeq(s string) int {
	i := 0
	for i < len(s) && i < 10 && isDigit(s[i]) {
		i++
	}
	if i > 0 && i+1 < len(s) && s[i] == ':' && s[i+1] == ' ' {
		return i + 2
	}
	return 0
}

func trimSpaces(s string) string {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	return s
}

// isIPv6 reports whether a word is an IPv6 address used as HOSTNAME, so
// that "fe80::1 sshd: …" is not read as tag "fe80".
func isIPv6(s string) bool {
	colons := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			colons++
		case isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'f' || c == '.':
		default:
			return false
		}
	}
	return colons >= 2
}

// plausibleHost reports whether a word can be a HOSTNAME: printable ASCII
// (or UTF-8) without brackets, quotes or '='.
func plausibleHost(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '[' || c == ']' || c == '"' || c == '=' || c == '\'' || c == '(' || c == ')' {
			return false
		}
	}
	return true
}

// maxTag is the longest tag accepted; RFC 3164 says 32, systemd units
// are longer.
const maxTag = 128

// parseTag reads "tag[pid]:", "tag:", or "tag[pid]" followed by a space or
// the end, at the start of s. On success it sets service, PID and message.
func parseTag(s string, e *bus.Entry) bool {
	i := 0
	for i < len(s) && i <= maxTag {
		c := s[i]
		if c == ':' || c == '[' || c == ' ' || c < ' ' {
			break
		}
		i++
	}
	if i == 0 || i > maxTag || i >= len(s) {
		return false
	}
	tag, pid := s[:i], ""
	switch s[i] {
	case ':':
		i++
	case '[':
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			return false
		}
		pid = s[i+1 : i+j]
		i += j + 1
		switch {
		case i < len(s) && s[i] == ':':
			i++
		case i == len(s) || s[i] == ' ':
		default:
			return false
		}
	default:
		return false
	}
	e.Service = tag
	setPID(e, pid)
	e.Message = strings.TrimPrefix(trimSpaces(s[i:]), bom)
	return true
}

// parse3164Time reads an RFC 3164 time stamp at the start of s, with
// Cisco's '*' or '.' before it and ':' after it allowed. It returns the
// time, the bytes consumed, and whether one was found.
func parse3164Time(s string, o *Options) (time.Time, int, bool) {
	p := 0
	if len(s) > 0 && (s[0] == '*' || s[0] == '.') {
		p = 1
	}
	var t time.Time
	var n int
	var ok bool
	if len(s) > p && isDigit(s[p]) {
		end := strings.IndexByte(s[p:], ' ')
		if end < 0 {
			end = len(s) - p
		}
		tok := s[p : p+end]
		if len(tok) > 0 && tok[len(tok)-1] == ':' {
			tok = tok[:len(tok)-1]
		}
		loc := o.Location
		if loc == nil {
			loc = time.UTC
		}
		t, ok = parseRFC3339(tok, loc)
		n = p + len(tok)
	} else {
		t, n, ok = parseStamp(s[p:], o)
		n += p
	}
	if !ok {
		return time.Time{}, 0, false
	}
	if n < len(s) && s[n] == ':' {
		n++
	}
	if n < len(s) && s[n] != ' ' {
		return time.Time{}, 0, false
	}
	return t, n, true
}

// parseStamp reads "Mmm dd hh:mm:ss" (day space-padded or not), with an
// optional fraction, and an optional year before the time ("Mmm dd yyyy
// hh:mm:ss", as Cisco writes it). Without a year, the year is the one
// that puts the stamp closest to o.Received: December's messages read in
// January belong to the year before.
func parseStamp(s string, o *Options) (time.Time, int, bool) {
	if len(s) < 14 {
		return time.Time{}, 0, false
	}
	mon := month(s[:3])
	if mon == 0 || s[3] != ' ' {
		return time.Time{}, 0, false
	}
	i := 4
	if s[i] == ' ' {
		i++
	}
	day, i, ok := digits(s, i, 1, 2)
	if !ok || day < 1 || day > 31 || i >= len(s) || s[i] != ' ' {
		return time.Time{}, 0, false
	}
	i++
	year := 0
	if i+5 <= len(s) && s[i+4] == ' ' {
		if y, j, ok := digits(s, i, 4, 4); ok {
			year, i = y, j+1
		}
	}
	h, m, sec, ns, i, ok := clock(s, i)
	if !ok {
		return time.Time{}, 0, false
	}
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	if year != 0 {
		return time.Date(year, mon, day, h, m, sec, ns, loc), i, true
	}
	ref := o.Received
	if ref.IsZero() {
		ref = time.Now()
	}
	ref = ref.In(loc)
	y := ref.Year()
	t := time.Date(y, mon, day, h, m, sec, ns, loc)
	const half = 183 * 24 * time.Hour
	if d := t.Sub(ref); d > half {
		t = time.Date(y-1, mon, day, h, m, sec, ns, loc)
	} else if d < -half {
		t = time.Date(y+1, mon, day, h, m, sec, ns, loc)
	}
	return t, i, true
}

// clock reads "hh:mm:ss" with an optional fraction of up to 9 digits.
func clock(s string, i int) (h, m, sec, ns, end int, ok bool) {
	if h, i, ok = digits(s, i, 2, 2); !ok || h > 23 || i >= len(s) || s[i] != ':' {
		return 0, 0, 0, 0, 0, false
	}
	if m, i, ok = digits(s, i+1, 2, 2); !ok || m > 59 || i >= len(s) || s[i] != ':' {
		return 0, 0, 0, 0, 0, false
	}
	if sec, i, ok = digits(s, i+1, 2, 2); !ok || sec > 60 {
		return 0, 0, 0, 0, 0, false
	}
	if i < len(s) && s[i] == '.' {
		j := i + 1
		scale := 100000000
		for j < len(s) && isDigit(s[j]) && j-i <= 9 {
			ns += int(s[j]-'0') * scale
			scale /= 10
			j++
		}
		if j == i+1 {
			return 0, 0, 0, 0, 0, false
		}
		for j < len(s) && isDigit(s[j]) { // beyond nanoseconds: ignored
			j++
		}
		i = j
	}
	return h, m, sec, ns, i, true
}

// parseRFC3339 parses a whole RFC 3339 time stamp ("2003-10-11T22:14:15.003Z",
// "…+02:00"). Without an offset it is an error unless loc is given, which
// is then the stamp's zone (RFC 3164 senders that write RFC 3339 without
// offset). Lower-case 't' and 'z' are accepted.
func parseRFC3339(s string, loc *time.Location) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') {
		return time.Time{}, false
	}
	y, _, ok1 := digits(s, 0, 4, 4)
	mo, _, ok2 := digits(s, 5, 2, 2)
	d, _, ok3 := digits(s, 8, 2, 2)
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	h, m, sec, ns, i, ok := clock(s, 11)
	if !ok {
		return time.Time{}, false
	}
	if i == len(s) {
		if loc == nil {
			return time.Time{}, false
		}
		t := time.Date(y, time.Month(mo), d, h, m, sec, ns, loc)
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return time.Time{}, false
		}
		return t, true
	}
	off := 0
	switch s[i] {
	case 'Z', 'z':
		if i+1 != len(s) {
			return time.Time{}, false
		}
	case '+', '-':
		if len(s) != i+6 || s[i+3] != ':' {
			return time.Time{}, false
		}
		oh, _, ok1 := digits(s, i+1, 2, 2)
		om, _, ok2 := digits(s, i+4, 2, 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		off = (oh*60 + om) * 60
		if s[i] == '-' {
			off = -off
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, m, sec, ns, time.UTC).Add(-time.Duration(off) * time.Second)
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, false // the entry's RFC 3339 could not say it
	}
	return t, true
}

// digits reads between min and max decimal digits at s[i:].
func digits(s string, i, min, max int) (v, end int, ok bool) {
	j := i
	for j < len(s) && j-i < max && isDigit(s[j]) {
		v = v*10 + int(s[j]-'0')
		j++
	}
	return v, j, j-i >= min
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func month(s string) time.Month {
	if len(s) != 3 {
		return 0
	}
	a, b, c := s[0]|0x20, s[1]|0x20, s[2]|0x20
	switch {
	case a == 'j' && b == 'a' && c == 'n':
		return time.January
	case a == 'f' && b == 'e' && c == 'b':
		return time.February
	case a == 'm' && b == 'a' && c == 'r':
		return time.March
	case a == 'a' && b == 'p' && c == 'r':
		return time.April
	case a == 'm' && b == 'a' && c == 'y':
		return time.May
	case a == 'j' && b == 'u' && c == 'n':
		return time.June
	case a == 'j' && b == 'u' && c == 'l':
		return time.July
	case a == 'a' && b == 'u' && c == 'g':
		return time.August
	case a == 's' && b == 'e' && c == 'p':
		return time.September
	case a == 'o' && b == 'c' && c == 't':
		return time.October
	case a == 'n' && b == 'o' && c == 'v':
		return time.November
	case a == 'd' && b == 'e' && c == 'c':
		return time.December
	}
	return 0
}

// IsBinary reports whether a frame is binary garbage rather than a text
// message: more than one byte in 32 is a control character other than
// tab, newline, carriage return, form feed and escape. Invalid UTF-8 is
// text (it is kept, and replaced by U+FFFD when encoded); a TLS
// ClientHello, a DTLS record or random bytes are binary.
func IsBinary[T string | []byte](b T) bool {
	n := 0
	for i := 0; i < len(b); i++ {
		n += int(ctrl[b[i]])
	}
	return n*32 > len(b)
}

var ctrl = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = 1
	}
	t['\t'], t['\n'], t['\r'], t['\f'], t[0x1b] = 0, 0, 0, 0, 0
	t[0x7f] = 1
	return t
}()
