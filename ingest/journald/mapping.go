package journald

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
)

// This file holds the pure derivations from journald fields to an entry:
// service, level, the cursor's parts, safe text. They are tested by table
// (mapping_test.go) and fuzzed.

// Service derives an entry's service from its journald fields:
//
//  1. _SYSTEMD_UNIT without ".service": "nginx.service" → "nginx",
//     "getty@tty1.service" → "getty@tty1" (template instances keep their
//     instance; filter all of them with "getty@*"). Units of other types
//     keep their suffix ("foo.socket"; the subject token is "foo_socket").
//  2. For a user manager's unit (_SYSTEMD_UNIT "user@1000.service") with a
//     _SYSTEMD_USER_UNIT, the user unit by the same rules ("app.service" →
//     "app").
//  3. Scopes and slices ("session-3.scope", "init.scope", docker's
//     "docker-<id>.scope", "user.slice") say nothing about the program: the
//     rules below apply instead.
//  4. SYSLOG_IDENTIFIER, else _COMM, else "unknown".
func Service(unit, userUnit, identifier, comm string) string {
	if s, ok := unitService(unit); ok {
		if !isUserManager(unit) || userUnit == "" {
			return s
		}
		if us, ok := unitService(userUnit); ok {
			return us
		}
	}
	switch {
	case identifier != "":
		return identifier
	case comm != "":
		return comm
	}
	return "unknown"
}

// unitService applies rules 1 and 3 to one unit name.
func unitService(u string) (string, bool) {
	switch {
	case u == "":
		return "", false
	case strings.HasSuffix(u, ".service"):
		s := u[:len(u)-len(".service")]
		return s, s != ""
	case strings.HasSuffix(u, ".scope"), strings.HasSuffix(u, ".slice"):
		return "", false
	}
	return u, true
}

// isUserManager reports whether u is a user manager unit, user@UID.service.
func isUserManager(u string) bool {
	return strings.HasPrefix(u, "user@") && strings.HasSuffix(u, ".service")
}

// Level maps a PRIORITY value to a level: "0"–"7", or a level keyword or
// alias bus.ParseLevel accepts; anything else, or no PRIORITY, is def.
func Level(priority []byte, def bus.Level) bus.Level {
	if len(priority) == 1 && priority[0] >= '0' && priority[0] <= '7' {
		return bus.Level(priority[0] - '0')
	}
	if len(priority) == 0 || len(priority) > 16 {
		return def
	}
	if l, err := bus.ParseLevel(string(priority)); err == nil {
		return l
	}
	return def
}

// parseUint parses decimal digits; false for anything else or overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// cursorParts are the parts of a journald cursor
// "s=<seqnum_id>;i=<seqnum>;b=<boot_id>;m=<monotonic>;t=<realtime>;x=<xor>"
// that identify an entry, all hex. The slices point into the cursor.
type cursorParts struct {
	seqnumID []byte // 32 hex digits
	seqnum   []byte // hex
	boot     []byte // 32 hex digits
	seq      uint64 // seqnum's value
}

// parseCursor splits a cursor. It requires s, i and b; other parts are
// ignored, as is their order.
func parseCursor(c []byte) (cursorParts, bool) {
	var p cursorParts
	if len(c) > 512 {
		return p, false
	}
	for len(c) > 0 {
		end := bytes.IndexByte(c, ';')
		item := c
		if end >= 0 {
			item, c = c[:end], c[end+1:]
		} else {
			c = nil
		}
		if len(item) < 3 || item[1] != '=' {
			return p, false
		}
		v := item[2:]
		switch item[0] {
		case 's', 'i', 'b':
			if !isHex(v) {
				return p, false
			}
		}
		switch item[0] {
		case 's':
			p.seqnumID = v
		case 'i':
			p.seqnum = v
		case 'b':
			p.boot = v
		}
	}
	if len(p.seqnumID) != 32 || len(p.boot) != 32 || len(p.seqnum) == 0 || len(p.seqnum) > 16 {
		return p, false
	}
	for _, c := range p.seqnum {
		p.seq = p.seq<<4 | uint64(unhex(c))
	}
	return p, true
}

// appendID appends the deduplication ID of the entry a cursor names:
// "<boot_id>-<seqnum_id>-<seqnum>", the two IDs cut to their first 16 hex
// digits (64 random bits each) and the sequence number in hex, e.g.
// "2f4fe591604a401a-91433d6cf53d47e9-1a3". The sequence-number ID is part
// of it because journald starts a new sequence (new seqnum_id, seqnum from
// 1) when it cannot continue a file, e.g. after being killed: boot ID and
// seqnum alone would then repeat within one boot. IDs are kept short
// because the stream remembers every ID of its duplicate window.
func (p *cursorParts) appendID(b []byte) []byte {
	b = append(b, p.boot[:16]...)
	b = append(b, '-')
	b = append(b, p.seqnumID[:16]...)
	b = append(b, '-')
	return append(b, p.seqnum...)
}

func isHex[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return len(s) > 0
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// Escape returns b as valid UTF-8 text from which b can be restored (see
// Unescape): each byte that is not part of valid UTF-8 becomes \xNN and
// each backslash becomes \\; everything else is kept.
func Escape(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + 16)
	for i := 0; i < len(b); {
		c := b[i]
		if c == '\\' {
			sb.WriteString(`\\`)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			sb.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			sb.WriteString(`\x`)
			sb.WriteByte("0123456789abcdef"[c>>4])
			sb.WriteByte("0123456789abcdef"[c&15])
			i++
			continue
		}
		sb.Write(b[i : i+size])
		i += size
	}
	return sb.String()
}

// Unescape reverses Escape. Malformed escapes are kept as they are.
func Unescape(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b = append(b, s[i])
			continue
		}
		switch {
		case s[i+1] == '\\':
			b = append(b, '\\')
			i++
		case s[i+1] == 'x' && i+3 < len(s) && isHex(s[i+2:i+4]):
			b = append(b, unhex(s[i+2])<<4|unhex(s[i+3]))
			i += 3
		default:
			b = append(b, s[i])
		}
	}
	return b
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b (left
// by cutting a value at a byte count).
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= 3 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}
