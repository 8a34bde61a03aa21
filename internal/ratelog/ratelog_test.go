package ratelog

import (
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func suppressed(logs *observer.ObservedLogs, msg string) (lines, n int) {
	for _, e := range logs.FilterMessage(msg).All() {
		lines++
		if v, ok := e.ContextMap()["suppressed"].(int64); ok {
			n += int(v)
		}
	}
	return lines, n
}

// One warning per interval; the rest are counted and reported with the
// next one, or on their own once the interval ends, or at Close; nothing
// is reported twice and no timer outlives Close.
func TestLimiter(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	l := New(zap.New(core), "bad").WithInterval(50 * time.Millisecond)
	if ok, n := l.Allow(); !ok || n != 0 {
		t.Fatalf("first: %v, %d", ok, n)
	}
	for range 9 {
		if ok, _ := l.Allow(); ok {
			t.Skip("the machine took longer than the interval for 9 calls")
		}
	}
	testutil.WaitFor(t, "the flush", func() bool { return logs.FilterMessage("bad (repeats suppressed)").Len() == 1 })
	if _, n := suppressed(logs, "bad (repeats suppressed)"); n != 9 {
		t.Fatalf("flushed %d, want 9", n)
	}
	// After the flush, a new burst starts counting from zero.
	testutil.WaitFor(t, "the next interval", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return time.Now().After(l.next)
	})
	if ok, n := l.Allow(); !ok || n != 0 {
		t.Fatalf("after the flush: %v, %d (reported twice?)", ok, n)
	}
	l.Allow()
	l.Close()
	if _, n := suppressed(logs, "bad (repeats suppressed)"); n != 10 {
		t.Fatalf("after Close %d reported in all, want 10", n)
	}
	l.mu.Lock()
	armed := l.flush != nil
	l.mu.Unlock()
	if l.Allow(); armed || l.flush != nil {
		t.Fatal("a flush timer is armed after Close")
	}
}
