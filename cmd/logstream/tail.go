package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/logstream/logstream/bus"
	pb "github.com/logstream/logstream/delivery/grpc/logstreampb/v1"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func init() {
	commands["tail"] = command{"follow the logs, live (logstream tail -h)", runTail}
}

// tailDefaultServer is logstreamd's default gRPC address.
const tailDefaultServer = "127.0.0.1:9514"

const tailUsage = `Usage: logstream tail [flags]

Print the log entries logstreamd collects (journal, syslog, files) and keep
following new ones, like tail -f. It connects to logstreamd's gRPC port; if
the connection breaks or the daemon restarts, it reconnects and carries on
where it stopped, with nothing missed and nothing twice. Ctrl-C exits.

Examples:
  logstream tail                        the last 10 entries, then follow
  logstream tail -s nginx -l warning    nginx, warnings and worse
  logstream tail -H 'web*' -g 'timeout|refused'
  logstream tail --since 1h --no-follow  the last hour, then exit
  logstream tail -n 0 --json | jq .     only new entries, as JSON

What to show (filters combine; each repeatable flag is an "or"):
  -s, --service NAME   a service: systemd unit without ".service", or the syslog
                       tag/APP-NAME. Repeat for more. '*' matches anything: 'php*'
  -H, --host NAME      a host, as the entry names it. Repeat for more; '*' globs
  -l, --level LEVEL    this level and worse: emerg alert crit err warning notice
                       info debug (also error, warn, 0-7)
  -g, --grep REGEX     messages matching this regular expression (RE2 syntax)
      --contains TEXT  messages containing this text

Where to start (default: the last 10 entries):
  -n, --lines N        the last N matching entries; 0 shows only new ones
      --since WHEN     entries since WHEN: a duration ago (30s, 10m, 2h, 1d) or a
                       time (2026-01-02T15:04:05Z, "2026-01-02 15:04", 2026-01-02)
      --after SEQ      entries after sequence number SEQ (as printed by --json)
      --no-follow      stop after the history instead of following

How to show it:
      --json           one JSON object per line: the entry as logstream publishes
                       it, plus "seq". Notices go to stderr.
      --color WHEN     auto (default: when writing to a terminal and NO_COLOR is
                       unset), always or never
      --utc            times in UTC instead of local time

Where to connect:
      --server ADDR    logstreamd's gRPC address host:port (default
                       $LOGSTREAM_SERVER, else 127.0.0.1:9514)
      --token TOKEN    a bearer token (default $LOGSTREAM_TOKEN), when the
                       daemon requires one; --token-file FILE reads it from FILE
      --tls            connect with TLS (implied by the other --tls-* flags)
      --tls-ca FILE    CA certificates to verify the server (default: the system's)
      --tls-cert FILE  client certificate, with --tls-key FILE
      --tls-server-name NAME  name to verify in the server certificate
      --tls-insecure   do not verify the server certificate (testing only)
`

// tailOptions is what the flags say.
type tailOptions struct {
	req       *pb.LogRequest
	follow    bool
	json      bool
	color     bool
	utc       bool
	server    string
	token     string
	tls       *tls.Config
	retryBase time.Duration
}

// tailStringList is a repeatable string flag.
type tailStringList []string

func (s *tailStringList) String() string     { return strings.Join(*s, ",") }
func (s *tailStringList) Set(v string) error { *s = append(*s, v); return nil }

func parseTail(args []string, stdout, stderr io.Writer) (*tailOptions, error) {
	fs := flag.NewFlagSet("logstream tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tailUsage) }
	var (
		services, hosts                            tailStringList
		level, grep, contains, since, colorWhen    string
		server, token, tokenFile                   string
		tlsCA, tlsCert, tlsKey, tlsName            string
		lines                                      int
		after                                      uint64
		noFollow, asJSON, utc, useTLS, tlsInsecure bool
	)
	for _, n := range []string{"s", "service"} {
		fs.Var(&services, n, "")
	}
	for _, n := range []string{"H", "host"} {
		fs.Var(&hosts, n, "")
	}
	for _, n := range []string{"l", "level"} {
		fs.StringVar(&level, n, "", "")
	}
	for _, n := range []string{"g", "grep"} {
		fs.StringVar(&grep, n, "", "")
	}
	for _, n := range []string{"n", "lines"} {
		fs.IntVar(&lines, n, 10, "")
	}
	fs.StringVar(&contains, "contains", "", "")
	fs.StringVar(&since, "since", "", "")
	fs.Uint64Var(&after, "after", 0, "")
	fs.BoolVar(&noFollow, "no-follow", false, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.StringVar(&colorWhen, "color", "auto", "")
	fs.BoolVar(&utc, "utc", false, "")
	fs.StringVar(&server, "server", "", "")
	fs.StringVar(&token, "token", "", "")
	fs.StringVar(&tokenFile, "token-file", "", "")
	fs.BoolVar(&useTLS, "tls", false, "")
	fs.StringVar(&tlsCA, "tls-ca", "", "")
	fs.StringVar(&tlsCert, "tls-cert", "", "")
	fs.StringVar(&tlsKey, "tls-key", "", "")
	fs.StringVar(&tlsName, "tls-server-name", "", "")
	fs.BoolVar(&tlsInsecure, "tls-insecure", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("tail: %w (see logstream tail -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("tail: unexpected argument %q (filters are flags: -s SERVICE, -g REGEX; see logstream tail -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := &tailOptions{follow: !noFollow, json: asJSON, utc: utc, retryBase: 100 * time.Millisecond}
	req := &pb.LogRequest{Hosts: hosts, Services: services, Contains: contains}
	if level != "" {
		l, err := bus.ParseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("tail: --level: %q is not a level (emerg alert crit err warning notice info debug)", level)
		}
		req.Level = l.String()
	}
	if grep != "" {
		if _, err := regexp.Compile(grep); err != nil {
			return nil, fmt.Errorf("tail: --grep: %v", err)
		}
		req.Regex = grep
	}
	starts := 0
	for _, n := range []string{"n", "lines", "since", "after"} {
		if set[n] {
			starts++
		}
	}
	if starts > 1 {
		return nil, errors.New("tail: use one of -n, --since and --after")
	}
	switch {
	case set["since"]:
		t, err := tailParseSince(since, time.Now())
		if err != nil {
			return nil, fmt.Errorf("tail: --since: %v", err)
		}
		req.Start = &pb.LogRequest_Since{Since: timestamppb.New(t)}
	case set["after"]:
		req.Start = &pb.LogRequest_AfterSeq{AfterSeq: after}
	case lines < 0:
		return nil, fmt.Errorf("tail: -n: %d is negative", lines)
	case lines == 0:
		req.Start = &pb.LogRequest_Live{Live: true}
	default:
		req.Start = &pb.LogRequest_Last{Last: uint32(min(lines, 1000000))}
	}
	o.req = req

	switch colorWhen {
	case "auto":
		o.color = !asJSON && tailIsTerminal(stdout) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	case "always":
		o.color = true
	case "never":
	default:
		return nil, fmt.Errorf("tail: --color: %q is not auto, always or never", colorWhen)
	}

	o.server = server
	if o.server == "" {
		o.server = os.Getenv("LOGSTREAM_SERVER")
	}
	if o.server == "" {
		o.server = tailDefaultServer
	}
	o.token = token
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("tail: --token-file: %w", err)
		}
		o.token = strings.TrimSpace(string(b))
	}
	if o.token == "" {
		o.token = os.Getenv("LOGSTREAM_TOKEN")
	}
	if useTLS || tlsCA != "" || tlsCert != "" || tlsKey != "" || tlsName != "" || tlsInsecure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: tlsName, InsecureSkipVerify: tlsInsecure}
		if tlsCA != "" {
			b, err := os.ReadFile(tlsCA)
			if err != nil {
				return nil, fmt.Errorf("tail: --tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("tail: --tls-ca: %s holds no PEM certificate", tlsCA)
			}
			tc.RootCAs = pool
		}
		if (tlsCert == "") != (tlsKey == "") {
			return nil, errors.New("tail: --tls-cert and --tls-key go together")
		}
		if tlsCert != "" {
			c, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
			if err != nil {
				return nil, fmt.Errorf("tail: --tls-cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		o.tls = tc
	}
	return o, nil
}

// tailParseSince reads a duration before now (30s, 10m, 2h, 1d, 1h30m) or a
// time (RFC 3339, "2006-01-02 15:04[:05]" or "2006-01-02" in local time).
func tailParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 && n <= 36500 {
			return now.Add(-time.Duration(n * 24 * float64(time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (30s, 10m, 2h, 1d) nor a time (2026-01-02T15:04:05Z, 2026-01-02 15:04)", s)
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTail(args, stdout, stderr)
	if err != nil {
		return err
	}
	return tail(ctx, o, stdout, stderr)
}

// tail streams until ctx ends (nil: a tailClean exit), the history is shown
// with --no-follow, or the server refuses the request. A broken
// connection is retried with backoff, resuming after the last entry
// shown.
func tail(ctx context.Context, o *tailOptions, stdout, stderr io.Writer) error {
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	cc, err := grpclib.NewClient(o.server,
		grpclib.WithTransportCredentials(creds),
		grpclib.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpclib.WithDefaultCallOptions(grpclib.MaxCallRecvMsgSize(64<<20)),
		grpclib.WithUserAgent("logstream-tail/"+version),
	)
	if err != nil {
		return fmt.Errorf("tail: --server %s: %w", o.server, err)
	}
	defer cc.Close()
	cli := pb.NewLogServiceClient(cc)
	if o.token != "" {
		tok := o.token
		if !strings.HasPrefix(tok, "Bearer ") {
			tok = "Bearer " + tok
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tok)
	}
	p := newTailPrinter(stdout, o)
	defer p.flush()

	var (
		lastSeq   uint64
		haveSeq   bool
		caughtUp  bool      // the first stream delivered its history
		startedAt time.Time // when the first stream was accepted
		attempt   int
		lastErr   string
		broken    bool // a stream was lost: say so when it is back
	)
	for {
		req := o.req
		switch {
		case haveSeq:
			req = tailCloneReq(o.req)
			req.Start = &pb.LogRequest_AfterSeq{AfterSeq: lastSeq}
		case caughtUp:
			// Nothing shown yet, but the history was: what is new since
			// the first stream began.
			req = tailCloneReq(o.req)
			req.Start = &pb.LogRequest_Since{Since: timestamppb.New(startedAt)}
		}
		sctx, cancel := context.WithCancel(ctx)
		reqTime := time.Now()
		msgs, errc := tailReceive(sctx, cli, req)
		got := false
		for m := range msgs {
			if !got {
				got = true
				attempt = 0
				lastErr = ""
				if startedAt.IsZero() {
					startedAt = reqTime
				}
				if broken {
					broken = false
					if haveSeq {
						fmt.Fprintf(stderr, "logstream: reconnected to %s, resuming after seq %d\n", o.server, lastSeq)
					} else {
						fmt.Fprintf(stderr, "logstream: reconnected to %s\n", o.server)
					}
				}
			}
			if c := m.GetControl(); c != nil {
				switch c.GetKind() {
				case pb.Control_KIND_CAUGHT_UP:
					caughtUp = true
					if !o.follow {
						cancel()
						return p.flush()
					}
				case pb.Control_KIND_DROPPED:
					if err := p.flush(); err != nil {
						cancel()
						return err
					}
					fmt.Fprintf(stderr, "logstream: %d entries dropped: %s\n", c.GetDropped(), tailDropReason(c.GetReason()))
				}
			} else {
				if err := p.entry(m); err != nil {
					cancel()
					return err
				}
				lastSeq, haveSeq = m.GetSeq(), true
			}
			if len(msgs) == 0 {
				if err := p.flush(); err != nil {
					cancel()
					return err
				}
			}
		}
		err := <-errc
		cancel()
		p.flush()
		if ctx.Err() != nil {
			return nil
		}
		if err == io.EOF {
			err = status.Error(codes.Unavailable, "the server ended the stream")
		}
		s := status.Convert(err)
		switch s.Code() {
		case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition, codes.Unimplemented:
			return fmt.Errorf("tail: %s refused the request: %s", o.server, s.Message())
		}
		broken = true
		attempt++
		delay := min(o.retryBase<<min(attempt-1, 5), 2*time.Second)
		delay += rand.N(delay/4 + 1)
		if msg := s.Message(); msg != lastErr {
			lastErr = msg
			fmt.Fprintf(stderr, "logstream: %s: %s; retrying\n", o.server, tailDescribe(s))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// tailReceive opens a stream (StreamLogBatches: fewer messages for a
// long history) and delivers its entries and control messages, in order,
// on a channel, which is closed when the stream ends; its error is then
// on the other.
func tailReceive(ctx context.Context, cli pb.LogServiceClient, req *pb.LogRequest) (<-chan *pb.LogEntry, <-chan error) {
	msgs := make(chan *pb.LogEntry, 1024)
	errc := make(chan error, 1)
	go func() {
		defer close(msgs)
		st, err := cli.StreamLogBatches(ctx, req)
		for err == nil {
			var b *pb.LogBatch
			if b, err = st.Recv(); err != nil {
				break
			}
			for _, m := range b.GetEntries() {
				select {
				case msgs <- m:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
		}
		errc <- err
	}()
	return msgs, errc
}

func tailCloneReq(r *pb.LogRequest) *pb.LogRequest {
	return &pb.LogRequest{
		ServiceName: r.GetServiceName(), Hosts: r.GetHosts(), Services: r.GetServices(), Level: r.GetLevel(),
		Contains: r.GetContains(), Regex: r.GetRegex(), Start: r.GetStart(), DisconnectWhenSlow: r.GetDisconnectWhenSlow(),
	}
}

func tailDescribe(s *status.Status) string {
	switch s.Code() {
	case codes.Unavailable:
		if strings.Contains(s.Message(), "connection refused") {
			return "connection refused (is logstreamd running, with grpc.listen on this address?)"
		}
		return s.Message()
	case codes.ResourceExhausted:
		return "the server dropped the stream (" + s.Message() + ")"
	}
	return s.Code().String() + ": " + s.Message()
}

func tailDropReason(r string) string {
	switch r {
	case bus.ReasonSlow:
		return "this client did not keep up"
	case bus.ReasonGone:
		return "no longer held by the server"
	case "too_large":
		return "larger than the server's grpc.max_send_msg_size"
	}
	return r
}
