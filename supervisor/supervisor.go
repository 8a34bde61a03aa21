package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/spawn"
)

// EventKind is what a supervisor did.
type EventKind uint8

const (
	EventFailed    EventKind = iota // a child failed; Directive says what follows
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
	Child      string // the child's key; empty for the supervisor itself
	Directive  Directive
	Delay      time.Duration
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

// Hooks connect a supervision tree to its owner.
type Hooks struct {
	// OnEvent receives every event, in order per supervisor.
	OnEvent func(Event)
	// OnTopFailure is called when the top supervisor exceeds its intensity
	// or a failure escalates to it; its children are already stopped.
	OnTopFailure func(err error)
}

// Starter starts a child's actor under parent and returns it; the owner
// registers whatever goes with it (a callback route). A restart calls it
// again.
type Starter func(parent spawn.Parent) (spawn.Child, error)

// StopFunc is told that the supervisor stopped a child for good (reason
// is why); the owner stops the actor, within the child's shutdown timeout,
// and unregisters what goes with it. It runs in the supervisor actor.
type StopFunc func(c spawn.Child, reason error)

// Supervisor is a handle on a supervisor actor. Its methods are safe for
// concurrent use; they talk to the actor by message.
type Supervisor struct {
	name   string
	spec   Spec
	hooks  Hooks
	root   *actor.RootContext
	pid    atomic.Pointer[actor.PID] // changes when a nested supervisor is started afresh
	parent *Supervisor

	mu       sync.Mutex // guards children and status, read by Status from other goroutines
	children []*child   // in start order, with removed ones (gone) until compacted
	byKey    map[string]*child
	byPid    map[pidKey]*child
	gone     int // removed children still in children
	window   restartWindow

	incarnations int // Started messages seen, in the actor
	incarnation  int // spawns of a nested supervisor, for unique names
	stopped      chan struct{}
	stopOnce     sync.Once
}

type child struct {
	key     string
	spec    ChildSpec
	start   Starter
	stop    StopFunc
	sub     *Supervisor // for a nested supervisor
	pid     *actor.PID
	status  ChildStatus
	lastUp  time.Time // when it last (re)started
	unrest  int       // restarts since it was last stable
	pending func() bool
	gone    bool // removed: skipped, and dropped from children at the next compaction
}

// pidKey identifies a PID in a map (PID.Equal compares these two).
type pidKey struct{ address, id string }

func keyOf(pid *actor.PID) pidKey {
	if pid == nil {
		return pidKey{}
	}
	return pidKey{pid.Address, pid.Id}
}

// The children are indexed by key and by PID, and a removal only marks the
// child gone, compacting the list once half of it is gone: a supervisor of
// n children costs O(1) per lookup and amortised O(1) per removal, where
// linear scans made registering and removing n callbacks O(n^2).
// Callers hold s.mu.

func (s *Supervisor) addLocked(ch *child) {
	if s.byKey == nil {
		s.byKey, s.byPid = map[string]*child{}, map[pidKey]*child{}
	}
	s.children = append(s.children, ch)
	s.byKey[ch.key] = ch
	s.byPid[keyOf(ch.pid)] = ch
}

func (s *Supervisor) dropLocked(ch *child) {
	if ch.gone {
		return
	}
	ch.gone = true
	if s.byKey[ch.key] == ch {
		delete(s.byKey, ch.key)
	}
	if s.byPid[keyOf(ch.pid)] == ch {
		delete(s.byPid, keyOf(ch.pid))
	}
	if s.gone++; s.gone > len(s.children)/2 {
		s.children = slices.DeleteFunc(s.children, func(o *child) bool { return o.gone })
		s.gone = 0
	}
}

func (s *Supervisor) setPidLocked(ch *child, pid *actor.PID) {
	if s.byPid[keyOf(ch.pid)] == ch {
		delete(s.byPid, keyOf(ch.pid))
	}
	ch.pid = pid
	if !ch.gone {
		s.byPid[keyOf(pid)] = ch
	}
}

// liveLocked lists the children not removed, in start order.
func (s *Supervisor) liveLocked() []*child {
	out := make([]*child, 0, len(s.children)-s.gone)
	for _, ch := range s.children {
		if !ch.gone {
			out = append(out, ch)
		}
	}
	return out
}

// New starts a top supervisor. Its failures never escalate past it: they
// go to hooks.OnTopFailure.
func New(parent spawn.Parent, name string, spec Spec, hooks Hooks) (*Supervisor, error) {
	s := &Supervisor{name: name, spec: spec.withDefaults(), hooks: hooks, root: parent.Root(), stopped: make(chan struct{})}
	// The guardian stops, rather than restarts or escalates, a top
	// supervisor that panics in our own code.
	props := actor.PropsFromProducer(s.producer,
		actor.WithGuardian(actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })))
	pid, err := parent.Ctx.SpawnNamed(props, "supervisor-"+name)
	if err != nil {
		return nil, err
	}
	s.pid.Store(pid)
	return s, nil
}

// Name is the supervisor's name.
func (s *Supervisor) Name() string { return s.name }

// Spec is the supervisor's configuration.
func (s *Supervisor) Spec() Spec { return s.spec }

func (s *Supervisor) producer() actor.Actor { return &supervisorActor{s: s} }

// request is a call into the actor with a reply.
type request struct {
	do   func(c actor.Context) error
	done chan error
}

func (s *Supervisor) call(do func(c actor.Context) error) error {
	r := &request{do: do, done: make(chan error, 1)}
	s.root.Send(s.pid.Load(), r)
	select {
	case err := <-r.done:
		return err
	case <-s.stopped:
		return fmt.Errorf("%w: %q", ErrStopped, s.name)
	}
}

// Stopped reports whether the supervisor has stopped for good (removed by
// its parent, or shut down).
func (s *Supervisor) Stopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// StartChild starts a child under the supervisor with start, and remembers
// it under key for restarts; stop is called if the supervisor removes it.
func (s *Supervisor) StartChild(key string, spec ChildSpec, start Starter, stop StopFunc) error {
	return s.call(func(c actor.Context) error {
		if s.find(key) != nil {
			return fmt.Errorf("supervisor %q: child %q exists", s.name, key)
		}
		started, err := start(spawn.Parent{Ctx: c})
		if err != nil {
			return err
		}
		pid := started.PID
		s.mu.Lock()
		s.addLocked(&child{key: key, spec: spec, start: start, stop: stop, pid: pid, lastUp: s.spec.Clock.Now()})
		s.mu.Unlock()
		return nil
	})
}

// StartSupervisor starts a nested supervisor as a child.
func (s *Supervisor) StartSupervisor(name string, spec Spec, cs ChildSpec) (*Supervisor, error) {
	sub := &Supervisor{name: name, spec: spec.withDefaults(), hooks: s.hooks, root: s.root, parent: s, stopped: make(chan struct{})}
	err := s.call(func(c actor.Context) error {
		if s.find("supervisor:"+name) != nil {
			return fmt.Errorf("supervisor %q: child supervisor %q exists", s.name, name)
		}
		pid, err := c.SpawnNamed(actor.PropsFromProducer(sub.producer), "supervisor-"+name)
		if err != nil {
			return err
		}
		sub.pid.Store(pid)
		s.mu.Lock()
		s.addLocked(&child{key: "supervisor:" + name, spec: cs, sub: sub, pid: pid, lastUp: s.spec.Clock.Now()})
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// Forget drops a child the owner is removing itself (DelCallback): the
// supervisor no longer restarts or stops it.
func (s *Supervisor) Forget(key string) {
	s.call(func(c actor.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		ch := s.byKey[key]
		if ch == nil {
			return nil
		}
		// A pending restart timer stays: it restarts the siblings the
		// strategy suspended with this child, and skips this one.
		if ch.status.State == BackingOff {
			// Suspended awaiting a restart: let it drain instead.
			if sup, ok := c.(actor.Supervisor); ok {
				sup.ResumeChildren(ch.pid)
			}
		}
		s.dropLocked(ch)
		return nil
	})
}

// Status reports a child's state.
func (s *Supervisor) Status(key string) (ChildStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.byKey[key]; ch != nil {
		return ch.status, true
	}
	return ChildStatus{}, false
}

// Shutdown stops the supervisor actor and, with it, any child still there.
// It waits until the actor has stopped or ctx ends: a child stuck in its
// handler keeps a supervisor from stopping, and Go cannot interrupt it.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.cancelTimers()
	s.root.Stop(s.pid.Load())
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("supervisor %q: shutdown: %w", s.name, ctx.Err())
	}
}

// cancelTimers stops every pending restart in the subtree.
func (s *Supervisor) cancelTimers() {
	for _, ch := range s.snapshot() {
		s.mu.Lock()
		if ch.pending != nil {
			ch.pending()
			ch.pending = nil
		}
		s.mu.Unlock()
		if ch.sub != nil {
			ch.sub.cancelTimers()
		}
	}
}

func (s *Supervisor) find(key string) *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key]
}

func (s *Supervisor) byPID(pid *actor.PID) *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byPid[keyOf(pid)]
}

func (s *Supervisor) emit(e Event) {
	e.Time = s.spec.Clock.Now()
	e.Supervisor = s.name
	if s.hooks.OnEvent != nil {
		// A panicking hook must not take the supervisor down with it.
		defer func() { recover() }()
		s.hooks.OnEvent(e)
	}
}

// restartNow asks the actor to restart keys (after failed's backoff).
type restartNow struct {
	failed string
	keys   []string
}

// supervisorActor is the protoactor actor of a Supervisor. It implements
// actor.SupervisorStrategy so that protoactor hands it its children's
// failures.
type supervisorActor struct{ s *Supervisor }

func (a *supervisorActor) Receive(c actor.Context) {
	s := a.s
	switch m := c.Message().(type) {
	case *request:
		m.done <- m.do(c)
	case *restartNow:
		for _, key := range m.keys {
			ch := s.find(key)
			if ch == nil || ch.status.State != BackingOff {
				continue
			}
			if key != m.failed && ch.spec.Restart == Temporary {
				// As in OTP: a temporary child taken down by a
				// sibling's restart is not restarted but removed.
				s.remove(ch, fmt.Errorf("supervisor: temporary child taken down by the restart of %s", m.failed))
				continue
			}
			s.restartChild(c, ch)
		}
	case *actor.Stopped:
		s.stopOnce.Do(func() { close(s.stopped) })
	case *actor.Restarting:
		// Restarted by our parent: protoactor stops our children now;
		// tell the owner they are gone. Started brings them back.
		s.stopAll(errors.New("supervisor restarted by its parent"))
	case *actor.Started:
		s.incarnations++
		if s.incarnations > 1 {
			s.window = restartWindow{}
			for _, ch := range s.snapshot() {
				if ch.status.State == Stopped {
					s.startAgain(c, ch)
				}
			}
		}
	}
}

func (s *Supervisor) snapshot() []*child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveLocked()
}

// HandleFailure is protoactor's call for a failed child; it runs in the
// supervisor actor.
func (a *supervisorActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, pid *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
	s := a.s
	err, ok := reason.(error)
	if !ok {
		err = &handlers.PanicError{Value: reason}
	}
	ch := s.byPID(pid)
	if ch == nil || ch.status.State != Running {
		// Forgotten while failing (its owner is removing it): let it
		// finish draining.
		sup.ResumeChildren(pid)
		return
	}
	var dir Directive
	var esc *EscalationError
	switch {
	case errors.As(err, &esc):
		dir = Restart // a nested supervisor gave up: restart it per its type
	case errors.Is(err, handlers.ErrStop):
		dir = Stop // a normal end: only permanent children come back
		if ch.spec.Restart == Permanent {
			dir = Restart
		}
	default:
		dir = s.spec.Decider(err)
	}
	s.emit(Event{Kind: EventFailed, Child: ch.key, Directive: dir, Reason: err})
	switch dir {
	case Resume:
		sup.ResumeChildren(pid)
	case Stop:
		s.remove(ch, err)
	case Escalate:
		s.escalate(sup, err)
	case Restart:
		if ch.spec.Restart == Temporary {
			s.remove(ch, err)
			return
		}
		if !s.window.allow(s.spec.Intensity, s.spec.Clock.Now()) {
			s.escalate(sup, fmt.Errorf("%w (%d in %v): %w", ErrIntensity, s.spec.Intensity.MaxRestarts, s.spec.Intensity.Period, err))
			return
		}
		s.scheduleRestart(ch)
	}
}

// affected lists the children a restart of ch brings down, by strategy.
func (s *Supervisor) affected(ch *child) []*child {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.spec.Strategy {
	case OneForAll:
		return s.liveLocked()
	case RestForOne:
		live := s.liveLocked()
		return live[max(slices.Index(live, ch), 0):]
	}
	return []*child{ch}
}

// scheduleRestart suspends the children the strategy takes down with
// failed and restarts them all after failed's backoff delay. Their queued
// messages wait in their mailboxes meanwhile.
func (s *Supervisor) scheduleRestart(failed *child) {
	now := s.spec.Clock.Now()
	if s.spec.Backoff.ResetAfter > 0 && now.Sub(failed.lastUp) >= s.spec.Backoff.ResetAfter {
		failed.unrest = 0
	}
	delay := s.spec.Backoff.delay(failed.unrest, jitter)
	failed.unrest++
	group := s.affected(failed)
	keys := make([]string, 0, len(group))
	s.mu.Lock()
	for _, ch := range group {
		if ch.status.State != Running {
			continue
		}
		if ch != failed {
			s.suspend(ch.pid)
		}
		keys = append(keys, ch.key)
		ch.status.State = BackingOff
		ch.status.Backoff = delay
	}
	s.mu.Unlock()
	if delay <= 0 {
		s.root.Send(s.pid.Load(), &restartNow{failed: failed.key, keys: keys})
		return
	}
	s.emit(Event{Kind: EventBackoff, Child: failed.key, Delay: delay})
	pid, root := s.pid.Load(), s.root
	stop := s.spec.Clock.AfterFunc(delay, func() { root.Send(pid, &restartNow{failed: failed.key, keys: keys}) })
	s.mu.Lock()
	failed.pending = stop
	s.mu.Unlock()
}

func (s *Supervisor) suspend(pid *actor.PID) {
	if p, ok := s.root.ActorSystem().ProcessRegistry.Get(pid); ok {
		p.SendSystemMessage(pid, &actor.SuspendMailbox{})
	}
}

// restartChild restarts one child in place: protoactor re-creates the
// actor and resumes its mailbox, so queued messages survive.
func (s *Supervisor) restartChild(c actor.Context, ch *child) {
	sup, ok := c.(actor.Supervisor)
	if !ok {
		return
	}
	sup.RestartChildren(ch.pid)
	s.mu.Lock()
	ch.status.State = Running
	ch.status.Restarts++
	ch.lastUp = s.spec.Clock.Now()
	ch.pending = nil
	s.mu.Unlock()
	s.emit(Event{Kind: EventRestarted, Child: ch.key})
}

// startAgain starts a stopped child afresh (after this supervisor itself
// was restarted).
func (s *Supervisor) startAgain(c actor.Context, ch *child) {
	if ch.spec.Restart == Temporary {
		s.mu.Lock()
		s.dropLocked(ch)
		s.mu.Unlock()
		return
	}
	var pid *actor.PID
	var err error
	if ch.sub != nil {
		ch.sub.incarnation++
		pid, err = c.SpawnNamed(actor.PropsFromProducer(ch.sub.producer), fmt.Sprintf("supervisor-%s-%d", ch.sub.name, ch.sub.incarnation))
		if err == nil {
			ch.sub.pid.Store(pid)
		}
	} else {
		var started spawn.Child
		started, err = ch.start(spawn.Parent{Ctx: c})
		pid = started.PID
	}
	if err != nil {
		s.emit(Event{Kind: EventStopped, Child: ch.key, Reason: fmt.Errorf("restart failed: %w", err)})
		s.mu.Lock()
		s.dropLocked(ch)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.setPidLocked(ch, pid)
	ch.status.State = Running
	ch.status.Restarts++
	ch.lastUp = s.spec.Clock.Now()
	s.mu.Unlock()
	s.emit(Event{Kind: EventRestarted, Child: ch.key})
}

// halt stops one child for good (its owner unregisters it) and marks it
// stopped; it stays listed so that a restart of this supervisor can start
// it again.
func (s *Supervisor) halt(ch *child, reason error) {
	s.mu.Lock()
	if ch.status.State == Stopped {
		s.mu.Unlock()
		return
	}
	if ch.pending != nil {
		ch.pending()
		ch.pending = nil
	}
	ch.status.State = Stopped
	s.mu.Unlock()
	if ch.sub != nil {
		ch.sub.stopAll(reason)
		s.root.Stop(ch.pid)
	} else if ch.stop != nil {
		ch.stop(spawn.Child{PID: ch.pid}, reason)
	}
	s.emit(Event{Kind: EventStopped, Child: ch.key, Reason: reason})
}

// remove stops a child and forgets it.
func (s *Supervisor) remove(ch *child, reason error) {
	s.halt(ch, reason)
	s.mu.Lock()
	s.dropLocked(ch)
	s.mu.Unlock()
}

// stopAll halts every child, nested supervisors' children first.
func (s *Supervisor) stopAll(reason error) {
	for _, ch := range s.snapshot() {
		s.halt(ch, reason)
	}
}

// escalate gives up: every child is stopped, then the failure goes to the
// parent, or to the owner's OnTopFailure at the top, where the children are
// also forgotten so that their ids can be registered again.
func (s *Supervisor) escalate(sup actor.Supervisor, err error) {
	s.stopAll(err)
	s.emit(Event{Kind: EventEscalated, Reason: err})
	if s.parent != nil {
		sup.EscalateFailure(&EscalationError{Supervisor: s.name, Reason: err}, nil)
		return
	}
	s.mu.Lock()
	s.children, s.byKey, s.byPid, s.gone = nil, nil, nil, 0
	s.window = restartWindow{}
	s.mu.Unlock()
	if s.hooks.OnTopFailure != nil {
		s.hooks.OnTopFailure(&EscalationError{Supervisor: s.name, Reason: err})
	}
}
