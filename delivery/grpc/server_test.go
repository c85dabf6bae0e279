package grpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logstream/logstream/internal/testcerts"

	"github.com/golang-jwt/jwt/v5"
	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/bus/bustest"
	lsgrpc "github.com/logstream/logstream/delivery/grpc"
	"github.com/logstream/logstream/delivery/grpc/legacypb"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	"github.com/logstream/logstream/internal/auth"
	"github.com/logstream/logstream/internal/config"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestGracefulStop100Streams stops the server with 100 open streams (v1
// and legacy): each gets what was queued for it and ends with
// UNAVAILABLE, within the grace period, and Run returns.
func TestGracefulStop100Streams(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) { c.ShutdownGrace = 5 * time.Second }})
	const n = 100
	conns := []*grpclib.ClientConn{e.client(), e.client(), e.client(), e.client()}
	type result struct {
		entries int
		err     error
		at      time.Time
	}
	results := make([]result, n)
	counts := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	for i := range n {
		cc := conns[i%len(conns)]
		var recv func() (string, error)
		if i%10 == 0 {
			st, err := legacypb.NewLogServiceClient(cc).StreamLogs(t.Context(), &legacypb.LogRequest{})
			if err != nil {
				t.Fatal(err)
			}
			recv = func() (string, error) { m, err := st.Recv(); return m.GetMessage(), err }
		} else {
			st, err := pb.NewLogServiceClient(cc).StreamLogs(t.Context(), &pb.LogRequest{})
			if err != nil {
				t.Fatal(err)
			}
			recv = func() (string, error) { m, err := st.Recv(); return m.GetMessage(), err }
		}
		wg.Go(func() {
			for {
				msg, err := recv()
				if err != nil {
					results[i] = result{results[i].entries, err, time.Now()}
					return
				}
				if msg != "" {
					results[i].entries++
					counts[i].Add(1)
				}
			}
		})
	}
	waitStreams(t, e.srv, n, 30*time.Second)
	e.publish(0, 10)
	bustest.WaitFor(t, 30*time.Second, "every stream to receive 10 entries", func() bool {
		for i := range results {
			if counts[i].Load() < 10 {
				return false
			}
		}
		return true
	})
	// Entries still on their way when the server stops are sent before
	// the stream ends (those queued) or read again on resuming (those
	// not yet there).
	e.publish(10, 10)
	stopAt := time.Now()
	e.stop()
	took := time.Since(stopAt)
	wg.Wait()
	t.Logf("Run returned %v after its context ended", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("stopping took %v, more than the 5s grace", took)
	}
	for i, r := range results {
		if status.Code(r.err) != codes.Unavailable || !strings.Contains(status.Convert(r.err).Message(), "shutting down") {
			t.Errorf("stream %d ended with %v, want UNAVAILABLE (shutting down)", i, r.err)
		}
		if r.entries < 10 || r.entries > 20 {
			t.Errorf("stream %d got %d entries before the end, want 10 to 20", i, r.entries)
		}
		if r.at.Sub(stopAt) > 5*time.Second {
			t.Errorf("stream %d ended %v after the stop", i, r.at.Sub(stopAt))
		}
	}
	if e.srv.Streams() != 0 {
		t.Errorf("%d streams still open", e.srv.Streams())
	}
}

func TestHealthAndReflection(t *testing.T) {
	e := startEnv(t, envOpt{})
	cc := e.client()
	hc := healthpb.NewHealthClient(cc)
	for _, svc := range []string{"", lsgrpc.ServiceV1, lsgrpc.ServiceLegacy} {
		r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, r, err)
		}
	}
	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{lsgrpc.ServiceV1, lsgrpc.ServiceLegacy, "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, without %s", names, want)
		}
	}
	for _, sym := range []string{"LogService", "logstream.v1.LogEntry"} {
		if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym}}); err != nil {
			t.Fatal(err)
		}
		resp, err := rc.Recv()
		if err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Errorf("reflection of %s: %v %v", sym, resp.GetErrorResponse(), err)
		}
	}
	rc.CloseSend()

	// A watcher sees NOT_SERVING when the server stops.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: lsgrpc.ServiceV1})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	go e.cancel()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after stop: %v %v", r, err)
	}
	cancel()
}

// TestAuth: with a key configured, a stream needs a valid token, and the
// token's claims narrow what it sees.
func TestAuth(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef-secret")
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{HMACSecretFile: filepath.Join(dir, "secret")})
	if err != nil {
		t.Fatal(err)
	}
	token := func(c auth.Claims) string {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + s
	}
	e := startEnv(t, envOpt{verifier: v})
	const n = 48
	e.publish(0, n)
	cli := pb.NewLogServiceClient(e.client())
	open := func(t *testing.T, tok string, req *pb.LogRequest) (grpclib.ServerStreamingClient[pb.LogEntry], error) {
		ctx := t.Context()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tok)
		}
		req.Start = &pb.LogRequest_AfterSeq{}
		st, err := cli.StreamLogs(ctx, req)
		if err != nil {
			return nil, err
		}
		_, err = st.Header() // the status, when refused
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	for _, c := range []struct {
		name string
		tok  string
		code codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"garbage", "Bearer garbage", codes.Unauthenticated},
		{"wrong key", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("another-secret-of-enough-length-0123456789"))
			return s
		}(), codes.Unauthenticated},
		{"expired", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}).SignedString(secret)
			return s
		}(), codes.Unauthenticated},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := open(t, c.tok, &pb.LogRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want %v", err, c.code)
			}
		})
	}
	t.Run("scope narrows the request", func(t *testing.T) {
		st, err := open(t, token(auth.Claims{Services: []string{"svc1"}, Level: "err"}), &pb.LogRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		f := bus.Filter{Services: []string{"svc1"}, Levels: bus.LevelsUpTo(bus.LevelErr)}
		for i := range n {
			en := entry(i)
			if f.Match(&en) {
				want = append(want, i)
			}
		}
		r := collect(t, st, len(want), true, 20*time.Second)
		got := indexes(t, r.entries)
		slices.Sort(got)
		if !slices.Equal(got, want) || r.caughtUpAt != len(want) {
			t.Fatalf("got %v (caught up at %d), want %v", got, r.caughtUpAt, want)
		}
	})
	t.Run("scope excludes the request", func(t *testing.T) {
		st, err := open(t, token(auth.Claims{Services: []string{"svc1"}}), &pb.LogRequest{Services: []string{"svc2"}})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v, want PERMISSION_DENIED", err)
		}
	})
	t.Run("legacy client with a token", func(t *testing.T) {
		waitStreams(t, e.srv, 0, 10*time.Second) // the other subtests' streams
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", token(auth.Claims{Services: []string{"svc2"}}))
		st, err := legacypb.NewLogServiceClient(e.client()).StreamLogs(ctx, &legacypb.LogRequest{})
		if err != nil {
			t.Fatal(err)
		}
		waitStreams(t, e.srv, 1, 10*time.Second)
		e.publish(100, 3)
		m, err := st.Recv()
		if err != nil || m.GetMessage() != "message 101" {
			t.Fatalf("got %v %v, want message 101 (svc2)", m, err)
		}
	})
}

// TestTLS serves with a certificate and asks clients for theirs.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert := newCert(t, ca, caKey, dir, "server", x509.ExtKeyUsageServerAuth)
	cliCert := newCert(t, ca, caKey, dir, "client", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, mode := range []string{"required", "optional"} {
		t.Run(mode, func(t *testing.T) {
			e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) {
				c.TLS = config.ServerTLS{CertFile: srvCert + ".crt", KeyFile: srvCert + ".key", ClientCAFile: filepath.Join(dir, "ca.pem"), ClientAuth: mode}
			}})
			try := func(tc *tls.Config) error {
				cc, err := grpclib.NewClient(e.addr, grpclib.WithTransportCredentials(credentials.NewTLS(tc)))
				if err != nil {
					return err
				}
				defer cc.Close()
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				st, err := pb.NewLogServiceClient(cc).StreamLogs(ctx, &pb.LogRequest{})
				if err != nil {
					return err
				}
				m, err := st.Recv()
				if err == nil && m.GetControl().GetKind() != pb.Control_KIND_CAUGHT_UP {
					t.Errorf("first message %v, want caught_up", m)
				}
				return err
			}
			pair, err := tls.LoadX509KeyPair(cliCert+".crt", cliCert+".key")
			if err != nil {
				t.Fatal(err)
			}
			if err := try(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{pair}}); err != nil {
				t.Errorf("with a client certificate: %v", err)
			}
			err = try(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if mode == "required" && err == nil {
				t.Error("without a client certificate: accepted")
			}
			if mode == "optional" && err != nil {
				t.Errorf("without a client certificate (optional): %v", err)
			}
			if err := try(&tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{pair}}); err == nil {
				t.Error("a client that does not trust the server's CA connected")
			}
		})
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	ca := testcerts.NewCA(t, "logstream test CA")
	return ca.Cert, ca.Key
}

// newCert writes <dir>/<name>.crt and .key signed by the CA, for
// 127.0.0.1, and returns <dir>/<name>.
func newCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dir, name string, usage x509.ExtKeyUsage) string {
	t.Helper()
	base := filepath.Join(dir, name)
	(&testcerts.CA{Cert: ca, Key: caKey}).WriteLeaf(t, base+".crt", base+".key", name, usage)
	return base
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	testcerts.WritePEM(t, path, typ, der)
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*lsgrpc.Config)
		err  string
	}{
		{"defaults", func(*lsgrpc.Config) {}, ""},
		{"zero means default", func(c *lsgrpc.Config) { *c = lsgrpc.Config{Listen: "127.0.0.1:1"} }, ""},
		{"disabled", func(c *lsgrpc.Config) { c.Listen = "" }, ""},
		{"no port", func(c *lsgrpc.Config) { c.Listen = "127.0.0.1" }, "grpc.listen: "},
		{"no host", func(c *lsgrpc.Config) { c.Listen = ":9514" }, "grpc.listen: "},
		{"bad policy", func(c *lsgrpc.Config) { c.SlowPolicy = "wait" }, "grpc.slow_policy: "},
		{"negative queue", func(c *lsgrpc.Config) { c.QueueEntries = -1 }, "grpc.queue_entries: "},
		{"tiny send size", func(c *lsgrpc.Config) { c.MaxSendMsgSize = 100 }, "grpc.max_send_msg_size: "},
		{"short keepalive", func(c *lsgrpc.Config) { c.Keepalive.Time = time.Millisecond }, "grpc.keepalive.time: "},
		{"tls key without cert", func(c *lsgrpc.Config) { c.TLS.KeyFile = "k" }, "grpc.tls: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := lsgrpc.DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)) {
				t.Fatalf("Validate: %v, want prefix %q", err, c.err)
			}
		})
	}
}

// TestListenErrors: New fails, naming the key, when the port is taken or
// the certificate cannot be read, so that the daemon fails before READY.
func TestListenErrors(t *testing.T) {
	b := bustest.Open(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := lsgrpc.DefaultConfig()
	cfg.Listen = ln.Addr().String()
	if _, err := lsgrpc.New(cfg, b, nil, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "grpc.listen: ") {
		t.Errorf("port in use: %v", err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = config.ServerTLS{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}
	if _, err := lsgrpc.New(cfg, b, nil, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "grpc.tls: ") {
		t.Errorf("missing certificate: %v", err)
	}
}

// TestMaxStreams refuses the stream past max_streams.
func TestMaxStreams(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) { c.MaxStreams = 2 }})
	cli := pb.NewLogServiceClient(e.client())
	for range 2 {
		st, err := cli.StreamLogs(t.Context(), &pb.LogRequest{})
		if err != nil {
			t.Fatal(err)
		}
		collect(t, st, 0, true, 10*time.Second)
	}
	st, err := cli.StreamLogs(t.Context(), &pb.LogRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestHealthFollowsBus: the health service says NOT_SERVING while the
// bus has lost its NATS server, and SERVING again once it is back.
func TestHealthFollowsBus(t *testing.T) {
	ns := bustest.StartProcess(t)
	e := startEnv(t, envOpt{bus: []func(*bus.Config){func(c *bus.Config) { c.URLs = []string{ns.URL()} }}})
	hc := healthpb.NewHealthClient(e.client())
	want := func(st healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		bustest.WaitFor(t, 20*time.Second, "health "+st.String(), func() bool {
			r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: lsgrpc.ServiceV1})
			return err == nil && r.GetStatus() == st
		})
	}
	want(healthpb.HealthCheckResponse_SERVING)
	ns.Kill()
	want(healthpb.HealthCheckResponse_NOT_SERVING)
	ns.Start()
	want(healthpb.HealthCheckResponse_SERVING)
}

// TestLegacyDropNotice: a legacy client, which has no control messages,
// is told of dropped entries by an entry from logstream itself.
func TestLegacyDropNotice(t *testing.T) {
	e := startEnv(t, envOpt{cfg: func(c *lsgrpc.Config) { c.QueueEntries = 50 }})
	st, err := legacypb.NewLogServiceClient(e.client(smallWindow...)).StreamLogs(t.Context(), &legacypb.LogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitStreams(t, e.srv, 1, 10*time.Second)
	pad := strings.Repeat("p", 2000)
	for i := range 2000 {
		en := entry(i)
		en.Message += " " + pad
		if err := e.bus.Publisher().Publish(t.Context(), en); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.bus.Publisher().Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^logstream: (\d+) entries dropped: the client did not keep up$`)
	var got, dropped int
	for got+dropped < 2000 {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d entries and %d dropped: %v", got, dropped, err)
		}
		if s := re.FindStringSubmatch(m.GetMessage()); s != nil {
			if m.GetLevel() != "warning" {
				t.Errorf("notice level %q", m.GetLevel())
			}
			n, _ := strconv.Atoi(s[1])
			dropped += n
			continue
		}
		got++
	}
	if dropped == 0 || got+dropped != 2000 {
		t.Fatalf("%d entries and %d dropped, want 2000 in all with some dropped", got, dropped)
	}
}
