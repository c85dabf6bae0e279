package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverProc is a server process started by the benchmark.
type serverProc struct {
	cmd  *exec.Cmd
	dir  string
	log  string
	done chan error
}

func startProc(dir, bin string, args ...string) (*serverProc, error) {
	p := &serverProc{dir: dir, log: filepath.Join(dir, "server.log"), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	return p, nil
}

// waitReady polls ok until it holds, the process exits or 60 s pass.
func (p *serverProc) waitReady(ctx context.Context, ok func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("exited: %v\n%s", err, tailFile(p.log, 4096))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60s\n%s", tailFile(p.log, 4096))
		}
	}
	return nil
}

func (p *serverProc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}

// --- logstream ---

// logstreamTarget is logstreamd: started on free ports, or at -url.
type logstreamTarget struct {
	cfg    *wsBenchConfig
	proc   *serverProc
	base   string // ws://host:port/ws
	syslog string
	pidNum int
}

func (t *logstreamTarget) name() string { return "logstream" }

func (t *logstreamTarget) start(ctx context.Context) error {
	c := t.cfg
	if c.url != "" {
		t.base, t.syslog, t.pidNum = c.url, c.syslogAddr, c.pid
		return nil
	}
	bin := c.logstreamd
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "logstreamd"); fileExists(p) {
				bin = p
			}
		}
	}
	if bin == "" {
		p, err := exec.LookPath("logstreamd")
		if err != nil {
			return errors.New("no logstreamd: give -logstreamd, put it next to logstream, or in $PATH (go build -o bin/ ./cmd/...)")
		}
		bin = p
	}
	dir, err := os.MkdirTemp("", "logstream-bench-ws-")
	if err != nil {
		return err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	var ws strings.Builder
	fmt.Fprintf(&ws, "  max_clients: %d\n", c.clients+c.slow+c.stalled+100)
	for line := range strings.SplitSeq(c.wsConfig, ";") {
		if line = strings.TrimSpace(line); line != "" {
			ws.WriteString("  " + line + "\n")
		}
	}
	cfg := fmt.Sprintf(`state_dir: %s
log:
  level: warn
bus:
  embedded:
    listen: 127.0.0.1:%d
http:
  listen: 127.0.0.1:%d
grpc:
  listen: 127.0.0.1:%d
journald:
  enabled: false
syslog:
  enabled: true
  listeners:
    - protocol: tcp
      address: 127.0.0.1:%d
websocket:
%s`, filepath.Join(dir, "state"), ports[0], ports[1], ports[2], ports[3], ws.String())
	cfgPath := filepath.Join(dir, "logstreamd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	t.proc, err = startProc(dir, bin, "-config", cfgPath)
	if err != nil {
		return err
	}
	httpBase := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	err = t.proc.waitReady(ctx, func() bool {
		resp, err := http.Get(httpBase + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return fmt.Errorf("logstreamd: %w", err)
	}
	t.base = "ws://127.0.0.1:" + strconv.Itoa(ports[1]) + "/ws"
	t.syslog = "127.0.0.1:" + strconv.Itoa(ports[3])
	t.pidNum = t.proc.cmd.Process.Pid
	return nil
}

func (t *logstreamTarget) stop()    { t.proc.stop() }
func (t *logstreamTarget) pid() int { return t.pidNum }

func (t *logstreamTarget) clientURL(i int) string {
	return t.base + "?services=" + url.QueryEscape(benchService(i%t.cfg.spread))
}

func (t *logstreamTarget) hello(int) []byte { return nil }

func (t *logstreamTarget) ready(frame []byte) bool {
	return bytes.Contains(frame, []byte(`"type":"caught_up"`))
}

var (
	lsEntries = []byte(`{"type":"entries"`)
	lsDropped = []byte(`{"type":"dropped"`)
	lsSeq     = []byte(`,"seq":`)
)

func (t *logstreamTarget) count(frame []byte) (int, []byte, bool, []byte) {
	if bytes.HasPrefix(frame, lsEntries) {
		return bytes.Count(frame, lsSeq), firstReceived(frame), false, nil
	}
	return 0, nil, bytes.HasPrefix(frame, lsDropped), nil
}

func (t *logstreamTarget) newLoader() (loader, error) {
	conn, err := net.DialTimeout("tcp", t.syslog, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return &syslogLoader{conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}, nil
}

func benchService(k int) string { return "bench-" + strconv.Itoa(k) }

// syslogLoader sends RFC 5424 messages over TCP with octet counting.
type syslogLoader struct {
	conn net.Conn
	w    *bufio.Writer
	msg  []byte
	line []byte
}

func (l *syslogLoader) send(service, n, size int) error {
	if len(l.msg) != size {
		l.msg = bytes.Repeat([]byte("x"), size)
		copy(l.msg, "bench ")
	}
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	svc := benchService(service)
	for range n {
		l.line = append(l.line[:0], "<14>1 "...)
		l.line = append(l.line, ts...)
		l.line = append(l.line, " benchhost "...)
		l.line = append(l.line, svc...)
		l.line = append(l.line, " - - - "...)
		l.line = append(l.line, l.msg...)
		l.w.WriteString(strconv.Itoa(len(l.line)))
		l.w.WriteByte(' ')
		l.w.Write(l.line)
	}
	return l.w.Flush()
}

func (l *syslogLoader) close() { l.conn.Close() }

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// --- centrifugo ---

// centrifugoTarget is Centrifugo in insecure client mode, published to
// through its HTTP batch API.
type centrifugoTarget struct {
	cfg    *wsBenchConfig
	proc   *serverProc
	port   int
	client *http.Client
}

func (t *centrifugoTarget) name() string { return "centrifugo" }

func (t *centrifugoTarget) start(ctx context.Context) error {
	bin := t.cfg.centrifugo
	if bin == "" {
		bin = os.Getenv("LOGSTREAM_CENTRIFUGO")
	}
	if bin == "" {
		p, err := exec.LookPath("centrifugo")
		if err != nil {
			return errors.New("no centrifugo: give -centrifugo or $LOGSTREAM_CENTRIFUGO; build it once with: GOBIN=$HOME/.cache/logstream-bench/bin go install github.com/centrifugal/centrifugo/v6@v6.9.1")
		}
		bin = p
	}
	dir, err := os.MkdirTemp("", "logstream-bench-centrifugo-")
	if err != nil {
		return err
	}
	if t.port, err = freePort(); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{"http_server":{"address":"127.0.0.1","port":%d},"log":{"level":"error"},
"client":{"insecure":true,"allowed_origins":["*"]},"http_api":{"insecure":true},"usage_stats":{"disabled":true}}`, t.port)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	t.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.proc, err = startProc(dir, bin, "-c", cfgPath)
	if err != nil {
		return err
	}
	err = t.proc.waitReady(ctx, func() bool {
		resp, err := t.client.Post(t.api(), "application/json", strings.NewReader(`{"commands":[]}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return fmt.Errorf("centrifugo: %w", err)
	}
	return nil
}

func (t *centrifugoTarget) api() string {
	return "http://127.0.0.1:" + strconv.Itoa(t.port) + "/api/batch"
}

func (t *centrifugoTarget) stop()    { t.proc.stop() }
func (t *centrifugoTarget) pid() int { return t.proc.cmd.Process.Pid }

func (t *centrifugoTarget) clientURL(int) string {
	return "ws://127.0.0.1:" + strconv.Itoa(t.port) + "/connection/websocket"
}

func (t *centrifugoTarget) hello(i int) []byte {
	return []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + benchService(i%t.cfg.spread) + `"}}`)
}

func (t *centrifugoTarget) ready(frame []byte) bool {
	return bytes.Contains(frame, []byte(`"id":2`))
}

var (
	cfPub  = []byte(`"pub":`)
	cfPing = []byte(`{}`)
)

func (t *centrifugoTarget) count(frame []byte) (int, []byte, bool, []byte) {
	var reply []byte
	// A server ping is an empty object on a line of its own.
	if bytes.Equal(frame, cfPing) || bytes.HasPrefix(frame, []byte("{}\n")) || bytes.Contains(frame, []byte("\n{}")) {
		reply = cfPing
	}
	n := bytes.Count(frame, cfPub)
	if n == 0 {
		return 0, nil, false, reply
	}
	return n, firstReceived(frame), false, reply
}

func (t *centrifugoTarget) newLoader() (loader, error) {
	return &centrifugoLoader{t: t}, nil
}

// centrifugoLoader publishes entries shaped like logstream's JSON, so that
// frames are of the same size.
type centrifugoLoader struct {
	t    *centrifugoTarget
	msg  string
	body bytes.Buffer
}

func (l *centrifugoLoader) send(service, n, size int) error {
	if len(l.msg) != size {
		m := []byte(strings.Repeat("x", size))
		copy(m, "bench ")
		l.msg = string(m)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	svc := benchService(service)
	l.body.Reset()
	l.body.WriteString(`{"commands":[`)
	for i := range n {
		if i > 0 {
			l.body.WriteByte(',')
		}
		fmt.Fprintf(&l.body, `{"publish":{"channel":"%s","data":{"time":"%s","received":"%s","host":"benchhost","service":"%s","level":"info","severity":6,"facility":"user","message":"%s","source":"syslog"}}}`,
			svc, now, now, svc, l.msg)
	}
	l.body.WriteString(`]}`)
	resp, err := l.t.client.Post(l.t.api(), "application/json", bytes.NewReader(l.body.Bytes()))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("centrifugo API: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (l *centrifugoLoader) close() {}
