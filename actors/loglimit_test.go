package actors

import (
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func suppressedOf(t *testing.T, logs *observer.ObservedLogs, msg string) (lines, suppressed int) {
	t.Helper()
	for _, e := range logs.FilterMessage(msg).All() {
		lines++
		if n, ok := e.ContextMap()["suppressed"].(int64); ok {
			suppressed += int(n)
		}
	}
	return lines, suppressed
}

// Each kind of warning has its own budget: a flood of one does not hide
// the other, and a burst's suppressed count is logged even when no later
// warning of its kind comes to carry it.
func TestLogLimiterPerKindAndFlush(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	l := newLogLimiter(zap.New(core))
	l.interval = 500 * time.Millisecond // far longer than the flood takes, even under -race on a loaded machine
	warn := func(k warnKind) {
		if ok, n := l.allow(k); ok {
			l.log.Warn(warnNames[k], zap.Int("suppressed", n))
		}
	}
	for range 1000 {
		warn(warnMalformed)
	}
	warn(warnRefused) // in the middle of the flood: still logged
	if lines, _ := suppressedOf(t, logs, warnNames[warnRefused]); lines != 1 {
		t.Fatalf("the refused-sender warning was hidden by the malformed flood (%d lines)", lines)
	}
	// The flood's first line went out; the rest are reported once the
	// interval has passed, without another malformed datagram.
	flushed := warnNames[warnMalformed] + " (repeats suppressed)"
	testutil.WaitFor(t, "the suppressed count", func() bool { return logs.FilterMessage(flushed).Len() == 1 })
	lines, n := suppressedOf(t, logs, warnNames[warnMalformed])
	_, m := suppressedOf(t, logs, flushed)
	if lines != 1 || n+m != 999 {
		t.Fatalf("malformed: %d lines, %d + %d suppressed reported; want 1 line and 999", lines, n, m)
	}

	// close reports what is still suppressed and arms nothing more.
	for range 5 {
		warn(warnOverflow)
	}
	l.close()
	if _, n := suppressedOf(t, logs, warnNames[warnOverflow]+" (repeats suppressed)"); n != 4 {
		t.Fatalf("close reported %d suppressed overflow warnings, want 4", n)
	}
	for k := range l.kinds {
		if l.kinds[k].flush != nil {
			t.Fatalf("kind %d has a timer after close", k)
		}
	}
}
