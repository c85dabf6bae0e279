package websocket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
)

// Limits on what a client may ask for.
const (
	maxValues     = 64   // hosts or services in one filter
	maxValueLen   = 256  // bytes of one host or service pattern
	maxPatternLen = 1024 // bytes of contains or regex
	maxIDLen      = 64   // bytes of a request id
)

// request is a subscription request: the query parameters of GET /ws, or
// a {"type":"subscribe",…} control message. It is echoed, normalised, in
// the "subscribed" frame.
type request struct {
	Type     string   `json:"type,omitempty"`
	ID       string   `json:"id,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	Services []string `json:"services,omitempty"`
	Level    string   `json:"level,omitempty"`
	Contains string   `json:"contains,omitempty"`
	Regex    string   `json:"regex,omitempty"`
	Backlog  *int     `json:"backlog,omitempty"`
	Since    string   `json:"since,omitempty"`
	After    *uint64  `json:"after,omitempty"`
}

// spec is a parsed request.
type spec struct {
	req    request
	filter bus.Filter
	start  bus.Start
}

// reqID is the request's id, "" for a nil spec.
func (sp *spec) reqID() string {
	if sp == nil {
		return ""
	}
	return sp.req.ID
}

// requestError is a bad request: its text starts with the parameter.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{fmt.Sprintf(format, args...)}
}

// queryParams are the parameters GET /ws understands.
var queryParams = map[string]bool{
	"host": true, "hosts": true, "service": true, "services": true, "level": true,
	"contains": true, "regex": true, "backlog": true, "since": true, "after": true,
	"token": true,
}

// parseQuery parses the query parameters of GET /ws. hosts and services
// may be repeated or comma-separated; host and service are synonyms.
func parseQuery(q url.Values, maxBacklog int, now time.Time) (*spec, error) {
	for k := range q {
		if !queryParams[k] {
			return nil, badRequest("unknown parameter %q (known: hosts, services, level, contains, regex, backlog, since, after, token)", truncate(k, 64))
		}
	}
	var r request
	split := func(keys ...string) []string {
		var out []string
		for _, k := range keys {
			for _, v := range q[k] {
				for p := range strings.SplitSeq(v, ",") {
					if p = strings.TrimSpace(p); p != "" {
						out = append(out, p)
					}
				}
			}
		}
		return out
	}
	one := func(key string) (string, error) {
		vs := q[key]
		if len(vs) > 1 {
			return "", badRequest("%s: given %d times", key, len(vs))
		}
		if len(vs) == 0 {
			return "", nil
		}
		return vs[0], nil
	}
	r.Hosts = split("host", "hosts")
	r.Services = split("service", "services")
	var err error
	if r.Level, err = one("level"); err != nil {
		return nil, err
	}
	if r.Contains, err = one("contains"); err != nil {
		return nil, err
	}
	if r.Regex, err = one("regex"); err != nil {
		return nil, err
	}
	if r.Since, err = one("since"); err != nil {
		return nil, err
	}
	s, err := one("backlog")
	if err != nil {
		return nil, err
	}
	if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, badRequest("backlog: %q is not a number of entries", truncate(s, 64))
		}
		r.Backlog = &n
	}
	if s, err = one("after"); err != nil {
		return nil, err
	}
	if s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, badRequest("after: %q is not a stream sequence", truncate(s, 64))
		}
		r.After = &n
	}
	return r.compile(maxBacklog, now)
}

// parseControl parses a control message from a client. With an error, the
// spec returned, when not nil, holds the request's type and id.
func parseControl(data []byte, maxBacklog int, now time.Time) (*spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r request
	if err := dec.Decode(&r); err != nil {
		return nil, badRequest("message: not a control message: %v", truncErr(err))
	}
	if dec.More() {
		return nil, badRequest("message: one JSON object a message")
	}
	if len(r.ID) > maxIDLen || !utf8.ValidString(r.ID) {
		return nil, badRequest("id: longer than %d bytes or not UTF-8", maxIDLen)
	}
	var sp *spec
	var err error
	switch r.Type {
	case "subscribe":
		sp, err = r.compile(maxBacklog, now)
	case "ping":
		sp = &spec{}
	case "":
		err = badRequest("type: missing (want subscribe or ping)")
	default:
		err = badRequest("type: %q is not subscribe or ping", truncate(r.Type, 64))
	}
	if err != nil {
		return &spec{req: request{Type: r.Type, ID: r.ID}}, err
	}
	sp.req.Type, sp.req.ID = r.Type, r.ID
	return sp, nil
}

// compile checks the request and builds the filter and start.
func (r request) compile(maxBacklog int, now time.Time) (*spec, error) {
	sp := &spec{}
	var err error
	if r.Hosts, err = cleanValues("hosts", r.Hosts); err != nil {
		return nil, err
	}
	if r.Services, err = cleanValues("services", r.Services); err != nil {
		return nil, err
	}
	sp.filter.Hosts, sp.filter.Services = r.Hosts, r.Services
	if r.Level != "" {
		l, err := bus.ParseLevel(r.Level)
		if err != nil {
			return nil, badRequest("level: %q is not a level (emerg, alert, crit, err, warning, notice, info, debug or 0-7)", truncate(r.Level, 64))
		}
		r.Level = l.String()
		sp.filter.Levels = bus.LevelsUpTo(l)
	}
	if len(r.Contains) > maxPatternLen || !utf8.ValidString(r.Contains) {
		return nil, badRequest("contains: longer than %d bytes or not UTF-8", maxPatternLen)
	}
	sp.filter.Contains = r.Contains
	if r.Regex != "" {
		if len(r.Regex) > maxPatternLen {
			return nil, badRequest("regex: longer than %d bytes", maxPatternLen)
		}
		re, err := regexp.Compile(r.Regex)
		if err != nil {
			return nil, badRequest("regex: %v", truncErr(err))
		}
		sp.filter.Regexp = re
	}
	starts := 0
	if r.Backlog != nil {
		starts++
		n := *r.Backlog
		switch {
		case n < 0:
			return nil, badRequest("backlog: %d is negative", n)
		case n > maxBacklog:
			return nil, badRequest("backlog: %d is more than this server allows (%d)", n, maxBacklog)
		case n == 0:
			sp.start = bus.StartAtNew()
		default:
			sp.start = bus.StartAtLast(n)
		}
	}
	if r.Since != "" {
		starts++
		t, err := parseSince(r.Since, now)
		if err != nil {
			return nil, err
		}
		sp.start = bus.StartAtTime(t)
	}
	if r.After != nil {
		starts++
		sp.start = bus.StartAfterSeq(*r.After)
	}
	if starts > 1 {
		return nil, badRequest("backlog, since, after: give at most one start")
	}
	r.ID = ""
	sp.req = r
	return sp, nil
}

func cleanValues(key string, vs []string) ([]string, error) {
	if len(vs) > maxValues {
		return nil, badRequest("%s: %d values, at most %d", key, len(vs), maxValues)
	}
	var out []string
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if len(v) > maxValueLen {
			return nil, badRequest("%s: a value is longer than %d bytes", key, maxValueLen)
		}
		if !utf8.ValidString(v) {
			return nil, badRequest("%s: a value is not valid UTF-8", key)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseSince parses a duration back from now ("15m") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, badRequest("since: %q is negative", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("since: %q is neither a duration (15m) nor an RFC 3339 time (2026-01-02T15:04:05Z)", truncate(s, 64))
	}
	return t, nil
}

// truncate cuts s to at most n bytes at a UTF-8 boundary, for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.ToValidUTF8(s[:n], "\uFFFD") + "…"
}

func truncErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return truncate(err.Error(), 200)
}
