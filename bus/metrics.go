package bus

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published prometheus.Counter
	acked     prometheus.Counter
	tooLarge  prometheus.Counter
	failures  *prometheus.CounterVec
	retries   *prometheus.CounterVec
	reg       prometheus.Registerer

	subscribers prometheus.Gauge
	subDropped  *prometheus.CounterVec
	delivered   prometheus.Counter
	badEntries  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "published_total",
			Help: "Entries handed to the publisher.",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "acked_total",
			Help: "Entries acknowledged by the JetStream stream.",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "too_large_total",
			Help: "Entries refused because their encoding exceeds the server's max payload.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "publish_failures_total",
			Help: "Publish attempts that failed, by reason (send, refused, timeout, disconnect: unacknowledged when the connection was lost); each is retried.",
		}, []string{"reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "publish_retries_total",
			Help: "Entries sent again after a failure.",
		}, []string{"kind"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "subscriptions",
			Help: "Open subscriptions.",
		}),
		subDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "subscription_dropped_total",
			Help: "Entries a subscription missed, by reason (slow: its buffer was full; gone: aged out of the stream).",
		}, []string{"reason"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "subscription_delivered_total",
			Help: "Entries handed to subscriptions.",
		}),
		badEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "bad_messages_total",
			Help: "Messages on the subjects that are not valid entries (skipped).",
		}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.published, m.acked, m.tooLarge, m.failures, m.retries,
			m.subscribers, m.subDropped, m.delivered, m.badEntries)
	}
	return m
}

func (m *metrics) inFlight(f func() float64) {
	if m.reg != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "logstream", Subsystem: "bus", Name: "in_flight",
			Help: "Entries awaiting their JetStream acknowledgement.",
		}, f))
	}
}

// logLimited logs a warning at most once a second: failures caused by an
// outage or by input must not flood the log.
func (b *Bus) logLimited(msg string, args ...any) {
	if n, ok := b.lim.Allow(); ok {
		b.log.Warn(msg, append(args, "suppressed", n)...)
	}
}
