package supervisor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cnactor/cnactor/handlers"
)

// RestartType says whether a child comes back after it ends.
type RestartType uint8

const (
	// Permanent children are always restarted, after a failure or a normal
	// stop (handlers.ErrStop).
	Permanent RestartType = iota
	// Transient children are restarted only after a failure.
	Transient
	// Temporary children are never restarted: a failure removes them.
	Temporary
)

func (t RestartType) String() string {
	return name(t, "permanent", "transient", "temporary")
}

// name is names[v], or "unknown(v)" out of range.
func name[T ~uint8](v T, names ...string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("unknown(%d)", v)
}

// Strategy says which children restart when one of them must.
type Strategy uint8

const (
	// OneForOne restarts only the child that ended.
	OneForOne Strategy = iota
	// OneForAll restarts every child of the supervisor.
	OneForAll
	// RestForOne restarts the child and the children started after it.
	RestForOne
)

func (s Strategy) String() string {
	return name(s, "one-for-one", "one-for-all", "rest-for-one")
}

// Directive is a decider's answer to a failure.
type Directive uint8

const (
	// Resume drops the failing message and goes on with the same handler.
	Resume Directive = iota
	// Restart restarts the handler (and, by strategy, its siblings).
	Restart
	// Stop removes the child whatever its restart type.
	Stop
	// Escalate fails the supervisor itself: it stops its children and
	// hands the failure to its parent.
	Escalate
)

func (d Directive) String() string {
	return name(d, "resume", "restart", "stop", "escalate")
}

// Decider maps a failure reason to a directive. The reason is the error a
// handler returned or a *handlers.PanicError.
type Decider func(reason error) Directive

// DefaultDecider restarts a handler that panicked (its state may be broken)
// and resumes one that returned an error (the message failed, the handler
// did not).
func DefaultDecider(reason error) Directive {
	var p *handlers.PanicError
	if errors.As(reason, &p) {
		return Restart
	}
	return Resume
}

// Intensity bounds restarts per supervisor, as OTP's intensity and period:
// a restart that would make more than MaxRestarts within Period fails the
// supervisor instead.
type Intensity struct {
	MaxRestarts int
	Period      time.Duration
}

// Backoff is the delay before a restart: Min, doubled for each restart
// since the child was last stable, plus up to Jitter (a fraction, 0..1) at
// random, capped at Max (no cap if 0). A child that has run for ResetAfter
// since its last restart starts again from Min.
type Backoff struct {
	Min        time.Duration
	Max        time.Duration
	Jitter     float64
	ResetAfter time.Duration
}

// delay is the wait before restart number n (0-based) of an unstable child.
func (b Backoff) delay(n int, rnd func() float64) time.Duration {
	if b.Min <= 0 {
		return 0
	}
	d := b.Min
	for i := 0; i < n && (b.Max <= 0 || d < b.Max) && d < time.Hour; i++ {
		d *= 2
	}
	if b.Jitter > 0 {
		d += time.Duration(float64(d) * b.Jitter * rnd())
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max // jitter never takes a delay past the maximum
	}
	return d
}

// Spec configures a supervisor. Zero Intensity, Backoff and Decider take
// the defaults (use NoBackoff() for none).
type Spec struct {
	Strategy  Strategy
	Intensity Intensity
	Backoff   Backoff
	Decider   Decider
	// Clock is the time source for intensity, backoff and timers; tests
	// inject a fake one. Nil is the real clock.
	Clock Clock
}

// DefaultIntensity is the restart bound of a Spec whose Intensity is zero.
// The defaults are chosen so that a burst of bad messages does not take a
// handler down while a handler that fails on every message is stopped
// within seconds: up to 100 restarts in 10 s per supervisor; restart delays
// from 1 ms doubling to 1 s with 20% jitter, back to 1 ms after 1 s of
// stability. They are funcs, not vars, so that no package can change every
// supervisor's defaults by assigning to them.
func DefaultIntensity() Intensity { return Intensity{MaxRestarts: 100, Period: 10 * time.Second} }

// DefaultBackoff is the restart delay of a Spec whose Backoff is zero.
func DefaultBackoff() Backoff {
	return Backoff{Min: time.Millisecond, Max: time.Second, Jitter: 0.2, ResetAfter: time.Second}
}

// DefaultSpec is one-for-one with the default intensity, backoff and decider.
func DefaultSpec() Spec {
	return Spec{Strategy: OneForOne, Intensity: DefaultIntensity(), Backoff: DefaultBackoff(), Decider: DefaultDecider}
}

// NoBackoff restarts without delay.
func NoBackoff() Backoff { return Backoff{Min: -1} }

func (s Spec) withDefaults() Spec {
	if s.Decider == nil {
		s.Decider = DefaultDecider
	}
	if s.Intensity == (Intensity{}) {
		s.Intensity = DefaultIntensity()
	}
	if s.Backoff == (Backoff{}) {
		s.Backoff = DefaultBackoff()
	}
	if s.Clock == nil {
		s.Clock = realClock{}
	}
	return s
}

// ChildSpec is how a supervisor treats one child.
type ChildSpec struct {
	Restart RestartType
	// ShutdownTimeout bounds how long stopping the child may take.
	ShutdownTimeout time.Duration
}

// DefaultShutdownTimeout is a child's shutdown timeout unless set.
const DefaultShutdownTimeout = 5 * time.Second

// Clock is the time source of a supervisor.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f after d, in its own goroutine.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// restartWindow tracks restart times for the intensity check.
type restartWindow struct {
	times []time.Time
}

// allow records a restart at now and reports whether it stays within in.
func (w *restartWindow) allow(in Intensity, now time.Time) bool {
	cut := 0
	for cut < len(w.times) && now.Sub(w.times[cut]) >= in.Period {
		cut++
	}
	w.times = append(w.times[:0], w.times[cut:]...)
	if len(w.times) >= in.MaxRestarts {
		return false
	}
	w.times = append(w.times, now)
	return true
}

func jitter() float64 { return rand.Float64() }
