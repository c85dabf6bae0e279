package journald

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	read           prometheus.Counter
	published      prometheus.Counter
	excluded       prometheus.Counter
	lost           prometheus.Counter
	unreadable     prometheus.Counter
	truncated      prometheus.Counter
	dropped        *prometheus.CounterVec
	fieldsDropped  prometheus.Counter
	cursorSaves    prometheus.Counter
	cursorErrors   prometheus.Counter
	cursorInvalid  *prometheus.CounterVec
	cursorLag      prometheus.Gauge
	journalErrors  prometheus.Counter
	journalReopens prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "logstream", Subsystem: "journald", Name: name, Help: help})
	}
	m := &metrics{
		read:          c("entries_read_total", "Journal entries read (excluded ones included)."),
		published:     c("entries_published_total", "Entries handed to the bus."),
		excluded:      c("entries_excluded_total", "Entries skipped because their unit is excluded (exclude_units, logstreamd's own unit)."),
		lost:          c("entries_lost_total", "Journal entries removed (vacuumed) before they were read, counted from gaps in journald's sequence numbers."),
		unreadable:    c("entries_unreadable_total", "Journal entries that could not be read at all (corrupt) and were skipped."),
		truncated:     c("entries_truncated_total", "Entries whose MESSAGE was cut to max_field_bytes or to the bus's maximum message size."),
		fieldsDropped: c("fields_dropped_total", "Fields not copied into an entry: longer than max_field_bytes, or removed to fit the bus's maximum message size."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "journald", Name: "entries_dropped_total",
			Help: "Entries not published, by reason (too_large: over the bus's maximum message size even when cut).",
		}, []string{"reason"}),
		cursorSaves:  c("cursor_saves_total", "Cursor file writes, each after the bus acknowledged every entry up to the cursor."),
		cursorErrors: c("cursor_save_errors_total", "Cursor file writes that failed (retried at the next commit)."),
		cursorInvalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "logstream", Subsystem: "journald", Name: "cursor_invalid_total",
			Help: "Saved cursors that could not be used, by reason (empty, corrupt, unreadable, vanished, foreign).",
		}, []string{"reason"}),
		cursorLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "logstream", Subsystem: "journald", Name: "cursor_lag_seconds",
			Help: "Journal time between the last entry read and the entry the saved cursor names.",
		}),
		journalErrors:  c("journal_errors_total", "Errors reading the journal; the journal is reopened at the last position."),
		journalReopens: c("journal_reopens_total", "Times the journal was reopened after an error."),
	}
	for _, r := range []string{"empty", "corrupt", "unreadable", "vanished", "foreign"} {
		m.cursorInvalid.WithLabelValues(r)
	}
	m.dropped.WithLabelValues("too_large")
	if reg != nil {
		reg.MustRegister(m.read, m.published, m.excluded, m.lost, m.unreadable, m.truncated, m.dropped,
			m.fieldsDropped, m.cursorSaves, m.cursorErrors, m.cursorInvalid, m.cursorLag,
			m.journalErrors, m.journalReopens)
	}
	return m
}

// logEvery is how often a warning caused by an outage or by the journal's
// content may be logged; the rest are counted.
const logEvery = 10 * time.Second
