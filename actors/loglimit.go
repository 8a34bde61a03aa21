package actors

import (
	"github.com/cnactor/cnactor/internal/ratelog"
	"go.uber.org/zap"
)

// warnKind names a kind of warning the runtime rate-limits (warnFailed is
// each handler's own). Each kind has a
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
	warnRoutePanic
	warnLoopMoved
	numWarnKinds
)

var warnNames = [numWarnKinds]string{
	warnReceive:    "receive failed",
	warnOverflow:   "receive queue overflowed; datagrams lost",
	warnMalformed:  "malformed datagram rejected",
	warnRefused:    "sender refused by policy",
	warnShedding:   "callback shedding its messages",
	warnFailed:     "handler failed; message dropped",
	warnRoutePanic: "routing a batch panicked; its undelivered messages are lost",
	warnLoopMoved:  "handler kept the receive loop; the loop moved to another goroutine",
}

// logLimiter is one ratelog.Limiter per warning kind.
type logLimiter [numWarnKinds]*ratelog.Limiter

func newLogLimiter(log *zap.Logger) *logLimiter {
	var l logLimiter
	for k := range l {
		l[k] = ratelog.New(log, warnNames[k])
	}
	return &l
}

// allow reports whether to log a warning of kind k now, and how many were
// suppressed since the last one.
func (l *logLimiter) allow(k warnKind) (ok bool, suppressed int) { return l[k].Allow() }

// close logs what is still suppressed.
func (l *logLimiter) close() {
	for _, k := range l {
		k.Close()
	}
}
