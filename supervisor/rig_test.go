package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/supervisor"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// rig shuts its supervisor and actor system down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rig is an actor system with a top supervisor whose events, child starts,
// stops and handled messages are recorded.
type rig struct {
	t     *testing.T
	sys   *actor.ActorSystem
	top   *supervisor.Supervisor
	clock *supervisor.ManualClock

	mu       sync.Mutex
	events   []supervisor.Event
	starts   map[string]int
	handled  map[string][]string
	stops    map[string][]error
	topFails []error
}

func newRig(t *testing.T, spec supervisor.Spec) *rig {
	t.Helper()
	// Quiet (failures are the point here), and a short dead-letter throttle:
	// its goroutine outlives each dead letter by that long.
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond))
	r := &rig{t: t, sys: sys, starts: map[string]int{}, handled: map[string][]string{}, stops: map[string][]error{}}
	if spec.Clock == nil {
		r.clock = supervisor.NewManualClock(time.Unix(1000, 0))
		spec.Clock = r.clock
	}
	top, err := supervisor.New(spawn.Parent{Ctx: r.sys.Root}, fmt.Sprintf("top-%p", r), spec, r.hooks())
	if err != nil {
		t.Fatal(err)
	}
	r.top = top
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		defer cancel()
		if err := r.top.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		r.sys.Shutdown()
	})
	return r
}

func (r *rig) hooks() supervisor.Hooks {
	return supervisor.Hooks{
		OnEvent: func(e supervisor.Event) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, e)
		},
		OnTopFailure: func(err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.topFails = append(r.topFails, err)
		},
	}
}

// count is how many events of kind the supervisor sup recorded for child.
func (r *rig) count(sup string, kind supervisor.EventKind, child string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && e.Child == child && (sup == "" || e.Supervisor == sup) {
			n++
		}
	}
	return n
}

func (r *rig) event(kind supervisor.EventKind, child string) supervisor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && e.Child == child {
			return e
		}
	}
	r.t.Fatalf("no %v event for %q in %v", kind, child, r.events)
	return supervisor.Event{}
}

func (r *rig) waitEvents(what string, sup string, kind supervisor.EventKind, child string, n int) {
	r.t.Helper()
	testutil.WaitFor(r.t, what, func() bool { return r.count(sup, kind, child) >= n })
}

func (r *rig) startsOf(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts[key]
}

func (r *rig) handledBy(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handled[key])
}

func (r *rig) stopsOf(key string) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stops[key])
}

func (r *rig) topFailures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.topFails)
}

// kid is a child actor: it records its starts and the notes it handles,
// and panics with the reason of a fail message.
type kid struct {
	r   *rig
	key string
}

type fail struct{ reason any }
type note string

// block makes the child record "blocked" and wait until it is closed.
type block chan struct{}

func (k *kid) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		k.r.mu.Lock()
		k.r.starts[k.key]++
		k.r.mu.Unlock()
	case fail:
		panic(m.reason)
	case block:
		k.r.mu.Lock()
		k.r.handled[k.key] = append(k.r.handled[k.key], "blocked")
		k.r.mu.Unlock()
		<-m
	case note:
		k.r.mu.Lock()
		k.r.handled[k.key] = append(k.r.handled[k.key], string(m))
		k.r.mu.Unlock()
	}
}

// child is a started child's handle: its current pid, updated when the
// supervisor starts it afresh.
type child struct {
	r   *rig
	key string
	mu  sync.Mutex
	pid *actor.PID
	// startErr, if set, fails starts after the first.
	startErr error
}

func (r *rig) starter(ch *child) supervisor.Starter {
	return func(parent spawn.Parent) (spawn.Child, error) {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if ch.pid != nil && ch.startErr != nil {
			return spawn.Child{}, ch.startErr
		}
		pid := parent.Ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return &kid{r: r, key: ch.key} }))
		ch.pid = pid
		return spawn.Child{PID: pid}, nil
	}
}

func (r *rig) stopper(key string) supervisor.StopFunc {
	return func(c spawn.Child, reason error) {
		r.mu.Lock()
		r.stops[key] = append(r.stops[key], reason)
		r.mu.Unlock()
		r.sys.Root.Stop(c.PID)
	}
}

// add starts a child named key under sup.
func (r *rig) add(sup *supervisor.Supervisor, key string, restart supervisor.RestartType) *child {
	r.t.Helper()
	ch := &child{r: r, key: key}
	if err := sup.StartChild(key, supervisor.ChildSpec{Restart: restart}, r.starter(ch), r.stopper(key)); err != nil {
		r.t.Fatal(err)
	}
	testutil.WaitFor(r.t, key+" to start", func() bool { return r.startsOf(key) == 1 })
	return ch
}

func (ch *child) send(m any) {
	ch.mu.Lock()
	pid := ch.pid
	ch.mu.Unlock()
	ch.r.sys.Root.Send(pid, m)
}

func status(t *testing.T, s *supervisor.Supervisor, key string) supervisor.ChildStatus {
	t.Helper()
	st, ok := s.Status(key)
	if !ok {
		t.Fatalf("%q has no child %q", s.Name(), key)
	}
	return st
}

var errBoom = errors.New("boom")
