package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/bus/busbench"
)

// The bench subscribes with a plain core NATS subscription, as any
// service consuming the subjects would: the count is what reaches a NATS
// subscriber.

// natsCounter counts bench entries on a core NATS subscription.
type natsCounter struct {
	sub   *busbench.Subscription
	count int

	mu        sync.Mutex
	seen      []uint64
	received  int
	dups      int
	last      time.Time
	latencies []int64
	progress  atomic.Int64
	done      chan struct{}
	doneOnce  sync.Once
}

func newNATSCounter(url, subject string, count int) (*natsCounter, error) {
	c := &natsCounter{count: count, seen: make([]uint64, count/64+1),
		latencies: make([]int64, 0, count), done: make(chan struct{})}
	var err error
	if c.sub, err = busbench.Subscribe(url, "logstream-bench-syslog", subject, c.handle); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *natsCounter) handle(data []byte) {
	now := time.Now()
	seq, ns, ok := parseBenchMessage(data)
	if !ok || seq >= c.count {
		return
	}
	c.mu.Lock()
	if c.seen[seq/64]&(1<<(seq%64)) != 0 {
		c.dups++
	} else {
		c.seen[seq/64] |= 1 << (seq % 64)
		c.received++
		c.latencies = append(c.latencies, now.UnixNano()/1000-ns/1000)
	}
	c.last = now
	n := c.received
	c.mu.Unlock()
	c.progress.Store(int64(n))
	if n == c.count {
		c.doneOnce.Do(func() { close(c.done) })
	}
}

func (c *natsCounter) wait(ctx context.Context, timeout, idle time.Duration, progress io.Writer) counterResult {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastN, lastChange := int64(-1), time.Now()
loop:
	for {
		select {
		case <-c.done:
			break loop
		case <-ctx.Done():
			break loop
		case <-deadline.C:
			fmt.Fprintf(progress, "timed out after %v\n", timeout)
			break loop
		case <-tick.C:
			n := c.progress.Load()
			if n != lastN {
				lastN, lastChange = n, time.Now()
			} else if time.Since(lastChange) > idle {
				fmt.Fprintf(progress, "nothing new for %v: %d of %d received\n", idle, n, c.count)
				break loop
			}
		}
	}
	c.sub.Unsubscribe()
	c.mu.Lock()
	defer c.mu.Unlock()
	return counterResult{received: c.received, duplicates: c.dups, last: c.last, latencies: c.latencies}
}

func (c *natsCounter) close() { c.sub.Close() }

// scrapeSyslogMetrics reads logstreamd's /metrics and keeps the
// logstream_syslog_* samples that are not zero.
func scrapeSyslogMetrics(ctx context.Context, url string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "logstream_syslog_") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if ok && v != "0" {
			out[k] = v
		}
	}
	return out, sc.Err()
}
