package supervisor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/internal/spawn"
)

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
