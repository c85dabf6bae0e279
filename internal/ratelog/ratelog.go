// Package ratelog limits log lines caused by input or outages, so that a
// flood of bad messages or a long outage cannot flood the log. A Limiter
// is safe for concurrent use; its zero value lets one line a second
// through.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets one line through per interval and counts the rest.
type Limiter struct {
	// Every is the interval; zero means one second.
	Every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// Allow reports whether a line may be logged now, and how many were held
// back since the last one that was.
func (l *Limiter) Allow() (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Before(l.next) {
		l.suppressed++
		return 0, false
	}
	every := l.Every
	if every == 0 {
		every = time.Second
	}
	l.next = now.Add(every)
	n := l.suppressed
	l.suppressed = 0
	return n, true
}
