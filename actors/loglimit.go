package actors

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// warnKind names a kind of warning the reader rate-limits. Each kind has a
// limiter of its own: a flood of one (garbage datagrams) must not hide
// another (a sender refused by policy).
type warnKind uint8

const (
	warnReceive warnKind = iota
	warnOverflow
	warnMalformed
	warnRefused
	warnShedding
	warnFailed
	numWarnKinds
)

var warnNames = [numWarnKinds]string{
	warnReceive:   "receive failed",
	warnOverflow:  "receive queue overflowed; datagrams lost",
	warnMalformed: "malformed datagram rejected",
	warnRefused:   "sender refused by policy",
	warnShedding:  "callback shedding its messages",
	warnFailed:    "handler failed; message dropped",
}

// logInterval is how often one kind of warning may be logged.
const logInterval = time.Second

// logLimiter lets through one warning per kind per interval and counts the
// rest, so that a flood of bad input cannot flood the log. The count goes
// with the next warning of that kind, or, if none comes within the
// interval, in a line of its own: a burst is never suppressed silently.
type logLimiter struct {
	log      *zap.Logger
	interval time.Duration
	mu       sync.Mutex
	kinds    [numWarnKinds]limitState
	done     bool
}

type limitState struct {
	next       time.Time
	suppressed int
	flush      *time.Timer // armed while lines are suppressed
}

func newLogLimiter(log *zap.Logger) *logLimiter { return &logLimiter{log: log, interval: logInterval} }

// allow reports whether to log a warning of kind k now, and how many were
// suppressed since the last one.
func (l *logLimiter) allow(k warnKind) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.kinds[k]
	now := time.Now()
	if now.Before(s.next) {
		s.suppressed++
		if s.flush == nil && !l.done {
			s.flush = time.AfterFunc(s.next.Sub(now), func() { l.flushKind(k) })
		}
		return false, 0
	}
	if s.flush != nil {
		s.flush.Stop()
		s.flush = nil
	}
	s.next = now.Add(l.interval)
	suppressed, s.suppressed = s.suppressed, 0
	return true, suppressed
}

// flushKind logs the count of k's suppressed warnings, if no warning of
// that kind has carried it since.
func (l *logLimiter) flushKind(k warnKind) {
	l.mu.Lock()
	s := &l.kinds[k]
	n := s.suppressed
	s.suppressed, s.flush = 0, nil
	if n > 0 {
		s.next = time.Now().Add(l.interval)
	}
	l.mu.Unlock()
	if n > 0 {
		l.log.Warn(warnNames[k]+" (repeats suppressed)", zap.Int("suppressed", n))
	}
}

// close stops the timers and logs what is still suppressed.
func (l *logLimiter) close() {
	l.mu.Lock()
	l.done = true
	var pending [numWarnKinds]int
	for k := range l.kinds {
		s := &l.kinds[k]
		if s.flush != nil {
			s.flush.Stop()
			s.flush = nil
		}
		pending[k], s.suppressed = s.suppressed, 0
	}
	l.mu.Unlock()
	for k, n := range pending {
		if n > 0 {
			l.log.Warn(warnNames[k]+" (repeats suppressed)", zap.Int("suppressed", n))
		}
	}
}
