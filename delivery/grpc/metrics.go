package grpc

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	streams     *prometheus.GaugeVec   // api
	opened      *prometheus.CounterVec // api
	refused     *prometheus.CounterVec // code
	sent        prometheus.Counter
	dropped     *prometheus.CounterVec // reason
	disconnects *prometheus.CounterVec // reason
	badEntries  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "streams",
			Help: "Open streams, by API (v1, legacy).",
		}, []string{"api"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "streams_opened_total",
			Help: "Streams accepted, by API (v1, legacy).",
		}, []string{"api"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "streams_refused_total",
			Help: "Stream requests refused, by status code.",
		}, []string{"code"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "sent_entries_total",
			Help: "Entries sent, over all streams.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "dropped_entries_total",
			Help: "Entries streams missed, by reason (slow, gone, too_large).",
		}, []string{"reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "disconnects_total",
			Help: "Streams ended by the server, by reason (slow, shutdown).",
		}, []string{"reason"}),
		badEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "grpc", Name: "bad_entries_total",
			Help: "Entries on the bus that could not be decoded (skipped).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.opened, m.refused, m.sent, m.dropped, m.disconnects, m.badEntries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("grpc: register metrics: %w", err)
		}
	}
	return m, nil
}
