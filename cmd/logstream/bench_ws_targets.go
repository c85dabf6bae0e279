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

// wsServerProc is a server process started by the benchmark.
type wsServerProc struct {
	cmd  *exec.Cmd
	dir  string
	log  string
	done chan error
}

func wsStartProc(dir, bin string, args ...string) (*wsServerProc, error) {
	p := &wsServerProc{dir: dir, log: filepath.Join(dir, "server.log"), done: make(chan error, 1)}
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
func (p *wsServerProc) waitReady(ctx context.Context, ok func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("exited: %v\n%s", err, wsTailFile(p.log, 4096))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60s\n%s", wsTailFile(p.log, 4096))
		}
	}
	return nil
}

func (p *wsServerProc) stop() {
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

// wsLogstream is logstreamd: started on free ports, or at -url.
type wsLogstream struct {
	cfg    *wsBenchConfig
	proc   *wsServerProc
	base   string // ws://host:port/ws
	syslog string
	pidNum int
}

func (t *wsLogstream) name() string { return "logstream" }

func (t *wsLogstream) start(ctx context.Context) error {
	c := t.cfg
	if c.url != "" {
		t.base, t.syslog, t.pidNum = c.url, c.syslogAddr, c.pid
		return nil
	}
	bin := c.logstreamd
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "logstreamd"); wsFileExists(p) {
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
		if ports[i], err = wsFreePort(); err != nil {
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
	t.proc, err = wsStartProc(dir, bin, "-config", cfgPath)
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

func (t *wsLogstream) stop()    { t.proc.stop() }
func (t *wsLogstream) pid() int { return t.pidNum }

func (t *wsLogstream) clientURL(i int) string {
	return t.base + "?services=" + url.QueryEscape(wsService(i%t.cfg.spread))
}

func (t *wsLogstream) hello(int) []byte { return nil }

func (t *wsLogstream) ready(frame []byte) bool {
	return bytes.Contains(frame, []byte(`"type":"caught_up"`))
}

var (
	wsLsEntries = []byte(`{"type":"entries"`)
	wsLsDropped = []byte(`{"type":"dropped"`)
	wsLsSeq     = []byte(`,"seq":`)
)

func (t *wsLogstream) count(frame []byte) (int, []byte, bool, []byte) {
	if bytes.HasPrefix(frame, wsLsEntries) {
		return bytes.Count(frame, wsLsSeq), wsFirstReceived(frame), false, nil
	}
	return 0, nil, bytes.HasPrefix(frame, wsLsDropped), nil
}

func (t *wsLogstream) newLoader() (wsLoader, error) {
	conn, err := net.DialTimeout("tcp", t.syslog, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return &wsSyslogLoader{conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}, nil
}

func wsService(k int) string { return "bench-" + strconv.Itoa(k) }

// wsSyslogLoader sends RFC 5424 messages over TCP with octet counting.
type wsSyslogLoader struct {
	conn net.Conn
	w    *bufio.Writer
	msg  []byte
	line []byte
}

func (l *wsSyslogLoader) send(service, n, size int) error {
	if len(l.msg) != size {
		l.msg = bytes.Repeat([]byte("x"), size)
		copy(l.msg, "bench ")
	}
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	svc := wsService(service)
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

func (l *wsSyslogLoader) close() { l.conn.Close() }

func wsFileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// --- centrifugo ---

// wsCentrifugo is Centrifugo in insecure client mode, published to
// through its HTTP batch API.
type wsCentrifugo struct {
	cfg    *wsBenchConfig
	proc   *wsServerProc
	port   int
	client *http.Client
}

func (t *wsCentrifugo) name() string { return "centrifugo" }

func (t *wsCentrifugo) start(ctx context.Context) error {
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
	if t.port, err = wsFreePort(); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{"http_server":{"address":"127.0.0.1","port":%d},"log":{"level":"error"},
"client":{"insecure":true,"allowed_origins":["*"]},"http_api":{"insecure":true},"usage_stats":{"disabled":true}}`, t.port)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	t.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.proc, err = wsStartProc(dir, bin, "-c", cfgPath)
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

func (t *wsCentrifugo) api() string {
	return "http://127.0.0.1:" + strconv.Itoa(t.port) + "/api/batch"
}

func (t *wsCentrifugo) stop()    { t.proc.stop() }
func (t *wsCentrifugo) pid() int { return t.proc.cmd.Process.Pid }

func (t *wsCentrifugo) clientURL(int) string {
	return "ws://127.0.0.1:" + strconv.Itoa(t.port) + "/connection/websocket"
}

func (t *wsCentrifugo) hello(i int) []byte {
	return []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + wsService(i%t.cfg.spread) + `"}}`)
}

func (t *wsCentrifugo) ready(frame []byte) bool {
	return bytes.Contains(frame, []byte(`"id":2`))
}

var (
	wsCfPub  = []byte(`"pub":`)
	wsCfPing = []byte(`{}`)
)

func (t *wsCentrifugo) count(frame []byte) (int, []byte, bool, []byte) {
	var reply []byte
	// A server ping is an empty object on a line of its own.
	if bytes.Equal(frame, wsCfPing) || bytes.HasPrefix(frame, []byte("{}\n")) || bytes.Contains(frame, []byte("\n{}")) {
		reply = wsCfPing
	}
	n := bytes.Count(frame, wsCfPub)
	if n == 0 {
		return 0, nil, false, reply
	}
	return n, wsFirstReceived(frame), false, reply
}

func (t *wsCentrifugo) newLoader() (wsLoader, error) {
	return &wsCentrifugoLoader{t: t}, nil
}

// wsCentrifugoLoader publishes entries shaped like logstream's JSON, so that
// frames are of the same size.
type wsCentrifugoLoader struct {
	t    *wsCentrifugo
	msg  string
	body bytes.Buffer
}

func (l *wsCentrifugoLoader) send(service, n, size int) error {
	if len(l.msg) != size {
		m := []byte(strings.Repeat("x", size))
		copy(m, "bench ")
		l.msg = string(m)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	svc := wsService(service)
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

func (l *wsCentrifugoLoader) close() {}
