//go:build cgo && linux

package sdj_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/ingest/journald/internal/sdj"
	"github.com/logstream/logstream/ingest/journald/journaldtest"
)

// ringJournal writes n entries tagged with a fresh TEST_ID, entry big
// (when >= 0) with a BIG field of bigLen bytes, and returns the journal
// directory and the tag.
func ringJournal(t *testing.T, n, big, bigLen int) (dir, id string) {
	t.Helper()
	jd := journaldtest.Start(t)
	id = fmt.Sprint(time.Now().UnixNano())
	for i := range n {
		fields := []string{fmt.Sprintf("MESSAGE=m%d", i), "TEST_ID=" + id}
		if i == big {
			fields = append(fields, "BIG="+strings.Repeat("b", bigLen))
		}
		if err := jd.Send(fields...); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitCount(jd.Dir, "TEST_ID="+id, n); err != nil {
		t.Fatal(err)
	}
	return jd.Dir, id
}

// openRing opens the journal in dir with a match on TEST_ID=id, reading
// fields, and a ring of n slots of size bytes; both are closed when the
// test ends. The caller's goroutine must be locked to its thread.
func openRing(t *testing.T, dir, id string, fields []string, n, size int) (*sdj.Journal, *sdj.Ring) {
	t.Helper()
	j, err := sdj.OpenDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	if err := j.AddMatch("TEST_ID=" + id); err != nil {
		t.Fatal(err)
	}
	j.SetFields(fields, false)
	ring, err := sdj.NewRing(n, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ring.Close)
	return j, ring
}

// consume reads ring's slots until io.EOF, sending the records' MESSAGE
// fields on got at the end and the length of each BIG field on bigs.
func consume(ring *sdj.Ring, got chan<- []string, bigs chan<- int) {
	var msgs []string
	for {
		i, err := ring.Next()
		if err != nil {
			got <- msgs
			return
		}
		buf, res, now := ring.Slot(i)
		if now.IsZero() || res.Used != len(buf) {
			msgs = append(msgs, fmt.Sprintf("bad slot: now %v, used %d of %d", now, res.Used, len(buf)))
		}
		n := 0
		err = sdj.Records(buf, func(rec *sdj.Record) error {
			n++
			for _, f := range rec.Fields {
				switch f.Index {
				case 0:
					msgs = append(msgs, string(f.Value))
				case 1:
					bigs <- len(f.Value)
				}
			}
			return nil
		})
		if err != nil || n != res.N {
			msgs = append(msgs, fmt.Sprintf("bad records: %v, %d of %d", err, n, res.N))
		}
		ring.Release(i)
	}
}

// pumpBig writes n entries, entry big with a 100,000-byte BIG field,
// opens them with a ring of that many 4,096-byte slots, and consumes it
// on another goroutine (see consume). It locks the calling goroutine to
// its thread until the test ends, as Pump needs.
func pumpBig(t *testing.T, n, big, slots int) (*sdj.Journal, *sdj.Ring, chan []string, chan int) {
	t.Helper()
	dir, id := ringJournal(t, n, big, 100_000)
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	j, ring := openRing(t, dir, id, []string{"MESSAGE", "BIG"}, slots, 4096)
	got, bigs := make(chan []string, 1), make(chan int, 10)
	go consume(ring, got, bigs)
	return j, ring, got, bigs
}

// TestRingPump reads a journal through three small slots: every entry
// arrives once and in order, and a slot grows for an entry larger than
// it.
func TestRingPump(t *testing.T) {
	const n, big = 1000, 500
	j, ring, got, bigs := pumpBig(t, n, big, 3)
	// Every entry is in the journal already: the first end is the end.
	if ev, err := j.Pump(ring, 64, 1<<20); err != nil || ev != sdj.PumpEnd {
		t.Fatalf("pump: %v %v", ev, err)
	}
	ring.CloseWriter()
	msgs := <-got
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d: %q", len(msgs), n, msgs[:min(len(msgs), 5)])
	}
	for i, m := range msgs {
		if m != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q", i, m)
		}
	}
	if len(bigs) != 1 {
		t.Fatalf("%d BIG fields, want 1", len(bigs))
	}
	if b := <-bigs; b != 100_000 {
		t.Errorf("BIG has %d bytes, want 100000", b)
	}
}

// TestRingTooLarge: an entry larger than maxBuf is reported, and the
// entries around it are read.
func TestRingTooLarge(t *testing.T) {
	const n, big = 300, 150
	j, ring, got, bigs := pumpBig(t, n, big, 2)
	tooLarge := 0
	for {
		ev, err := j.Pump(ring, 64, 16384)
		if err != nil {
			t.Fatal(err)
		}
		if ev == sdj.PumpEnd {
			break
		}
		if ev != sdj.PumpTooLarge {
			t.Fatalf("pump returned %d", ev)
		}
		tooLarge++
		// Skip it as the source does: move onto the next entry and
		// make it the one the next read returns.
		if ok, err := j.Next(); err != nil || !ok {
			t.Fatalf("next: %v %v", ok, err)
		}
		j.Current()
	}
	ring.CloseWriter()
	msgs := <-got
	if tooLarge != 1 || len(msgs) != n-1 || len(bigs) != 0 {
		t.Fatalf("too large %d, %d messages (want %d), %d BIG fields", tooLarge, len(msgs), n-1, len(bigs))
	}
	for i, m := range msgs {
		want := i
		if i >= big {
			want++
		}
		if m != fmt.Sprintf("m%d", want) {
			t.Fatalf("message %d is %q, want m%d", i, m, want)
		}
	}
}

// TestRingWake: Pump waiting for a free slot, and Collect waiting for
// every slot, return when woken.
func TestRingWake(t *testing.T) {
	dir, id := ringJournal(t, 500, -1, 0)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	j, ring := openRing(t, dir, id, []string{"MESSAGE"}, 2, 1<<16)
	// Nobody releases: the pump fills both slots, then waits.
	held := make(chan int, 2)
	go func() {
		for range 2 {
			i, err := ring.Next()
			if err != nil {
				return
			}
			held <- i
		}
		j.Wake()
	}()
	ev, err := j.Pump(ring, 64, 1<<20)
	if err != nil || ev != sdj.PumpWoken {
		t.Fatalf("pump: %v %v, want woken", ev, err)
	}
	collected := make(chan bool)
	collect := func() {
		ok, err := ring.Collect()
		if err != nil {
			t.Error(err)
		}
		collected <- ok
	}
	go collect()
	ring.Release(<-held)
	ring.Wake()
	if ok := <-collected; ok {
		t.Fatal("Collect returned true with a slot held")
	}
	go collect()
	ring.Release(<-held)
	if ok := <-collected; !ok {
		t.Fatal("Collect returned false with every slot free")
	}
	ring.CloseWriter()
	if _, err := ring.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after CloseWriter: %v, want EOF", err)
	}
}
