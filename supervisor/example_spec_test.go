package supervisor_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
)

// The defaults a zero Spec field takes: one-for-one, up to 100 restarts in
// 10 s, restart delays from 1 ms doubling to 1 s with 20% jitter. A
// connector's supervisors are configured with these values through
// cnactor.WithRootSupervisor and Connector.AddSupervisor (see the examples of
// package cnactor); New and Supervisor themselves take protoactor types.
func ExampleDefaultSpec() {
	s := supervisor.DefaultSpec()
	fmt.Println("strategy:", s.Strategy)
	fmt.Printf("intensity: %d restarts in %v\n", s.Intensity.MaxRestarts, s.Intensity.Period)
	b := s.Backoff
	fmt.Printf("backoff: %v doubling to %v, jitter %.0f%%, reset after %v\n", b.Min, b.Max, b.Jitter*100, b.ResetAfter)
	fmt.Println("no backoff:", supervisor.NoBackoff() == supervisor.Backoff{Min: -1})
	// Output:
	// strategy: one-for-one
	// intensity: 100 restarts in 10s
	// backoff: 1ms doubling to 1s, jitter 20%, reset after 1s
	// no backoff: true
}

// A Spec for handlers that must not flap: restart them together, at most 3
// times a minute, with delays from 100 ms to 5 s; stop (rather than resume) a
// handler that returns an error wrapping errCorrupt. Give it to
// cnactor.Connector.AddSupervisor (or WithRootSupervisor).
func ExampleSpec() {
	errCorrupt := errors.New("corrupt state")
	spec := supervisor.Spec{
		Strategy:  supervisor.OneForAll,
		Intensity: supervisor.Intensity{MaxRestarts: 3, Period: time.Minute},
		Backoff:   supervisor.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.1, ResetAfter: 30 * time.Second},
		Decider: func(reason error) supervisor.Directive {
			if errors.Is(reason, errCorrupt) {
				return supervisor.Stop
			}
			return supervisor.DefaultDecider(reason)
		},
	}
	for _, reason := range []error{
		fmt.Errorf("state: %w", errCorrupt),
		errors.New("bad message"),
		&handlers.PanicError{Value: "index out of range"},
	} {
		fmt.Printf("%s -> %v\n", reason, spec.Decider(reason))
	}
	// Output:
	// state: corrupt state -> stop
	// bad message -> resume
	// handler panicked: index out of range -> restart
}
