package grpc

import (
	"fmt"
	"regexp"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
)

// Limits on a request, so that no request makes the server do unbounded
// work.
const (
	maxValues      = 64      // hosts, services
	maxValueLen    = 256     // bytes of one host or service
	maxTextLen     = 4096    // bytes of contains and regex
	maxLast        = 1000000 // last N
	maxSubjects    = 1024    // subjects a filter expands to
	reasonTooLarge = "too_large"
)

// Request is a validated stream request.
type Request struct {
	Filter     bus.Filter
	Start      bus.Start
	Disconnect bool // end the stream rather than drop
}

// ParseV1 validates a v1 request. Its errors are meant for the client.
func ParseV1(r *pb.LogRequest) (Request, error) {
	var q Request
	if err := checkValues("hosts", r.GetHosts()); err != nil {
		return q, err
	}
	services := r.GetServices()
	if r.GetServiceName() != "" {
		services = append(append([]string(nil), services...), r.GetServiceName())
	}
	if err := checkValues("services", services); err != nil {
		return q, err
	}
	q.Filter.Hosts = r.GetHosts()
	q.Filter.Services = services
	if lv := r.GetLevel(); lv != "" {
		l, err := bus.ParseLevel(lv)
		if err != nil {
			return q, fmt.Errorf("level: %v", err)
		}
		q.Filter.Levels = bus.LevelsUpTo(l)
	}
	if c := r.GetContains(); c != "" {
		if len(c) > maxTextLen {
			return q, fmt.Errorf("contains: %d bytes, more than %d", len(c), maxTextLen)
		}
		q.Filter.Contains = c
	}
	if x := r.GetRegex(); x != "" {
		if len(x) > maxTextLen {
			return q, fmt.Errorf("regex: %d bytes, more than %d", len(x), maxTextLen)
		}
		re, err := regexp.Compile(x)
		if err != nil {
			return q, fmt.Errorf("regex: %v", err)
		}
		q.Filter.Regexp = re
	}
	switch st := r.GetStart().(type) {
	case nil, *pb.LogRequest_Live:
		q.Start = bus.StartAtNew()
	case *pb.LogRequest_Last:
		if st.Last > maxLast {
			return q, fmt.Errorf("last: %d is more than %d", st.Last, maxLast)
		}
		q.Start = bus.StartAtLast(int(st.Last))
	case *pb.LogRequest_Since:
		if err := st.Since.CheckValid(); err != nil {
			return q, fmt.Errorf("since: %v", err)
		}
		q.Start = bus.StartAtTime(st.Since.AsTime())
	case *pb.LogRequest_AfterSeq:
		q.Start = bus.StartAfterSeq(st.AfterSeq)
	}
	q.Disconnect = r.GetDisconnectWhenSlow()
	return q, nil
}

// ParseLegacy validates a legacy request: service_name selects one
// service (globs allowed), empty selects all; the stream is live only.
func ParseLegacy(r *legacypb.LogRequest) (Request, error) {
	var q Request
	if s := r.GetServiceName(); s != "" {
		if err := checkValues("service_name", []string{s}); err != nil {
			return q, err
		}
		q.Filter.Services = []string{s}
	}
	return q, nil
}

func checkValues(key string, vals []string) error {
	if len(vals) > maxValues {
		return fmt.Errorf("%s: %d values, more than %d", key, len(vals), maxValues)
	}
	for _, v := range vals {
		if len(v) > maxValueLen {
			return fmt.Errorf("%s: a value of %d bytes, more than %d", key, len(v), maxValueLen)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s: %q is not valid UTF-8", key, v)
		}
	}
	return nil
}

// checkSubjects bounds the subjects a filter (with its scope) expands to.
func checkSubjects(f *bus.Filter, prefix string) error {
	if n := len(f.Subjects(prefix)); n > maxSubjects {
		return fmt.Errorf("the filter expands to %d subjects (hosts × services × levels), more than %d: use fewer values or a '*' pattern", n, maxSubjects)
	}
	return nil
}
