package bus

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultPrefix is the first token of every subject unless configured.
const DefaultPrefix = "logs"

// MaxTokenLen is the longest a host or service token may be, in bytes.
// Longer values are cut at a UTF-8 boundary.
const MaxTokenLen = 128

// SanitizeToken returns s made safe as one subject token: '.', '*', '>',
// whitespace, control characters, invalid UTF-8 and U+FFFD become '_'; an
// empty result becomes "_"; a result longer than MaxTokenLen bytes is cut
// at a UTF-8 boundary. It is a pure function: the same input always gives
// the same token, and no input can add or remove a subject token or form a
// wildcard.
func SanitizeToken(s string) string {
	if isCleanToken(s) {
		return s
	}
	var sb strings.Builder
	sb.Grow(min(len(s), MaxTokenLen))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if badTokenRune(r) {
			r = '_'
		}
		if sb.Len()+utf8.RuneLen(r) > MaxTokenLen {
			break
		}
		sb.WriteRune(r)
	}
	if sb.Len() == 0 {
		return "_"
	}
	return sb.String()
}

// isCleanToken is the allocation-free fast path: printable ASCII only.
func isCleanToken(s string) bool {
	if len(s) == 0 || len(s) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

func badTokenRune(r rune) bool {
	return r == '.' || r == '*' || r == '>' || r == utf8.RuneError ||
		unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// Subject returns "<prefix>.<host>.<service>.<level>" with host and service
// sanitised by SanitizeToken. prefix is used as given (it is configuration,
// validated by ValidatePrefix).
func Subject(prefix, host, service string, l Level) string {
	if !l.Valid() {
		l = LevelNotice
	}
	return prefix + "." + SanitizeToken(host) + "." + SanitizeToken(service) + "." + levelNames[l]
}

// EntrySubject is Subject for an entry.
func EntrySubject(prefix string, e *Entry) string {
	return Subject(prefix, e.Host, e.Service, e.Level)
}

// ValidatePrefix checks a configured subject prefix: one or more literal
// tokens, no wildcards, no whitespace.
func ValidatePrefix(p string) error {
	if p == "" {
		return fmt.Errorf("bus: empty subject prefix")
	}
	for t := range strings.SplitSeq(p, ".") {
		if t == "" || strings.ContainsAny(t, "*> \t\r\n\f") {
			return fmt.Errorf("bus: invalid subject prefix %q: tokens must be non-empty literals", p)
		}
	}
	return nil
}

// LevelSet is a set of levels, bit n for level n. The zero LevelSet means
// every level.
type LevelSet uint8

// AllLevels holds every level.
const AllLevels LevelSet = 0xff

// LevelsUpTo returns the set of levels at least as severe as l: for
// LevelErr that is emerg, alert, crit and err ("err and above").
func LevelsUpTo(l Level) LevelSet {
	if l >= LevelDebug {
		return AllLevels
	}
	return LevelSet(1<<(l+1) - 1)
}

// Has reports whether l is in the set.
func (s LevelSet) Has(l Level) bool { return s == 0 || (l.Valid() && s&(1<<l) != 0) }

// Filter selects entries by host, service, level and message. The zero
// Filter selects everything. Hosts and Services compare against the
// sanitised subject tokens (a filter for "web1.example.com" matches the
// token "web1_example_com"); '*' in a value matches any run of characters.
type Filter struct {
	Hosts    []string
	Services []string
	Levels   LevelSet
	// Contains, when set, keeps entries whose message contains it.
	Contains string
	// Regexp, when set, keeps entries whose message matches it.
	Regexp *regexp.Regexp
	// Scope, when set, must select an entry as well: it is what a client
	// is allowed to see (from its token), intersected with what it asked.
	Scope *Filter
}

// pattern is one sanitised host or service value: literal, or a glob.
type pattern struct {
	s    string
	glob bool
}

func compilePatterns(vals []string) []pattern {
	var out []pattern
	for _, v := range vals {
		if v == "" {
			continue
		}
		if strings.Contains(v, "*") {
			parts := strings.Split(v, "*")
			for i, p := range parts {
				if p != "" {
					parts[i] = SanitizeToken(p)
				}
			}
			g := strings.Join(parts, "*")
			if strings.Trim(g, "*") == "" {
				return nil // "*" alone: everything
			}
			out = append(out, pattern{g, true})
			continue
		}
		out = append(out, pattern{SanitizeToken(v), false})
	}
	return out
}

func matchPatterns(ps []pattern, tok string) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.glob {
			if globMatch(p.s, tok) {
				return true
			}
		} else if p.s == tok {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern where '*' matches any run of
// characters and everything else is literal.
func globMatch(pat, s string) bool {
	parts := strings.Split(pat, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := len(parts) - 1
	for _, p := range parts[1:last] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[last])
}

// literalTokens returns the subject tokens for a pattern list: the sorted
// distinct literals, or ["*"] when the list is empty or holds a glob.
func literalTokens(ps []pattern) []string {
	if len(ps) == 0 {
		return []string{"*"}
	}
	var out []string
	for _, p := range ps {
		if p.glob {
			return []string{"*"}
		}
		out = append(out, p.s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// intersectTokens intersects two token lists where ["*"] means all.
func intersectTokens(a, b []string) []string {
	if len(a) == 1 && a[0] == "*" {
		return b
	}
	if len(b) == 1 && b[0] == "*" {
		return a
	}
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// Subjects returns the smallest set of subjects to subscribe to so that
// every entry the filter selects arrives (entries selected by glob patterns
// or the message match still need Match). The subjects never overlap. An
// empty result means the filter can select nothing (its Scope excludes
// everything it asks for).
func (f *Filter) Subjects(prefix string) []string {
	hosts := literalTokens(compilePatterns(f.Hosts))
	services := literalTokens(compilePatterns(f.Services))
	lv := f.Levels
	if f.Scope != nil {
		hosts = intersectTokens(hosts, literalTokens(compilePatterns(f.Scope.Hosts)))
		services = intersectTokens(services, literalTokens(compilePatterns(f.Scope.Services)))
		if f.Scope.Levels != 0 {
			if lv == 0 {
				lv = f.Scope.Levels
			} else {
				lv &= f.Scope.Levels
			}
		}
		if len(hosts) == 0 || len(services) == 0 || lv == 0 && f.Levels != 0 {
			return nil
		}
	}
	var levels []string
	if lv == 0 || lv == AllLevels {
		levels = []string{"*"}
	} else {
		for l := range Level(NumLevels) {
			if lv.Has(l) {
				levels = append(levels, levelNames[l])
			}
		}
	}
	if len(hosts) == 1 && hosts[0] == "*" && len(services) == 1 && services[0] == "*" && levels[0] == "*" {
		return []string{prefix + ".>"}
	}
	out := make([]string, 0, len(hosts)*len(services)*len(levels))
	for _, h := range hosts {
		for _, s := range services {
			for _, l := range levels {
				out = append(out, prefix+"."+h+"."+s+"."+l)
			}
		}
	}
	return out
}

// Matcher is a Filter compiled for repeated matching. It is safe for
// concurrent use.
type Matcher struct {
	hosts, services []pattern
	levels          LevelSet
	contains        string
	re              *regexp.Regexp
	scope           *Matcher
}

// Compile returns a Matcher for f.
func (f *Filter) Compile() *Matcher {
	m := &Matcher{
		hosts: compilePatterns(f.Hosts), services: compilePatterns(f.Services),
		levels: f.Levels, contains: f.Contains, re: f.Regexp,
	}
	if f.Scope != nil {
		m.scope = f.Scope.Compile()
	}
	return m
}

// Match reports whether the filter selects e (a convenience for one-off
// checks; compile once with Compile for many).
func (f *Filter) Match(e *Entry) bool { return f.Compile().Match(e) }

// NeedsMessage reports whether matching needs the message (Contains or
// Regexp set); when it does not, MatchSubject alone decides.
func (m *Matcher) NeedsMessage() bool {
	return m.contains != "" || m.re != nil || m.scope != nil && m.scope.NeedsMessage()
}

// MatchSubject reports whether a subject "<prefix>.<host>.<service>.<level>"
// passes the host, service and level parts of the filter. It does not look
// at the message.
func (m *Matcher) MatchSubject(prefix, subject string) bool {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return false
	}
	host, rest, ok1 := strings.Cut(rest, ".")
	service, level, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return false
	}
	l, err := ParseLevel(level)
	return err == nil && m.matchTokens(host, service, l)
}

func (m *Matcher) matchTokens(host, service string, l Level) bool {
	return m.levels.Has(l) && matchPatterns(m.hosts, host) && matchPatterns(m.services, service) &&
		(m.scope == nil || m.scope.matchTokens(host, service, l))
}

// Match reports whether the filter selects e.
func (m *Matcher) Match(e *Entry) bool {
	return m.matchTokens(SanitizeToken(e.Host), SanitizeToken(e.Service), e.Level) && m.MatchMessage(e.Message)
}

// MatchMessage applies only the message part (Contains, Regexp).
func (m *Matcher) MatchMessage(msg string) bool {
	if m.contains != "" && !strings.Contains(msg, m.contains) {
		return false
	}
	return (m.re == nil || m.re.MatchString(msg)) && (m.scope == nil || m.scope.MatchMessage(msg))
}
