package syslog

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DropReason says why a received message was not published.
type DropReason int

// Drop reasons. For every listener, received = published + the sum of
// dropped over these reasons.
const (
	// DropGarbage: binary bytes, not a text message.
	DropGarbage DropReason = iota
	// DropQueueFull: a datagram listener's queue was full.
	DropQueueFull
	// DropOversize: an octet count above max_message_size; the
	// connection is closed.
	DropOversize
	// DropPublish: the bus refused the entry or the shutdown drain ended
	// before it was published.
	DropPublish
	// DropEmpty: an empty datagram.
	DropEmpty
	numDropReasons
)

var dropNames = [numDropReasons]string{"garbage", "queue_full", "oversize", "publish_error", "empty"}

func (r DropReason) String() string { return dropNames[r] }

// CloseReason says why a stream connection ended.
type CloseReason int

// Close reasons.
const (
	// CloseEOF: the peer closed.
	CloseEOF CloseReason = iota
	// CloseLimit: refused because max_connections were open.
	CloseLimit
	// CloseHandshake: the TLS handshake failed or timed out.
	CloseHandshake
	// CloseWrongProtocol: TLS to a plain port, or HTTP.
	CloseWrongProtocol
	// CloseOversize: an octet count above max_message_size.
	CloseOversize
	// CloseIdle: idle_timeout passed.
	CloseIdle
	// CloseError: a read error.
	CloseError
	// CloseShutdown: the receiver stopped.
	CloseShutdown
	numCloseReasons
)

var closeNames = [numCloseReasons]string{"eof", "limit", "tls_handshake", "wrong_protocol", "oversize", "idle_timeout", "read_error", "shutdown"}

func (r CloseReason) String() string { return closeNames[r] }

// counters are one listener's, updated atomically on the hot path and
// read by the Prometheus collector and Stats.
type counters struct {
	received    atomic.Uint64
	published   atomic.Uint64
	truncated   atomic.Uint64
	parseErrors atomic.Uint64
	dropped     [numDropReasons]atomic.Uint64
	connsOpen   atomic.Int64
	connsTotal  atomic.Uint64
	closed      [numCloseReasons]atomic.Uint64
}

// Stats is a snapshot of one listener's counters.
type Stats struct {
	Listener    string
	Received    uint64
	Published   uint64
	Truncated   uint64
	ParseErrors uint64
	Dropped     map[DropReason]uint64
	// ConnsOpen, ConnsTotal and Closed are for stream listeners.
	ConnsOpen  int64
	ConnsTotal uint64
	Closed     map[CloseReason]uint64
}

// DroppedTotal sums Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

func (c *counters) snapshot(label string) Stats {
	s := Stats{
		Listener: label, Received: c.received.Load(), Published: c.published.Load(),
		Truncated: c.truncated.Load(), ParseErrors: c.parseErrors.Load(),
		Dropped: map[DropReason]uint64{}, ConnsOpen: c.connsOpen.Load(), ConnsTotal: c.connsTotal.Load(),
		Closed: map[CloseReason]uint64{},
	}
	for i := range c.dropped {
		if v := c.dropped[i].Load(); v > 0 {
			s.Dropped[DropReason(i)] = v
		}
	}
	for i := range c.closed {
		if v := c.closed[i].Load(); v > 0 {
			s.Closed[CloseReason(i)] = v
		}
	}
	return s
}

var (
	descReceived = prometheus.NewDesc("logstream_syslog_received_total",
		"Syslog messages received, by listener.", []string{"listener"}, nil)
	descPublished = prometheus.NewDesc("logstream_syslog_published_total",
		"Syslog messages published to the bus, by listener.", []string{"listener"}, nil)
	descTruncated = prometheus.NewDesc("logstream_syslog_truncated_total",
		"Syslog messages cut at max_message_size, by listener.", []string{"listener"}, nil)
	descParseErrors = prometheus.NewDesc("logstream_syslog_parse_errors_total",
		"Syslog messages published with a parse_error field, by listener.", []string{"listener"}, nil)
	descDropped = prometheus.NewDesc("logstream_syslog_dropped_total",
		"Syslog messages received but not published, by listener and reason (garbage, queue_full, oversize, publish_error, empty).",
		[]string{"listener", "reason"}, nil)
	descConnsOpen = prometheus.NewDesc("logstream_syslog_connections_open",
		"Open stream connections, by listener.", []string{"listener"}, nil)
	descConnsTotal = prometheus.NewDesc("logstream_syslog_connections_total",
		"Stream connections accepted, by listener.", []string{"listener"}, nil)
	descClosed = prometheus.NewDesc("logstream_syslog_connections_closed_total",
		"Stream connections ended, by listener and reason (eof, limit, tls_handshake, wrong_protocol, oversize, idle_timeout, read_error, shutdown).",
		[]string{"listener", "reason"}, nil)
)

// collector exposes every listener's counters; reading atomics at scrape
// time keeps the message path free of label lookups.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descPublished, descTruncated, descParseErrors, descDropped, descConnsOpen, descConnsTotal, descClosed} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.s.listeners {
		n, k := l.label, &l.counters
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{n}, labels...)...)
		}
		counter(descReceived, k.received.Load())
		counter(descPublished, k.published.Load())
		counter(descTruncated, k.truncated.Load())
		counter(descParseErrors, k.parseErrors.Load())
		for i := range k.dropped {
			counter(descDropped, k.dropped[i].Load(), dropNames[i])
		}
		if l.cfg.stream() {
			ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(k.connsOpen.Load()), n)
			counter(descConnsTotal, k.connsTotal.Load())
			for i := range k.closed {
				counter(descClosed, k.closed[i].Load(), closeNames[i])
			}
		}
	}
}
