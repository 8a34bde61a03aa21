package actors

import (
	"context"
	"errors"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/ratelog"
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
	log := zap.New(core)
	l := newLogLimiter(log)
	for _, k := range l {
		k.WithInterval(500 * time.Millisecond) // far longer than the flood takes, even under -race on a loaded machine
	}
	warn := func(k warnKind) {
		if ok, n := l.allow(k); ok {
			log.Warn(warnNames[k], zap.Int("suppressed", n))
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
}

// A handler that fails every message (a peer that never reads its
// replies makes every reply fail) logs its failures rate-limited; the
// count is in Failed, and what was suppressed is logged when it stops.
func TestHandlerFailuresRateLimited(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	sys := newSystem(t)
	ref, err := SpawnHandler(top(sys), HandlerSpec{
		ID: transport.CbID{Idx: 0x5200, Val: 1}, Name: "failing", Logger: zap.New(core),
		Handler: handlers.HandlerFunc(func(handlers.Context, *transport.Message) error { return errors.New("always") }),
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	start := time.Now()
	for i := range uint32(n) {
		ref.deliver(&transport.Received{Message: transport.Message{ID: ref.Spec().ID, Seq: i}})
	}
	waitFor(t, "every failure counted", func() bool { return ref.Stats().Failed == n })
	// One line a second at most (however slow the machine made this).
	if lines, most := logs.FilterMessage(warnNames[warnFailed]).Len(), int(time.Since(start)/ratelog.Interval)+1; lines > most {
		t.Fatalf("%d failure lines for %d failures in %v: not rate-limited", lines, n, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ref.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_, logged := suppressedOf(t, logs, warnNames[warnFailed])
	_, flushed := suppressedOf(t, logs, warnNames[warnFailed]+" (repeats suppressed)")
	if lines := logs.FilterMessage(warnNames[warnFailed]).Len(); logged+flushed+lines != n {
		t.Fatalf("%d lines and %d + %d suppressed reported, for %d failures", lines, logged, flushed, n)
	}
}
