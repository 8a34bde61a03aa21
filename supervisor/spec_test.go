package supervisor

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cnactor/cnactor/handlers"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for n, w := range want {
		if got := b.delay(n, func() float64 { return 0 }); got != w*time.Millisecond {
			t.Errorf("delay(%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	j := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	if got := j.delay(1, func() float64 { return 1 }); got != 30*time.Millisecond {
		t.Errorf("full jitter delay = %v, want 30ms", got)
	}
	// No maximum: it keeps doubling.
	open := Backoff{Min: 10 * time.Millisecond}
	if got := open.delay(4, func() float64 { return 0 }); got != 160*time.Millisecond {
		t.Errorf("uncapped delay(4) = %v, want 160ms", got)
	}
	// Jitter never takes a delay past the maximum.
	capped := Backoff{Min: time.Second, Max: time.Second, Jitter: 0.2}
	if got := capped.delay(3, func() float64 { return 1 }); got != time.Second {
		t.Errorf("jittered delay at the cap = %v, want 1s", got)
	}
	if got := Directive(9).String(); got != "unknown(9)" {
		t.Errorf("out-of-range directive = %q", got)
	}
	if got := NoBackoff().delay(5, func() float64 { return 1 }); got != 0 {
		t.Errorf("NoBackoff() delay = %v", got)
	}
}

func TestRestartWindow(t *testing.T) {
	in := Intensity{MaxRestarts: 3, Period: time.Second}
	var w restartWindow
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !w.allow(in, t0.Add(time.Duration(i)*100*time.Millisecond)) {
			t.Fatalf("restart %d refused", i)
		}
	}
	if w.allow(in, t0.Add(500*time.Millisecond)) {
		t.Fatal("fourth restart within the period allowed")
	}
	// The first restart leaves the window one period after it.
	if !w.allow(in, t0.Add(1000*time.Millisecond)) {
		t.Fatal("restart after the oldest left the window refused")
	}
	var zero restartWindow
	if zero.allow(Intensity{MaxRestarts: 0, Period: time.Second}, t0) {
		t.Fatal("intensity 0 allowed a restart")
	}
}

func TestDefaultDecider(t *testing.T) {
	tests := []struct {
		reason error
		want   Directive
	}{
		{&handlers.PanicError{Value: "boom"}, Restart},
		{fmt.Errorf("wrapped: %w", &handlers.PanicError{Value: "boom"}), Restart},
		{errors.New("bad message"), Resume},
	}
	for _, tt := range tests {
		if got := DefaultDecider(tt.reason); got != tt.want {
			t.Errorf("DefaultDecider(%v) = %v, want %v", tt.reason, got, tt.want)
		}
	}
}

func TestSpecDefaults(t *testing.T) {
	s := Spec{}.withDefaults()
	if s.Intensity != DefaultIntensity() || s.Backoff != DefaultBackoff() || s.Decider == nil || s.Clock == nil {
		t.Fatalf("defaults not applied: %+v", s)
	}
	s = Spec{Backoff: NoBackoff(), Intensity: Intensity{MaxRestarts: 1, Period: time.Minute}}.withDefaults()
	if s.Backoff != NoBackoff() || s.Intensity.MaxRestarts != 1 {
		t.Fatalf("explicit values overridden: %+v", s)
	}
}

func TestManualClock(t *testing.T) {
	c := NewManualClock(time.Unix(0, 0))
	var fired []int
	c.AfterFunc(20*time.Millisecond, func() { fired = append(fired, 2) })
	c.AfterFunc(10*time.Millisecond, func() { fired = append(fired, 1) })
	stop := c.AfterFunc(15*time.Millisecond, func() { fired = append(fired, 3) })
	if !stop() {
		t.Fatal("stop of a pending timer returned false")
	}
	if p := c.Pending(); len(p) != 2 || p[0] != 10*time.Millisecond {
		t.Fatalf("pending = %v", p)
	}
	c.Advance(25 * time.Millisecond)
	if len(fired) != 2 || fired[0] != 1 || fired[1] != 2 {
		t.Fatalf("fired %v", fired)
	}
}
