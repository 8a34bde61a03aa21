package supervisor

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/spawn"
)

// The failure path, inside the supervisor actor: protoactor hands it a
// failed child (HandleFailure), the Decider and the restart type say what
// follows, and a restart waits out its backoff, re-creates the children
// the strategy names in place, or stops them and escalates.

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
		s.mu.Lock()
		s.dropLocked(ch)
		s.mu.Unlock()
		s.emit(Event{Kind: EventStopped, Child: ch.key, Reason: fmt.Errorf("restart failed: %w", err)})
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
func (s *Supervisor) halt(ch *child, reason error) { s.stopChild(ch, reason, false) }

// remove stops a child and forgets it.
func (s *Supervisor) remove(ch *child, reason error) { s.stopChild(ch, reason, true) }

// stopChild halts ch and, with forget, drops it from the listings before
// EventStopped is emitted, so that whoever sees the event sees it gone.
func (s *Supervisor) stopChild(ch *child, reason error, forget bool) {
	s.mu.Lock()
	halted := ch.status.State != Stopped
	if halted {
		if ch.pending != nil {
			ch.pending()
			ch.pending = nil
		}
		ch.status.State = Stopped
	}
	s.mu.Unlock()
	if halted {
		if ch.sub != nil {
			ch.sub.stopAll(reason)
			s.root.Stop(ch.pid)
		} else if ch.stop != nil {
			ch.stop(spawn.Child{PID: ch.pid}, reason)
		}
	}
	if forget {
		s.mu.Lock()
		s.dropLocked(ch)
		s.mu.Unlock()
	}
	if halted {
		s.emit(Event{Kind: EventStopped, Child: ch.key, Reason: reason})
	}
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
