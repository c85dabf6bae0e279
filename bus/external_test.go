package bus_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testcerts"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
)

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a
// client certificate, returning their file names.
func writeCerts(t *testing.T) (ca, srvCert, srvKey, cliCert, cliKey string) {
	t.Helper()
	dir := t.TempDir()
	c := testcerts.NewCA(t, "test CA")
	ca = filepath.Join(dir, "ca.pem")
	testcerts.WritePEM(t, ca, "CERTIFICATE", c.DER)
	srvCert, srvKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	c.WriteLeaf(t, srvCert, srvKey, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	c.WriteLeaf(t, cliCert, cliKey, "client", x509.ExtKeyUsageClientAuth)
	return
}

// TestExternalAuth connects to nats-server processes that require
// user/password, a token, and mutual TLS; wrong credentials fail with the
// server's reason.
func TestExternalAuth(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := writeCerts(t)
	tests := []struct {
		name    string
		args    []string
		good    func(*bus.Config)
		bad     func(*bus.Config)
		badWant string
	}{
		{"user password", []string{"--user", "u", "--pass", "secret"},
			func(c *bus.Config) { c.User, c.Password = "u", "secret" },
			func(c *bus.Config) { c.User, c.Password = "u", "wrong" }, "Authorization"},
		{"token", []string{"--auth", "s3cr3t"},
			func(c *bus.Config) { c.Token = "s3cr3t" },
			func(c *bus.Config) { c.Token = "nope" }, "Authorization"},
		{"mutual tls", []string{"--tls", "--tlscert", srvCert, "--tlskey", srvKey, "--tlsverify", "--tlscacert", ca},
			func(c *bus.Config) { c.TLS = bus.TLS{CAFile: ca, CertFile: cliCert, KeyFile: cliKey} },
			func(c *bus.Config) { c.TLS = bus.TLS{CAFile: ca} }, "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bustest.StartProcess(t, tt.args...)
			url := srv.URL()
			if strings.Contains(tt.name, "tls") {
				url = strings.Replace(url, "nats://", "tls://", 1)
			}
			b := bustest.Open(t, func(c *bus.Config) { c.URLs = []string{url}; tt.good(c) })
			publishN(t, b.Publisher(), 0, 10)
			if err := b.Publisher().Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			cfg := bus.Config{URLs: []string{url}}
			tt.bad(&cfg)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err := bus.Open(ctx, cfg, t.TempDir(), bustest.Logger(t), nil)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.badWant)) {
				t.Fatalf("bad credentials: err %v, want one mentioning %q", err, tt.badWant)
			}
		})
	}
}

func TestStartSince(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	publishN(t, p, 0, 20)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	mid := time.Now()
	bustest.WaitFor(t, 5*time.Second, "the clock to move", func() bool { return time.Since(mid) > 2*time.Millisecond })
	publishN(t, p, 20, 10)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtTime(mid), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs := collect(t, s, 10, 10*time.Second)
	checkEntries(t, evs, 20, 10)
	// Then live.
	publishN(t, p, 30, 5)
	checkEntries(t, collect(t, s, 5, 10*time.Second), 30, 5)
}

func TestSubscribeErrors(t *testing.T) {
	core := bustest.Open(t, bustest.CoreMode)
	if _, err := core.Subscribe(t.Context(), bus.Filter{}, bus.StartAtLast(5), bus.SubscribeOptions{}); err != bus.ErrNoHistory {
		t.Errorf("history in core mode: %v", err)
	}
	b := bustest.Open(t)
	f := bus.Filter{Hosts: []string{"a"}, Scope: &bus.Filter{Hosts: []string{"b"}}}
	if _, err := b.Subscribe(t.Context(), f, bus.StartAtNew(), bus.SubscribeOptions{}); err != bus.ErrNothingAllowed {
		t.Errorf("out of scope: %v", err)
	}
}

// TestResumeGone: entries aged out of the stream are reported as gone.
func TestResumeGone(t *testing.T) {
	b := bustest.Open(t, func(c *bus.Config) { c.Stream.MaxBytes = 64 << 10 })
	p := b.Publisher()
	publishN(t, p, 0, 2000) // far more than 64 KiB: the oldest are discarded
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAfterSeq(10), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev, err := s.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != bus.EventDropped || ev.Reason != bus.ReasonGone || ev.Dropped == 0 {
		t.Fatalf("first event %+v, want a gone notice", ev)
	}
	next, err := s.Next(t.Context())
	if err != nil || next.Kind != bus.EventEntry || next.Seq != 10+ev.Dropped+1 {
		t.Fatalf("after %d gone, next is %+v (%v)", ev.Dropped, next, err)
	}
}

// TestStartLast: the last N entries for dense, sparse and too-few matches.
func TestStartLast(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	publishN(t, p, 0, 3000)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The stream's order (services interleave freely across connections).
	all, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{MaxEntries: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var stored []bus.Entry
	for _, ev := range collect(t, all, 3000, 10*time.Second) {
		e, _ := ev.Entry()
		stored = append(stored, e)
	}
	all.Close()
	tests := []struct {
		name string
		f    bus.Filter
		n    int
	}{
		{"dense", bus.Filter{}, 200},
		{"sparse", bus.Filter{Services: []string{"svc2"}, Levels: bus.LevelsUpTo(bus.LevelEmerg)}, 20},
		{"fewer than n", bus.Filter{Services: []string{"svc1"}, Levels: bus.LevelsUpTo(bus.LevelEmerg)}, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, e := range stored {
				if tt.f.Match(&e) {
					want = append(want, e.Message)
				}
			}
			if len(want) > tt.n {
				want = want[len(want)-tt.n:]
			}
			s, err := b.Subscribe(t.Context(), tt.f, bus.StartAtLast(tt.n), bus.SubscribeOptions{MaxEntries: 10000})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := map[string]bool{}
			for _, ev := range collect(t, s, len(want), 10*time.Second) {
				e, _ := ev.Entry()
				got[e.Message] = true
			}
			for _, m := range want {
				if !got[m] {
					t.Fatalf("missing %q among the last %d", m, tt.n)
				}
			}
			ev, err := s.Next(t.Context())
			if err != nil || ev.Kind != bus.EventCaughtUp {
				t.Fatalf("after the last %d: %+v %v, want caught up", len(want), ev, err)
			}
		})
	}
}

// TestStartNewAfterFlush: a live subscription made after Flush gets none
// of the entries stored before it, and its caught-up notice carries the
// sequence to resume after.
func TestStartNewAfterFlush(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	// Start the hub, then store entries it may not have seen yet.
	first, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	for round := range 20 {
		publishN(t, p, round*100, 100)
		if err := p.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		s, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAtNew(), bus.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s.Next(t.Context())
		stored := uint64((round+1)*100 + round) // 100 a round, plus one live entry a round
		if err != nil || ev.Kind != bus.EventCaughtUp || ev.Seq != stored {
			t.Fatalf("round %d: first event %+v %v, want caught up at %d", round, ev, err, stored)
		}
		publishN(t, p, 100000+round, 1)
		got := collect(t, s, 1, 5*time.Second)
		if e, _ := got[0].Entry(); e.Message != "message "+strconv.Itoa(100000+round) {
			t.Fatalf("round %d: got %q, an entry from before the subscription", round, e.Message)
		}
		s.Close()
	}
}

// TestSeamFullBuffer: a subscriber whose buffer is full when its replay
// reaches the end loses nothing: the caught-up notice does not push an
// entry out.
func TestSeamFullBuffer(t *testing.T) {
	b := bustest.Open(t)
	p := b.Publisher()
	publishN(t, p, 0, 500)
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		s, err := b.Subscribe(t.Context(), bus.Filter{}, bus.StartAfterSeq(0), bus.SubscribeOptions{MaxEntries: 50})
		if err != nil {
			t.Fatal(err)
		}
		// Let the replay fill the buffer and reach the end before reading.
		bustest.WaitFor(t, 10*time.Second, "the buffer to fill", func() bool { return s.Buffered() >= 50 })
		n := 0
		for n < 500 {
			ev, err := s.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			switch ev.Kind {
			case bus.EventDropped:
				t.Fatalf("round %d: %d entries dropped after %d", round, ev.Dropped, n)
			case bus.EventEntry:
				n++
			}
		}
		s.Close()
	}
}
