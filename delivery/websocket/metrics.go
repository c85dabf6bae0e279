package websocket

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	clients     prometheus.Gauge
	connections prometheus.Counter
	rejected    *prometheus.CounterVec
	frames      *prometheus.CounterVec
	bytes       prometheus.Counter
	entries     prometheus.Counter
	dropped     *prometheus.CounterVec
	evictions   *prometheus.CounterVec
	badEntries  prometheus.Counter

	// Resolved children of the vectors, for the hot path.
	framesEntries, framesDropped, framesCaughtUp, framesControl prometheus.Counter
	droppedSlow, droppedGone                                    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "clients",
			Help: "WebSocket clients connected now.",
		}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "connections_total",
			Help: "WebSocket connections accepted (upgraded).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "rejected_total",
			Help: "Connections refused, by reason (origin, handshake, max_clients, shutdown, auth, bad_request, forbidden, error).",
		}, []string{"reason"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "frames_sent_total",
			Help: "Frames written to clients, by type (entries, dropped, caught_up, control).",
		}, []string{"type"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "sent_bytes_total",
			Help: "Bytes of frame payload written to clients.",
		}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "entries_sent_total",
			Help: "Entries written to clients (one entry to N clients counts N).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "dropped_total",
			Help: "Entries clients missed and were told about, by reason (slow: queue full; gone: no longer in the stream).",
		}, []string{"reason"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "evictions_total",
			Help: "Clients closed by the server, by reason (slow, write_timeout, pong_timeout, read_limit).",
		}, []string{"reason"}),
		badEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "websocket", Name: "bad_entries_total",
			Help: "Messages on the subjects that were not JSON objects, skipped (counted once per client).",
		}),
	}
	m.framesEntries = m.frames.WithLabelValues("entries")
	m.framesDropped = m.frames.WithLabelValues("dropped")
	m.framesCaughtUp = m.frames.WithLabelValues("caught_up")
	m.framesControl = m.frames.WithLabelValues("control")
	m.droppedSlow = m.dropped.WithLabelValues("slow")
	m.droppedGone = m.dropped.WithLabelValues("gone")
	for _, r := range []string{"slow", "write_timeout", "pong_timeout", "read_limit"} {
		m.evictions.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.connections, m.rejected, m.frames, m.bytes, m.entries,
			m.dropped, m.evictions, m.badEntries)
	}
	return m
}
