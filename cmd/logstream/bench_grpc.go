package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/delivery/grpc/grpcbench"
	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func init() {
	benchmarks["grpc"] = command{"gRPC streams: entries/s over 1 and 100 streams, p99 latency", runBenchGRPC}
}

func runBenchGRPC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logstream bench grpc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	streamsFlag := fs.String("streams", "1,100", "stream counts to measure, comma-separated; every stream reads every entry, each on its own connection")
	entries := fs.Int("entries", 100000, "entries published as fast as the bus takes them, for the throughput")
	rate := fs.Int("rate", 2000, "entries a second published for the latency measurement")
	duration := fs.Duration("duration", 5*time.Second, "length of the latency measurement")
	size := fs.Int("size", 200, "message `bytes`")
	api := fs.String("api", "both", "the call to measure: StreamLogs (one entry a message), StreamLogBatches (up to 128), or both")
	logstreamd := fs.String("logstreamd", "", "logstreamd `binary` to start on free ports (default: next to this program, else in $PATH)")
	server := fs.String("server", "", "measure a running daemon's gRPC `address` instead of starting one (with -nats)")
	natsURL := fs.String("nats", "", "with -server: the daemon's NATS `URL` (bus.embedded.listen), to publish into; the bench's bus client creates or updates the stream with the default bus.stream settings")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: logstream bench grpc [flags]

Starts logstreamd on free ports (or measures -server), opens N gRPC streams
(logstream.v1 StreamLogs and StreamLogBatches) that each select every bench
entry, and publishes into the daemon's bus: first -entries as fast as the bus takes them (throughput:
entries delivered a second over all streams), then -rate entries a second for
-duration (latency from publish to receipt by the client, p50/p99/max).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var counts []int
	for f := range strings.SplitSeq(*streamsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("bench grpc: -streams: bad count %q", f)
		}
		counts = append(counts, n)
	}
	var apis []bool // batches?
	switch *api {
	case "StreamLogs":
		apis = []bool{false}
	case "StreamLogBatches":
		apis = []bool{true}
	case "both":
		apis = []bool{false, true}
	default:
		return fmt.Errorf("bench grpc: -api: %q is not StreamLogs, StreamLogBatches or both", *api)
	}
	if (*server == "") != (*natsURL == "") {
		return errors.New("bench grpc: -server and -nats go together")
	}

	addr, nats := *server, *natsURL
	if addr == "" {
		d, err := startGRPCBenchDaemon(ctx, *logstreamd)
		if err != nil {
			return err
		}
		defer d.stop()
		addr, nats = d.grpc, d.nats
		fmt.Fprintf(stderr, "started %s (gRPC %s, NATS %s)\n", d.bin, addr, nats)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	b, err := bus.Open(octx, bus.Config{URLs: []string{nats}}, "", nil, nil)
	cancel()
	if err != nil {
		return fmt.Errorf("bench grpc: connect to %s: %w", nats, err)
	}
	defer b.Close()
	defer b.Publisher().Close(context.Background())

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "call\tstreams\tpublished\tdelivered\tentries/s delivered\tper stream/s\tdropped\tlatency @%d/s p50\tp99\tmax\tdropped\t\n", *rate)
	for _, batches := range apis {
		call := "StreamLogs"
		if batches {
			call = "StreamLogBatches"
		}
		for _, n := range counts {
			fmt.Fprintf(stderr, "measuring %s over %d streams...\n", call, n)
			r, err := grpcbench.Run(ctx, grpcbench.Options{
				Addr: addr, Publisher: b.Publisher(), Streams: n, Batches: batches,
				Entries: *entries, Rate: *rate, Duration: *duration, Size: *size,
			})
			if err != nil {
				return fmt.Errorf("bench grpc: %s, %d streams: %w", call, n, err)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.0f\t%d\t%v\t%v\t%v\t%d\t\n", call, r.Streams, r.Published, r.Delivered, r.PerSecond,
				r.PerSecond/float64(r.Streams), r.Dropped, grpcBenchMs(r.P50), grpcBenchMs(r.P99), grpcBenchMs(r.Max), r.LatencyDropped)
		}
	}
	return tw.Flush()
}

func grpcBenchMs(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
}

// grpcBenchDaemon is a logstreamd started for a benchmark.
type grpcBenchDaemon struct {
	bin, grpc, nats string
	cmd             *exec.Cmd
	dir             string
	log             *bytes.Buffer
	exited          chan error
}

func grpcFindLogstreamd(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "logstreamd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("logstreamd")
	if err != nil {
		return "", errors.New("logstreamd not found next to logstream nor in $PATH: build it (make build) or give -logstreamd")
	}
	return p, nil
}

func grpcBenchFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startGRPCBenchDaemon starts logstreamd with free ports, syslog and journald
// off, and waits until its gRPC health service says SERVING.
func startGRPCBenchDaemon(ctx context.Context, bin string) (*grpcBenchDaemon, error) {
	bin, err := grpcFindLogstreamd(bin)
	if err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = grpcBenchFreePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "logstream-bench-grpc-")
	if err != nil {
		return nil, err
	}
	d := &grpcBenchDaemon{
		bin: bin, dir: dir, log: &bytes.Buffer{}, exited: make(chan error, 1),
		grpc: "127.0.0.1:" + strconv.Itoa(ports[0]), nats: "nats://127.0.0.1:" + strconv.Itoa(ports[1]),
	}
	cfg := fmt.Sprintf("state_dir: %s\nlog:\n  level: warn\nbus:\n  embedded:\n    listen: 127.0.0.1:%d\nhttp:\n  listen: 127.0.0.1:%d\ngrpc:\n  listen: %s\nsyslog:\n  enabled: false\njournald:\n  enabled: false\n",
		filepath.Join(dir, "state"), ports[1], ports[2], d.grpc)
	cfgPath := filepath.Join(dir, "logstreamd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "-config", cfgPath)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d.cmd.Stderr = pw
	if err := d.cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	pw.Close()
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
		d.exited <- d.cmd.Wait()
	}()
	cc, err := grpclib.NewClient(d.grpc, grpclib.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.stop()
		return nil, err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return d, nil
		}
		select {
		case err := <-d.exited:
			mu.Lock()
			defer mu.Unlock()
			return nil, fmt.Errorf("logstreamd exited: %v\n%s", err, d.log.String())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("logstreamd not serving gRPC on %s: %v", d.grpc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *grpcBenchDaemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	os.RemoveAll(d.dir)
}
