package grpc_test

import (
	"testing"
	"time"

	"github.com/logstream/logstream/bus"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzParseRequest feeds arbitrary bytes as a v1 and a legacy request:
// parsing never panics, and an accepted request gives a filter that
// compiles, expands to subjects and matches.
func FuzzParseRequest(f *testing.F) {
	for _, r := range []*pb.LogRequest{
		{},
		{ServiceName: "nginx", Hosts: []string{"web*", "db.example.com"}, Level: "warn", Contains: "x", Regex: "^a+$"},
		{Services: []string{"*"}, Start: &pb.LogRequest_Last{Last: 10}},
		{Start: &pb.LogRequest_Since{Since: timestamppb.New(time.Unix(1700000000, 0))}},
		{Start: &pb.LogRequest_AfterSeq{AfterSeq: 42}, DisconnectWhenSlow: true},
		{Level: "7", Regex: "("},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	e := bus.Entry{Host: "web1", Service: "nginx", Level: bus.LevelErr, Message: "a"}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r pb.LogRequest
		if proto.Unmarshal(b, &r) == nil {
			if q, err := lsgrpc.ParseV1(&r); err == nil {
				q.Filter.Subjects("logs")
				q.Filter.Compile().Match(&e)
			}
		}
		var l legacypb.LogRequest
		if proto.Unmarshal(b, &l) == nil {
			if q, err := lsgrpc.ParseLegacy(&l); err == nil {
				q.Filter.Subjects("logs")
				q.Filter.Compile().Match(&e)
			}
		}
	})
}

// TestEntryRoundTrip: an entry survives EntryToV1 and V1ToEntry.
func TestEntryRoundTrip(t *testing.T) {
	in := entry(7)
	in.ID = "boot:1"
	out := lsgrpc.V1ToEntry(lsgrpc.EntryToV1(&in, 99))
	if !out.Time.Equal(in.Time) || !out.Received.Equal(in.Received) || out.Host != in.Host || out.Service != in.Service ||
		out.Level != in.Level || out.Facility != in.Facility || out.PID != in.PID || out.Message != in.Message ||
		out.Source != in.Source || out.Fields["i"] != "7" || out.ID != in.ID {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}
