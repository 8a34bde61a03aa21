package supervisor

import (
	"errors"
	"fmt"
	"time"
)

// What a supervisor reports: an Event per step, each child's status, and
// the errors of a supervisor that stopped or escalated.

// EventKind is what a supervisor did.
type EventKind uint8

const (
	EventFailed    EventKind = iota // a child failed; Directive says what follows (set for this kind only)
	EventBackoff                    // a restart is delayed by Delay
	EventRestarted                  // a child was restarted
	EventStopped                    // a child was stopped and removed
	EventEscalated                  // the supervisor gave up and failed to its parent
)

func (k EventKind) String() string {
	return name(k, "failed", "backoff", "restarted", "stopped", "escalated")
}

// Event is one supervision step, for logs and dashboards.
type Event struct {
	Time       time.Time
	Kind       EventKind
	Supervisor string
	Child      string        // the child's key; empty for the supervisor itself
	Directive  Directive     // EventFailed only: what the decider chose
	Delay      time.Duration // EventBackoff only
	Reason     error
}

// ChildState is where a child is in its life.
type ChildState uint8

const (
	Running    ChildState = iota // started and not failed, or restarted
	BackingOff                   // failed, waiting for its restart
	Stopped                      // removed by its supervisor
)

func (s ChildState) String() string {
	return name(s, "running", "backoff", "stopped")
}

// ChildStatus is what a supervisor knows about one child.
type ChildStatus struct {
	State    ChildState
	Restarts uint64
	Backoff  time.Duration // the delay of the pending or last restart
}

// ErrStopped: a call to a supervisor that has stopped.
var ErrStopped = errors.New("supervisor: stopped")

// ErrIntensity is the reason a supervisor escalates when restarts exceed
// its intensity.
var ErrIntensity = errors.New("supervisor: restart intensity exceeded")

// EscalationError is a supervisor's failure as its parent sees it.
type EscalationError struct {
	Supervisor string
	Reason     error
}

func (e *EscalationError) Error() string {
	return fmt.Sprintf("supervisor %q failed: %v", e.Supervisor, e.Reason)
}

func (e *EscalationError) Unwrap() error { return e.Reason }
