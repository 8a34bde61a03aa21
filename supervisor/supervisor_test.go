package supervisor_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/supervisor"
)

// A failed child waits out its backoff with its mailbox suspended, is
// restarted in place (the message queued behind the failure is handled by
// the new incarnation), and its delays double until it has been stable for
// ResetAfter.
func TestRestartInPlaceAfterBackoff(t *testing.T) {
	t.Parallel()
	backoff := supervisor.Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, ResetAfter: time.Second}
	r := newRig(t, supervisor.Spec{Backoff: backoff})
	a := r.add(r.top, "a", supervisor.Permanent)

	a.send(fail{"first"})
	a.send(note("queued"))
	r.waitEvents("the first backoff", "", supervisor.EventBackoff, "a", 1)
	if e := r.event(supervisor.EventFailed, "a"); e.Directive != supervisor.Restart || !errors.As(e.Reason, new(*handlers.PanicError)) {
		t.Fatalf("failure event %+v", e)
	}
	if st := status(t, r.top, "a"); st.State != supervisor.BackingOff || st.Backoff != backoff.Min {
		t.Fatalf("status while backing off: %+v", st)
	}
	if p := r.clock.Pending(); !slices.Equal(p, []time.Duration{backoff.Min}) {
		t.Fatalf("pending timers %v", p)
	}
	// The failure suspended the mailbox before the note was taken: the
	// note waits for the restart.
	if h := r.handledBy("a"); len(h) != 0 {
		t.Fatalf("handled %v while backing off", h)
	}
	r.clock.Advance(backoff.Min)
	r.waitEvents("the restart", "", supervisor.EventRestarted, "a", 1)
	testutil.WaitFor(t, "the queued note", func() bool { return slices.Equal(r.handledBy("a"), []string{"queued"}) })
	if st := status(t, r.top, "a"); st.State != supervisor.Running || st.Restarts != 1 || r.startsOf("a") != 2 {
		t.Fatalf("after the restart: %+v, %d starts", st, r.startsOf("a"))
	}

	// Unstable: the next delay doubles.
	a.send(fail{"second"})
	r.waitEvents("the second backoff", "", supervisor.EventBackoff, "a", 2)
	if p := r.clock.Pending(); !slices.Equal(p, []time.Duration{2 * backoff.Min}) {
		t.Fatalf("second delay %v, want %v", p, 2*backoff.Min)
	}
	r.clock.Advance(2 * backoff.Min)
	r.waitEvents("the second restart", "", supervisor.EventRestarted, "a", 2)

	// Stable for ResetAfter: back to Min.
	r.clock.Advance(backoff.ResetAfter)
	a.send(fail{"third"})
	r.waitEvents("the third backoff", "", supervisor.EventBackoff, "a", 3)
	if p := r.clock.Pending(); !slices.Equal(p, []time.Duration{backoff.Min}) {
		t.Fatalf("delay after a stable period %v, want %v", p, backoff.Min)
	}
	// Left pending: Shutdown (cleanup) cancels the timer.
}

// A Temporary child that fails is removed, whatever the directive.
func TestTemporaryRemovedOnFailure(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff()})
	a := r.add(r.top, "a", supervisor.Temporary)
	a.send(fail{"x"})
	r.waitEvents("the removal", "", supervisor.EventStopped, "a", 1)
	if _, ok := r.top.Status("a"); ok {
		t.Fatal("temporary child still listed")
	}
	if s := r.stopsOf("a"); len(s) != 1 || !errors.As(s[0], new(*handlers.PanicError)) {
		t.Fatalf("stop calls %v", s)
	}
	if r.count("", supervisor.EventRestarted, "a") != 0 || r.startsOf("a") != 1 {
		t.Fatal("temporary child restarted")
	}
}

// A Temporary child that a sibling's failure takes down (one-for-all)
// waits out the backoff with the others; OTP never restarts it: it is
// removed, as a failure of its own would remove it.
func TestTemporarySiblingAfterBackoff(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Strategy: supervisor.OneForAll, Backoff: supervisor.Backoff{Min: time.Millisecond}})
	a := r.add(r.top, "a", supervisor.Permanent)
	r.add(r.top, "tmp", supervisor.Temporary)
	a.send(fail{"x"})
	r.waitEvents("the backoff", "", supervisor.EventBackoff, "a", 1)
	if st := status(t, r.top, "tmp"); st.State != supervisor.BackingOff {
		t.Fatalf("temporary sibling %+v, want backing off with the failed child", st)
	}
	r.clock.Advance(time.Millisecond)
	r.waitEvents("the restart", "", supervisor.EventRestarted, "a", 1)
	// As in OTP: the temporary sibling is removed, not restarted.
	testutil.WaitFor(t, "the temporary sibling removed", func() bool { _, listed := r.top.Status("tmp"); return !listed })
	if n := r.startsOf("tmp"); n != 1 {
		t.Fatalf("the temporary sibling was started %d times", n)
	}
}

// One-for-all restarts every child; rest-for-one the failed one and those
// started after it, not those before.
func TestStrategies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		strategy supervisor.Strategy
		restarts []uint64 // of a, b, c when b fails
	}{
		{supervisor.OneForOne, []uint64{0, 1, 0}},
		{supervisor.OneForAll, []uint64{1, 1, 1}},
		{supervisor.RestForOne, []uint64{0, 1, 1}},
	} {
		t.Run(tc.strategy.String(), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, supervisor.Spec{Strategy: tc.strategy, Backoff: supervisor.NoBackoff()})
			var kids []*child
			for _, k := range []string{"a", "b", "c"} {
				kids = append(kids, r.add(r.top, k, supervisor.Permanent))
			}
			kids[1].send(fail{"b fails"})
			// All restarts of one failure happen in one step of the
			// supervisor, in start order, each with its event: once the
			// last child due for a restart has its event, the others are
			// restarted too, or never will be. (Waiting for b's event
			// alone raced with c's restart right after it.)
			last := "b"
			for i, k := range []string{"a", "b", "c"} {
				if tc.restarts[i] > 0 {
					last = k
				}
			}
			r.waitEvents(last+"'s restart", "", supervisor.EventRestarted, last, 1)
			for i, k := range []string{"a", "b", "c"} {
				st := status(t, r.top, k)
				if st.Restarts != tc.restarts[i] || st.State != supervisor.Running {
					t.Errorf("%s: %+v, want %d restarts", k, st, tc.restarts[i])
				}
				testutil.WaitFor(t, k+"'s starts", func() bool { return r.startsOf(k) == 1+int(tc.restarts[i]) })
			}
		})
	}
}

// The decider's directives, and handlers.ErrStop as a normal end.
func TestDirectives(t *testing.T) {
	t.Parallel()
	errResume, errStopIt, errEscalate := errors.New("resume"), errors.New("stop"), errors.New("escalate")
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff(), Decider: func(err error) supervisor.Directive {
		switch {
		case errors.Is(err, errResume):
			return supervisor.Resume
		case errors.Is(err, errStopIt):
			return supervisor.Stop
		case errors.Is(err, errEscalate):
			return supervisor.Escalate
		}
		return supervisor.Restart
	}})
	res := r.add(r.top, "resume", supervisor.Permanent)
	res.send(fail{errResume})
	res.send(note("after"))
	testutil.WaitFor(t, "the resumed child to go on", func() bool { return slices.Equal(r.handledBy("resume"), []string{"after"}) })
	if st := status(t, r.top, "resume"); st.Restarts != 0 || r.startsOf("resume") != 1 {
		t.Fatalf("resumed child restarted: %+v", st)
	}

	stop := r.add(r.top, "stop", supervisor.Permanent)
	stop.send(fail{errStopIt})
	r.waitEvents("the stop", "", supervisor.EventStopped, "stop", 1)
	if _, ok := r.top.Status("stop"); ok {
		t.Fatal("stopped child still listed")
	}

	transient := r.add(r.top, "transient", supervisor.Transient)
	transient.send(fail{handlers.ErrStop})
	r.waitEvents("the transient's normal end", "", supervisor.EventStopped, "transient", 1)
	permanent := r.add(r.top, "permanent", supervisor.Permanent)
	permanent.send(fail{handlers.ErrStop})
	r.waitEvents("the permanent's restart", "", supervisor.EventRestarted, "permanent", 1)

	esc := r.add(r.top, "esc", supervisor.Permanent)
	esc.send(fail{errEscalate})
	testutil.WaitFor(t, "the top failure", func() bool { return len(r.topFailures()) == 1 })
	var ee *supervisor.EscalationError
	if err := r.topFailures()[0]; !errors.As(err, &ee) || ee.Supervisor != r.top.Name() || !errors.Is(err, errEscalate) ||
		!strings.Contains(err.Error(), "escalate") {
		t.Fatalf("top failure %v", err)
	}
	// Escalating stopped every child and forgot them.
	for _, k := range []string{"resume", "permanent", "esc"} {
		if len(r.stopsOf(k)) != 1 {
			t.Errorf("%s stopped %d times", k, len(r.stopsOf(k)))
		}
		if _, ok := r.top.Status(k); ok {
			t.Errorf("%s still listed", k)
		}
	}
	if r.count("", supervisor.EventEscalated, "") != 1 {
		t.Fatal("no escalation event")
	}
}

// More restarts than the intensity allows fail the top supervisor: its
// children, a nested supervisor's included, are stopped.
func TestIntensityExceededAtTop(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}})
	a := r.add(r.top, "a", supervisor.Permanent)
	nested, err := r.top.StartSupervisor("nested", supervisor.Spec{}, supervisor.ChildSpec{})
	if err != nil {
		t.Fatal(err)
	}
	r.add(nested, "k", supervisor.Permanent)
	a.send(fail{"1"})
	r.waitEvents("the first restart", "", supervisor.EventRestarted, "a", 1)
	a.send(fail{"2"})
	testutil.WaitFor(t, "the top failure", func() bool { return len(r.topFailures()) == 1 })
	if err := r.topFailures()[0]; !errors.Is(err, supervisor.ErrIntensity) {
		t.Fatalf("top failure %v", err)
	}
	if len(r.stopsOf("a")) != 1 || len(r.stopsOf("k")) != 1 {
		t.Fatalf("stops: a %v, k %v", r.stopsOf("a"), r.stopsOf("k"))
	}
	testutil.WaitFor(t, "the nested supervisor to stop", nested.Stopped)
	if err := nested.StartChild("late", supervisor.ChildSpec{}, nil, nil); !errors.Is(err, supervisor.ErrStopped) {
		t.Fatalf("StartChild on a stopped supervisor: %v", err)
	}
}

// A nested supervisor that exceeds its intensity stops its children and
// escalates; its parent restarts it after its own backoff, and the
// restarted supervisor starts its children afresh.
func TestNestedSupervisorRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.Backoff{Min: 5 * time.Millisecond}})
	nested, err := r.top.StartSupervisor("nested",
		supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}},
		supervisor.ChildSpec{Restart: supervisor.Permanent})
	if err != nil {
		t.Fatal(err)
	}
	k := r.add(nested, "k", supervisor.Permanent)
	r.add(nested, "tmp", supervisor.Temporary)
	k.send(fail{"1"})
	r.waitEvents("k's restart in place", "nested", supervisor.EventRestarted, "k", 1)
	k.send(fail{"2"})
	r.waitEvents("the nested escalation", "nested", supervisor.EventEscalated, "", 1)
	r.waitEvents("the top's backoff", r.top.Name(), supervisor.EventBackoff, "supervisor:nested", 1)
	var ee *supervisor.EscalationError
	if e := r.event(supervisor.EventFailed, "supervisor:nested"); !errors.As(e.Reason, &ee) || ee.Supervisor != "nested" ||
		!errors.Is(e.Reason, supervisor.ErrIntensity) || e.Directive != supervisor.Restart {
		t.Fatalf("top saw %+v", e)
	}
	if len(r.stopsOf("k")) != 1 || len(r.stopsOf("tmp")) != 1 {
		t.Fatalf("escalation stopped k %d times and tmp %d times", len(r.stopsOf("k")), len(r.stopsOf("tmp")))
	}
	r.clock.Advance(5 * time.Millisecond)
	r.waitEvents("k started afresh", "nested", supervisor.EventRestarted, "k", 2)
	testutil.WaitFor(t, "k's third start", func() bool { return r.startsOf("k") == 3 })
	if st := status(t, nested, "k"); st.State != supervisor.Running || st.Restarts != 2 {
		t.Fatalf("k after its supervisor's restart: %+v", st)
	}
	// The Temporary child is not brought back.
	if _, ok := nested.Status("tmp"); ok || r.startsOf("tmp") != 1 {
		t.Fatal("temporary child restarted with its supervisor")
	}
	if st := status(t, r.top, "supervisor:nested"); st.Restarts != 1 || st.State != supervisor.Running {
		t.Fatalf("nested supervisor's status %+v", st)
	}
	// The restarted supervisor serves calls: its handle follows the new actor.
	k.send(note("again"))
	testutil.WaitFor(t, "k to serve again", func() bool { return slices.Contains(r.handledBy("k"), "again") })
	r.add(nested, "fresh", supervisor.Permanent)
}

// A child whose start fails when its supervisor restarts is dropped, with
// an event that says why.
func TestFailedRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff()})
	nested, err := r.top.StartSupervisor("nested",
		supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 0, Period: time.Minute}},
		supervisor.ChildSpec{Restart: supervisor.Permanent})
	if err != nil {
		t.Fatal(err)
	}
	k := r.add(nested, "k", supervisor.Permanent)
	k.mu.Lock()
	k.startErr = errBoom
	k.mu.Unlock()
	k.send(fail{"x"}) // intensity 0: the nested supervisor escalates at once
	r.waitEvents("the top's restart of nested", r.top.Name(), supervisor.EventRestarted, "supervisor:nested", 1)
	testutil.WaitFor(t, "k's failed start", func() bool { return r.count("nested", supervisor.EventStopped, "k") == 2 })
	var last supervisor.Event
	r.mu.Lock()
	for _, e := range r.events {
		if e.Supervisor == "nested" && e.Kind == supervisor.EventStopped && e.Child == "k" {
			last = e
		}
	}
	r.mu.Unlock()
	if !errors.Is(last.Reason, errBoom) || !strings.Contains(last.Reason.Error(), "restart failed") {
		t.Fatalf("failed restart reported as %v", last.Reason)
	}
	if _, ok := nested.Status("k"); ok {
		t.Fatal("child whose restart failed is still listed")
	}
}

// Forget during a backoff: the child is no longer restarted and its
// mailbox drains; a child forgotten before it fails is resumed.
func TestForget(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.Backoff{Min: time.Millisecond}})
	a := r.add(r.top, "a", supervisor.Permanent)
	a.send(fail{"x"})
	a.send(note("queued"))
	r.waitEvents("the backoff", "", supervisor.EventBackoff, "a", 1)
	r.top.Forget("a")
	testutil.WaitFor(t, "the queued note to drain", func() bool { return slices.Equal(r.handledBy("a"), []string{"queued"}) })
	r.clock.Advance(time.Millisecond)
	// The timer's restart request is handled before this call, in order.
	r.add(r.top, "b", supervisor.Permanent)
	if r.startsOf("a") != 1 || r.count("", supervisor.EventRestarted, "a") != 0 {
		t.Fatal("forgotten child restarted")
	}

}

// A child forgotten while running and then failing is resumed: its
// supervisor no longer decides for it.
func TestForgottenChildFailing(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff()})
	a := r.add(r.top, "a", supervisor.Permanent)
	r.top.Forget("a")
	a.send(fail{"x"})
	a.send(note("after"))
	testutil.WaitFor(t, "the note after the failure", func() bool { return slices.Equal(r.handledBy("a"), []string{"after"}) })
	if r.count("", supervisor.EventFailed, "a") != 0 || r.startsOf("a") != 1 {
		t.Fatal("a forgotten child's failure was supervised")
	}
}

// Starting children: duplicate keys and failing starters are errors, and
// a failed start leaves nothing listed.
func TestStartErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{})
	r.add(r.top, "a", supervisor.Permanent)
	if err := r.top.StartChild("a", supervisor.ChildSpec{}, r.starter(&child{r: r, key: "a"}), nil); err == nil {
		t.Fatal("duplicate key accepted")
	}
	err := r.top.StartChild("bad", supervisor.ChildSpec{}, func(spawn.Parent) (spawn.Child, error) { return spawn.Child{}, errBoom }, nil)
	if !errors.Is(err, errBoom) {
		t.Fatalf("failing starter: %v", err)
	}
	if _, ok := r.top.Status("bad"); ok {
		t.Fatal("failed child listed")
	}
	if _, err := r.top.StartSupervisor("n", supervisor.Spec{}, supervisor.ChildSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.top.StartSupervisor("n", supervisor.Spec{}, supervisor.ChildSpec{}); err == nil {
		t.Fatal("duplicate nested supervisor accepted")
	}
	if r.top.Spec().Intensity != supervisor.DefaultIntensity() || r.top.Stopped() {
		t.Fatalf("spec %+v, stopped %v", r.top.Spec(), r.top.Stopped())
	}
}

// Shutdown waits for a child stuck in its handler until ctx ends.
func TestShutdownStuckChild(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{})
	a := r.add(r.top, "a", supervisor.Permanent)
	release := make(chan struct{})
	a.send(block(release))
	testutil.WaitFor(t, "a to block", func() bool { return slices.Contains(r.handledBy("a"), "blocked") })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.top.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown with a stuck child: %v", err)
	}
	close(release)
	testutil.WaitFor(t, "the top to stop", r.top.Stopped)
	if err := r.top.StartChild("late", supervisor.ChildSpec{}, nil, nil); !errors.Is(err, supervisor.ErrStopped) {
		t.Fatalf("StartChild after shutdown: %v", err)
	}
}

// A hook that panics does not take the supervisor down.
func TestPanickingHook(t *testing.T) {
	t.Parallel()
	r := newRig(t, supervisor.Spec{Backoff: supervisor.NoBackoff()})
	hooks := supervisor.Hooks{OnEvent: func(e supervisor.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
		panic("hook")
	}}
	s, err := supervisor.New(spawn.Parent{Ctx: r.sys.Root}, "panicky", supervisor.Spec{Backoff: supervisor.NoBackoff(), Clock: r.clock}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	a := r.add(s, "a", supervisor.Permanent)
	a.send(fail{"x"})
	r.waitEvents("the restart despite the hook", "panicky", supervisor.EventRestarted, "a", 1)
}

func TestNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		supervisor.EventEscalated.String(): "escalated",
		supervisor.EventKind(9).String():   "unknown(9)",
		supervisor.BackingOff.String():     "backoff",
		supervisor.Stopped.String():        "stopped",
		supervisor.Escalate.String():       "escalate",
		supervisor.Temporary.String():      "temporary",
		supervisor.RestForOne.String():     "rest-for-one",
		supervisor.ChildState(7).String():  "unknown(7)",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}
