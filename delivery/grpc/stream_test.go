package grpc_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// legacyProto is the service definition old clients were generated from,
// as the issue gives it. legacypb is generated from this file unchanged.
const legacyProto = `syntax = "proto3";
service LogService { rpc StreamLogs(LogRequest) returns (stream LogEntry); }
message LogRequest { string service_name = 1; }
message LogEntry { string timestamp = 1; string level = 2; string message = 3; }
`

func TestLegacyProtoUnchanged(t *testing.T) {
	b, err := os.ReadFile("legacypb/logservice.proto")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != legacyProto {
		t.Fatalf("legacypb/logservice.proto differs from the definition clients use:\n%s", b)
	}
	fd := legacypb.File_legacypb_logservice_proto
	if fd.Package() != "" {
		t.Errorf("package %q, want none", fd.Package())
	}
	if got := legacypb.LogService_StreamLogs_FullMethodName; got != "/LogService/StreamLogs" {
		t.Errorf("method %q, want /LogService/StreamLogs", got)
	}
	// The v1 API keeps the legacy field numbers, names and kinds.
	for _, c := range []struct {
		legacy, v1 protoreflect.MessageDescriptor
	}{
		{(&legacypb.LogRequest{}).ProtoReflect().Descriptor(), (&pb.LogRequest{}).ProtoReflect().Descriptor()},
		{(&legacypb.LogEntry{}).ProtoReflect().Descriptor(), (&pb.LogEntry{}).ProtoReflect().Descriptor()},
	} {
		fs := c.legacy.Fields()
		for i := range fs.Len() {
			lf := fs.Get(i)
			vf := c.v1.Fields().ByNumber(lf.Number())
			if vf == nil || vf.Name() != lf.Name() || vf.Kind() != lf.Kind() || vf.Cardinality() != lf.Cardinality() {
				t.Errorf("%s field %d %s: v1 has %v", c.legacy.Name(), lf.Number(), lf.Name(), vf)
			}
		}
	}
}

// TestLegacyClient runs the client generated from the legacy definition
// against the real server: service_name filters by service, empty selects
// all, and timestamp, level and message are filled.
func TestLegacyClient(t *testing.T) {
	e := startEnv(t, envOpt{})
	cli := legacypb.NewLogServiceClient(e.client())
	ctx := t.Context()
	one, err := cli.StreamLogs(ctx, &legacypb.LogRequest{ServiceName: "svc1"})
	if err != nil {
		t.Fatal(err)
	}
	all, err := cli.StreamLogs(ctx, &legacypb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, "2 streams open", func() bool { return e.srv.Streams() == 2 })
	const n = 12
	e.publish(0, n)
	check := func(st interface {
		Recv() (*legacypb.LogEntry, error)
	}, want []int) {
		t.Helper()
		var got []int
		for range want {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			i := entryIndex(t, m.GetMessage())
			got = append(got, i)
			ts, err := time.Parse(time.RFC3339, m.GetTimestamp())
			if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < -time.Minute {
				t.Errorf("entry %d: timestamp %q: %v", i, m.GetTimestamp(), err)
			}
			if m.GetLevel() != bus.Level(i%8).String() {
				t.Errorf("entry %d: level %q, want %q", i, m.GetLevel(), bus.Level(i%8))
			}
		}
		sort.Ints(got)
		if !slices.Equal(got, want) {
			t.Errorf("got entries %v, want %v", got, want)
		}
	}
	check(one, []int{1, 4, 7, 10})
	check(all, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
}

func TestV1Filters(t *testing.T) {
	e := startEnv(t, envOpt{})
	const n = 48
	e.publish(0, n)
	cli := pb.NewLogServiceClient(e.client())
	everything := &pb.LogRequest_AfterSeq{AfterSeq: 0}
	for _, c := range []struct {
		name string
		req  *pb.LogRequest
		f    bus.Filter
	}{
		{"all", &pb.LogRequest{}, bus.Filter{}},
		{"host", &pb.LogRequest{Hosts: []string{"h0"}}, bus.Filter{Hosts: []string{"h0"}}},
		{"host with dots", &pb.LogRequest{Hosts: []string{"web1.example.com"}}, bus.Filter{Hosts: []string{"web1.example.com"}}},
		{"host glob", &pb.LogRequest{Hosts: []string{"web*"}}, bus.Filter{Hosts: []string{"web*"}}},
		{"services", &pb.LogRequest{Services: []string{"svc1", "svc2"}}, bus.Filter{Services: []string{"svc1", "svc2"}}},
		{"legacy service_name", &pb.LogRequest{ServiceName: "svc0"}, bus.Filter{Services: []string{"svc0"}}},
		{"service glob and level", &pb.LogRequest{Services: []string{"svc*"}, Level: "err"}, bus.Filter{Services: []string{"svc*"}, Levels: bus.LevelsUpTo(bus.LevelErr)}},
		{"level alias", &pb.LogRequest{Level: "warn"}, bus.Filter{Levels: bus.LevelsUpTo(bus.LevelWarning)}},
		{"level number", &pb.LogRequest{Level: "2"}, bus.Filter{Levels: bus.LevelsUpTo(bus.LevelCrit)}},
		{"contains", &pb.LogRequest{Contains: "message 1"}, bus.Filter{Contains: "message 1"}},
		{"regex", &pb.LogRequest{Regex: `^message [0-9]$`}, bus.Filter{Regexp: regexp.MustCompile(`^message [0-9]$`)}},
		{"everything together", &pb.LogRequest{Hosts: []string{"h0"}, Services: []string{"svc0", "svc2"}, Level: "notice", Regex: "[02468]$"},
			bus.Filter{Hosts: []string{"h0"}, Services: []string{"svc0", "svc2"}, Levels: bus.LevelsUpTo(bus.LevelNotice), Regexp: regexp.MustCompile("[02468]$")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want []int
			for i := range n {
				en := entry(i)
				if c.f.Match(&en) {
					want = append(want, i)
				}
			}
			c.req.Start = everything
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			st, err := cli.StreamLogs(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			r := collect(t, st, len(want), true, 20*time.Second)
			checkSeqs(t, r.entries)
			got := indexes(t, r.entries)
			sort.Ints(got)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if r.caughtUpAt != len(want) {
				t.Errorf("caught_up after %d entries, want %d", r.caughtUpAt, len(want))
			}
			for _, m := range r.entries {
				i := entryIndex(t, m.GetMessage())
				en := entry(i)
				if m.GetHost() != en.Host || m.GetService() != en.Service || m.GetSeverity() != uint32(en.Level) ||
					m.GetLevel() != en.Level.String() || m.GetFacility() != "daemon" || m.GetPid() != int64(en.PID) ||
					m.GetSource() != "syslog" || m.GetFields()["i"] != en.Fields["i"] || m.GetSeq() == 0 ||
					m.GetTime() == nil || m.GetReceived() == nil || m.GetTimestamp() != m.GetTime().AsTime().Format(time.RFC3339Nano) {
					t.Fatalf("entry %d: fields not filled: %v", i, m)
				}
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	e := startEnv(t, envOpt{})
	cli := pb.NewLogServiceClient(e.client())
	many := make([]string, 40)
	for i := range many {
		many[i] = "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	for _, c := range []struct {
		name string
		req  *pb.LogRequest
		code codes.Code
		msg  string
	}{
		{"bad level", &pb.LogRequest{Level: "loud"}, codes.InvalidArgument, "level"},
		{"bad regex", &pb.LogRequest{Regex: "("}, codes.InvalidArgument, "regex"},
		{"huge regex", &pb.LogRequest{Regex: string(make([]byte, 5000))}, codes.InvalidArgument, "regex"},
		{"too many hosts", &pb.LogRequest{Hosts: make([]string, 100)}, codes.InvalidArgument, "hosts"},
		{"too many subjects", &pb.LogRequest{Hosts: many, Services: many}, codes.InvalidArgument, "subjects"},
		{"bad since", &pb.LogRequest{Start: &pb.LogRequest_Since{Since: &timestamppb.Timestamp{Nanos: -1}}}, codes.InvalidArgument, "since"},
		{"huge last", &pb.LogRequest{Start: &pb.LogRequest_Last{Last: 1 << 30}}, codes.InvalidArgument, "last"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := cli.StreamLogs(t.Context(), c.req)
			if err == nil {
				_, err = st.Recv()
			}
			if s := status.Convert(err); s.Code() != c.code || !regexp.MustCompile(c.msg).MatchString(s.Message()) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.code, c.msg)
			}
		})
	}
	// The server is still fine.
	st, err := cli.StreamLogs(t.Context(), &pb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	collect(t, st, 0, true, 10*time.Second)
}

// TestHistoryLiveSeam reads everything the stream holds while entries
// keep coming: each entry arrives once, in stream order, with caught_up
// between history and live.
func TestHistoryLiveSeam(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.publish(0, 300)
	cli := pb.NewLogServiceClient(e.client())
	st, err := cli.StreamLogs(t.Context(), &pb.LogRequest{Start: &pb.LogRequest_AfterSeq{AfterSeq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		for i := 300; i < 900; i++ {
			if err := e.bus.Publisher().Publish(ctx, entry(i)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // spread over the seam
			}
		}
	}()
	r := collect(t, st, 900, true, 60*time.Second)
	<-done
	checkSeqs(t, r.entries)
	got := indexes(t, r.entries)
	sort.Ints(got)
	for i, v := range got {
		if v != i {
			t.Fatalf("entries %s: %d missing or duplicated", fmtInts(got), i)
		}
	}
	if r.caughtUpAt < 300 || r.dropped != 0 {
		t.Fatalf("caught_up after %d entries (want >= 300), dropped %d", r.caughtUpAt, r.dropped)
	}

	// last N: the last 100 in stream order, caught_up, then live ones.
	wantLast := indexes(t, r.entries[800:])
	sort.Ints(wantLast)
	st, err = cli.StreamLogs(t.Context(), &pb.LogRequest{Start: &pb.LogRequest_Last{Last: 100}})
	if err != nil {
		t.Fatal(err)
	}
	r = collect(t, st, 100, true, 20*time.Second)
	got = indexes(t, r.entries)
	sort.Ints(got)
	if r.caughtUpAt != 100 || !slices.Equal(got, wantLast) {
		t.Fatalf("last 100: caught up at %d, got %s, want %s", r.caughtUpAt, fmtInts(got), fmtInts(wantLast))
	}
	e.publish(900, 10)
	r = collect(t, st, 10, false, 20*time.Second)
	got = indexes(t, r.entries)
	sort.Ints(got)
	if !slices.Equal(got, []int{900, 901, 902, 903, 904, 905, 906, 907, 908, 909}) {
		t.Fatalf("live after last 100: %v", got)
	}

	// since: entries stored from a time on.
	since := time.Now()
	e.publish(910, 5)
	st, err = cli.StreamLogs(t.Context(), &pb.LogRequest{Start: &pb.LogRequest_Since{Since: timestamppb.New(since)}})
	if err != nil {
		t.Fatal(err)
	}
	r = collect(t, st, 5, true, 20*time.Second)
	if got := indexes(t, r.entries); r.caughtUpAt != 5 || slices.Min(got) != 910 || slices.Max(got) != 914 {
		t.Fatalf("since: caught up at %d, got %v", r.caughtUpAt, got)
	}
}

// TestResume reads part of the stream, goes away, and resumes with the
// last sequence it saw: nothing missed, nothing twice.
func TestResume(t *testing.T) {
	e := startEnv(t, envOpt{})
	e.publish(0, 100)
	cli := pb.NewLogServiceClient(e.client())
	ctx, cancel := context.WithCancel(t.Context())
	st, err := cli.StreamLogs(ctx, &pb.LogRequest{Start: &pb.LogRequest_AfterSeq{AfterSeq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	first := collect(t, st, 40, false, 20*time.Second)
	cancel()
	last := first.entries[len(first.entries)-1].GetSeq()
	e.publish(100, 100)
	st, err = cli.StreamLogs(t.Context(), &pb.LogRequest{Start: &pb.LogRequest_AfterSeq{AfterSeq: last}})
	if err != nil {
		t.Fatal(err)
	}
	rest := collect(t, st, 160, true, 20*time.Second)
	if rest.entries[0].GetSeq() != last+1 {
		t.Errorf("resumed at seq %d, want %d", rest.entries[0].GetSeq(), last+1)
	}
	all := append(first.entries, rest.entries...)
	checkSeqs(t, all)
	got := indexes(t, all)
	sort.Ints(got)
	for i, v := range got {
		if v != i {
			t.Fatalf("entries %s: %d missing or duplicated", fmtInts(got), i)
		}
	}
}
