// Package ratelog rate-limits one kind of warning: a flood of bad input
// (garbage datagrams, refused senders, failing replies) must not flood the
// log, and yet no occurrence may go unreported. A Limiter lets one warning
// through per interval and counts the rest; the count goes out with the
// next warning of its kind, or, when none comes within the interval, in a
// line of its own, and at Close whatever is still pending.
//
//	Allow ──ok──▶ caller logs its warning with suppressed=n
//	      └─no──▶ counted ──(interval ends, or Close)──▶ "<msg> (repeats suppressed)" suppressed=n
package ratelog

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Interval is how often one kind of warning may be logged.
const Interval = time.Second

// A Limiter limits the warnings of one kind. Its zero value is not usable:
// make one with New.
type Limiter struct {
	log      *zap.Logger
	msg      string
	interval time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
	flush      *time.Timer // armed while warnings are suppressed
	closed     bool
}

// New returns a limiter whose suppressed counts are logged to log as msg.
func New(log *zap.Logger, msg string) *Limiter {
	return &Limiter{log: log, msg: msg, interval: Interval}
}

// WithInterval sets the interval (tests use a short one).
func (l *Limiter) WithInterval(d time.Duration) *Limiter {
	l.interval = d
	return l
}

// Allow reports whether to log a warning now, and how many were
// suppressed since the last one.
func (l *Limiter) Allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Before(l.next) {
		l.suppressed++
		if l.flush == nil && !l.closed {
			l.flush = time.AfterFunc(l.next.Sub(now), l.flushPending)
		}
		return false, 0
	}
	if l.flush != nil {
		l.flush.Stop()
		l.flush = nil
	}
	l.next = now.Add(l.interval)
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// flushPending logs the suppressed count if no warning has carried it.
func (l *Limiter) flushPending() {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed, l.flush = 0, nil
	if n > 0 {
		l.next = time.Now().Add(l.interval)
	}
	l.mu.Unlock()
	l.report(n)
}

// Close stops the timer and logs what is still suppressed.
func (l *Limiter) Close() {
	l.mu.Lock()
	l.closed = true
	if l.flush != nil {
		l.flush.Stop()
		l.flush = nil
	}
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	l.report(n)
}

func (l *Limiter) report(n int) {
	if n > 0 {
		l.log.Warn(l.msg+" (repeats suppressed)", zap.Int("suppressed", n))
	}
}
