package grpc_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"google.golang.org/protobuf/proto"
)

// TestBatches reads the stream with StreamLogBatches: the same entries
// and control messages in the same order as StreamLogs, in fewer
// messages, each within max_send_msg_size; an entry too large for a
// message is replaced by a dropped control message, on both calls.
func TestBatches(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) { c.MaxSendMsgSize = 64 << 10 }})
	const n = 1000
	e.publish(0, n)
	big := entry(n)
	big.Message = "message " + strings.Repeat("z", 70<<10) // over 64KiB
	mid := entry(n + 1)
	mid.Fields = map[string]string{"pad": strings.Repeat("m", 20<<10)} // 3 fit in a message
	ctx := context.Background()
	if err := e.bus.Publisher().Publish(ctx, big); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := e.bus.Publisher().Publish(ctx, mid); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(n+2, 10)
	const total = n + 5 + 10 // entries that fit

	cli := pb.NewLogServiceClient(e.client())
	req := &pb.LogRequest{Start: &pb.LogRequest_AfterSeq{AfterSeq: 0}}
	bst, err := cli.StreamLogBatches(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got []*pb.LogEntry
	msgs := 0
	deadline := time.Now().Add(30 * time.Second)
	for entries := 0; entries < total || !slices.ContainsFunc(got, func(m *pb.LogEntry) bool { return m.GetControl().GetKind() == pb.Control_KIND_CAUGHT_UP }); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out with %d entries", entries)
		}
		b, err := bst.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if sz := proto.Size(b); sz > 64<<10 {
			t.Fatalf("a batch of %d bytes, more than max_send_msg_size", sz)
		}
		msgs++
		for _, m := range b.GetEntries() {
			if m.GetControl() == nil {
				entries++
			}
			got = append(got, m)
		}
	}
	st, err := cli.StreamLogs(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var want []*pb.LogEntry
	for len(want) < len(got) {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("message %d: batches give %v, StreamLogs %v", i, got[i], want[i])
		}
	}
	var tooLarge int
	for _, m := range got {
		if c := m.GetControl(); c.GetKind() == pb.Control_KIND_DROPPED && c.GetReason() == "too_large" && c.GetDropped() == 1 {
			tooLarge++
		}
	}
	t.Logf("%d messages (%d entries, the rest control) in %d batches", len(got), total, msgs)
	if tooLarge != 1 || msgs >= len(got)/4 {
		t.Fatalf("%d too_large notices (want 1), %d batches for %d messages", tooLarge, msgs, len(got))
	}
}
