package cnactor_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// supRig is a connector on the memory transport with a peer to send from
// and a log of supervision events.
type supRig struct {
	t      *testing.T
	c      *cnactor.Connector
	peer   *memory.Conn
	net    *memory.Network
	mu     sync.Mutex
	events []supervisor.Event
	// unwatch stops recording events (which hold failure stacks).
	unwatch func()
}

func newSupRig(t *testing.T, opts ...cnactor.Option) *supRig {
	t.Helper()
	net := memory.NewNetwork(memory.WithQueueLen(4096))
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(append([]cnactor.Option{cnactor.WithTransport(conn)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	r := &supRig{t: t, c: c, peer: peer, net: net}
	r.unwatch = c.WatchSupervision(func(e supervisor.Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, e)
	})
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		peer.Close()
	})
	return r
}

// send sends one message with seq and payload to the connector.
func (r *supRig) send(id transport.CbID, seq uint32, data string) {
	r.t.Helper()
	if err := r.peer.Send(context.Background(), transport.Addr{Port: r.c.Port()}, &transport.Message{ID: id, Seq: seq, Data: []byte(data)}); err != nil {
		r.t.Fatal(err)
	}
}

// eventsOf returns the events of one kind for child ("" = any child).
func (r *supRig) eventsOf(kind supervisor.EventKind, child string) []supervisor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []supervisor.Event
	for _, e := range r.events {
		if e.Kind == kind && (child == "" || e.Child == child) {
			out = append(out, e)
		}
	}
	return out
}

func (r *supRig) info(id transport.CbID) (cnactor.CallbackInfo, bool) { return r.c.Callback(id) }

var eventually = testutil.WaitFor

// supHandler is a handler that records the seqs it handled, panics on
// "panic", returns handlers.ErrStop on "stop" and counts restarts.
type supHandler struct {
	mu       sync.Mutex
	seqs     []uint32
	restarts atomic.Int32
	block    chan struct{} // if set, "block" waits on it
}

func (h *supHandler) Receive(_ handlers.Context, m *transport.Message) error {
	switch string(m.Data) {
	case "panic":
		panic("asked to")
	case "stop":
		return handlers.ErrStop
	case "block":
		<-h.block
	}
	h.mu.Lock()
	h.seqs = append(h.seqs, m.Seq)
	h.mu.Unlock()
	return nil
}

func (h *supHandler) Restart() { h.restarts.Add(1) }

func (h *supHandler) handled() []uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seqs)
}

var fastRestarts = supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 1 << 30, Period: time.Second}}

// TestSupervisionChaos: a handler that panics on every 10th of 100,000
// messages beside three healthy ones. Exactly 10,000 failures and
// restarts; every other message handled, in order; the healthy handlers
// get everything; the restarts leave no goroutines or heap behind.
func TestSupervisionChaos(t *testing.T) {
	total := 100_000
	if testutil.RaceEnabled {
		total = 20_000
	}
	r := newSupRig(t, cnactor.WithRootSupervisor(fastRestarts))
	r.unwatch()
	flakyID := transport.CbID{Idx: 100, Val: 1}
	flaky := &supHandler{}
	if err := r.c.AddCallback(flakyID, "flaky", flaky, cnactor.WithMailbox(total, cnactor.DropNewest)); err != nil {
		t.Fatal(err)
	}
	healthy := make([]*supHandler, 3)
	for i := range healthy {
		healthy[i] = &supHandler{}
		if err := r.c.AddCallback(transport.CbID{Idx: 100, Val: uint32(2 + i)}, "healthy", healthy[i], cnactor.WithMailbox(total, cnactor.DropNewest)); err != nil {
			t.Fatal(err)
		}
	}
	sendRange := func(from, to int) {
		for i := from; i < to; i++ {
			data := "ok"
			if i%10 == 9 {
				data = "panic"
			}
			r.send(flakyID, uint32(i), data)
			if i%10 == 0 {
				r.send(transport.CbID{Idx: 100, Val: uint32(2 + (i/10)%3)}, uint32(i), "ok")
			}
		}
		eventually(t, "the flaky handler to finish", func() bool {
			info, _ := r.info(flakyID)
			return info.Handled+info.Failed == uint64(to)
		})
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC() // the second empties sync.Pool's victim cache
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	// The first half warms up: queues and pools reach their working size.
	sendRange(0, total/2)
	before, goroutines := heap(), runtime.NumGoroutine()
	sendRange(total/2, total)
	// The second half's restarts must leave nothing behind.
	if grown := heap() - before; grown > 2<<20 {
		t.Errorf("heap grew by %d bytes over %d restarts", grown, total/20)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("goroutines grew from %d to %d over %d restarts", goroutines, g, total/20)
	}
	info, _ := r.info(flakyID)
	if info.Failed != uint64(total/10) || info.Handled != uint64(total-total/10) || info.Dropped != 0 {
		t.Fatalf("flaky: %+v, want %d failed, %d handled", info.CallbackStats, total/10, total-total/10)
	}
	if info.Restarts != uint64(total/10) || flaky.restarts.Load() != int32(total/10) {
		t.Errorf("restarts: status %d, handler saw %d, want %d", info.Restarts, flaky.restarts.Load(), total/10)
	}
	seqs := flaky.handled()
	if len(seqs) != total-total/10 || !slices.IsSorted(seqs) {
		t.Fatalf("flaky handled %d messages, sorted=%v", len(seqs), slices.IsSorted(seqs))
	}
	for _, s := range seqs {
		if s%10 == 9 {
			t.Fatalf("failing message %d was handled", s)
		}
	}
	for i, h := range healthy {
		want := total / 30
		if i < (total/10)%3 {
			want++
		}
		eventually(t, "healthy handlers", func() bool { return len(h.handled()) == want })
		if got := h.handled(); !slices.IsSorted(got) || h.restarts.Load() != 0 {
			t.Errorf("healthy %d: %d messages, sorted=%v, restarts %d", i, len(got), slices.IsSorted(got), h.restarts.Load())
		}
	}
}

func TestRestartTypes(t *testing.T) {
	tests := []struct {
		restart   supervisor.RestartType
		trigger   string
		restarted bool // else removed
	}{
		{supervisor.Permanent, "panic", true},
		{supervisor.Permanent, "stop", true},
		{supervisor.Transient, "panic", true},
		{supervisor.Transient, "stop", false},
		{supervisor.Temporary, "panic", false},
		{supervisor.Temporary, "stop", false},
	}
	for _, tt := range tests {
		t.Run(tt.restart.String()+"/"+tt.trigger, func(t *testing.T) {
			t.Parallel()
			r := newSupRig(t, cnactor.WithRootSupervisor(fastRestarts))
			id := transport.CbID{Idx: 200, Val: 1}
			var removed atomic.Bool
			r.c.Watch(func(e cnactor.Event) {
				if e.ID == id && e.Kind == dispatch.EventRemoved {
					removed.Store(true)
				}
			})
			h := &supHandler{}
			if err := r.c.AddCallback(id, "typed", h, cnactor.WithRestart(tt.restart)); err != nil {
				t.Fatal(err)
			}
			r.send(id, 1, tt.trigger)
			if tt.restarted {
				eventually(t, "the restart", func() bool { return h.restarts.Load() == 1 })
				r.send(id, 2, "ok")
				eventually(t, "the next message", func() bool { return len(h.handled()) == 1 })
				if _, ok := r.info(id); !ok || removed.Load() {
					t.Fatal("restarted callback was unregistered")
				}
				return
			}
			eventually(t, "the removal", removed.Load)
			if _, ok := r.info(id); ok {
				t.Fatal("removed callback still registered")
			}
			if h.restarts.Load() != 0 {
				t.Fatal("removed handler was restarted")
			}
			// The id can be registered again.
			if err := r.c.AddCallback(id, "again", &supHandler{}); err != nil {
				t.Fatalf("re-register: %v", err)
			}
		})
	}
}

func TestStrategies(t *testing.T) {
	tests := []struct {
		strategy supervisor.Strategy
		want     [3]int32 // restarts of A, B, C when B fails
	}{
		{supervisor.OneForOne, [3]int32{0, 1, 0}},
		{supervisor.OneForAll, [3]int32{1, 1, 1}},
		{supervisor.RestForOne, [3]int32{0, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.strategy.String(), func(t *testing.T) {
			t.Parallel()
			r := newSupRig(t)
			spec := fastRestarts
			spec.Strategy = tt.strategy
			if err := r.c.AddSupervisor("group", "", spec, supervisor.ChildSpec{}); err != nil {
				t.Fatal(err)
			}
			hs := [3]*supHandler{{}, {}, {}}
			for i, h := range hs {
				if err := r.c.AddCallback(transport.CbID{Idx: 300, Val: uint32(i)}, "member", h, cnactor.WithSupervisor("group")); err != nil {
					t.Fatal(err)
				}
			}
			r.send(transport.CbID{Idx: 300, Val: 1}, 1, "panic")
			eventually(t, "B's restart", func() bool { return len(r.eventsOf(supervisor.EventRestarted, "300:1")) == 1 })
			eventually(t, "the strategy's restarts", func() bool {
				return hs[0].restarts.Load() == tt.want[0] && hs[1].restarts.Load() == tt.want[1] && hs[2].restarts.Load() == tt.want[2]
			})
			// Everyone keeps working after the restarts.
			for i := range hs {
				r.send(transport.CbID{Idx: 300, Val: uint32(i)}, 2, "ok")
			}
			for i, h := range hs {
				eventually(t, "messages after the restart", func() bool { return len(h.handled()) == 1 })
				if got := h.restarts.Load(); got != tt.want[i] {
					t.Errorf("child %d restarted %d times, want %d", i, got, tt.want[i])
				}
			}
		})
	}
}

// subscribe makes the peer join group g and ask the connector core for
// notifications about ids in [idx, idx+1) x [0, 2^32).
func (r *supRig) subscribe(g, idx uint32) {
	r.t.Helper()
	if err := r.peer.JoinGroup(g); err != nil {
		r.t.Fatal(err)
	}
	sub := dispatch.Subscription{Group: g, IdxRanges: []dispatch.Range{{First: idx, Count: 1}}, ValRanges: []dispatch.Range{{First: 0, Count: ^uint32(0)}}}
	if err := r.peer.Send(context.Background(), transport.Addr{Port: r.c.Port()}, &transport.Message{ID: dispatch.CoreID(), Data: dispatch.AppendControl(nil, &sub)}); err != nil {
		r.t.Fatal(err)
	}
	eventually(r.t, "the subscription", func() bool { return r.c.Stats().Control.Subscriptions == 1 })
}

// notifications reads what the peer received on group g: id -> events.
func (r *supRig) notifications(g uint32, want int) map[transport.CbID][]uint32 {
	r.t.Helper()
	got := map[transport.CbID][]uint32{}
	b := transport.NewBatch(16)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n := 0; n < want; {
		if err := r.peer.ReceiveBatch(ctx, b); err != nil {
			r.t.Fatalf("after %d notifications: %v", n, err)
		}
		for _, m := range b.Messages {
			if m.Group == g {
				got[m.ID] = append(got[m.ID], m.Ack)
				n++
			}
		}
	}
	return got
}

func TestIntensityExceeded(t *testing.T) {
	r := newSupRig(t)
	const g = 9
	r.subscribe(g, 400)
	spec := supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 2, Period: time.Minute}}
	if err := r.c.AddSupervisor("fragile", "", spec, supervisor.ChildSpec{Restart: supervisor.Temporary}); err != nil {
		t.Fatal(err)
	}
	a, b := transport.CbID{Idx: 400, Val: 1}, transport.CbID{Idx: 400, Val: 2}
	for _, id := range []transport.CbID{a, b} {
		if err := r.c.AddCallback(id, "fragile", &supHandler{}, cnactor.WithSupervisor("fragile")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		r.send(a, uint32(i), "panic")
		if i < 2 {
			eventually(t, "a restart", func() bool { return len(r.eventsOf(supervisor.EventRestarted, "400:1")) == i+1 })
		}
	}
	eventually(t, "the escalation", func() bool { return len(r.eventsOf(supervisor.EventEscalated, "")) == 1 })
	esc := r.eventsOf(supervisor.EventEscalated, "")[0]
	if esc.Supervisor != "fragile" || !errors.Is(esc.Reason, supervisor.ErrIntensity) {
		t.Fatalf("escalation = %+v", esc)
	}
	eventually(t, "both callbacks unregistered", func() bool {
		_, okA := r.info(a)
		_, okB := r.info(b)
		return !okA && !okB
	})
	// Subscribers saw both registrations (event 0) and both removals (1).
	got := r.notifications(g, 4)
	for _, id := range []transport.CbID{a, b} {
		if !slices.Equal(got[id], []uint32{0, 1}) {
			t.Errorf("notifications for %s = %v, want [0 1]", id, got[id])
		}
	}
	// The root treated the temporary supervisor's failure by removing it.
	eventually(t, "the root to remove the supervisor", func() bool {
		return len(r.eventsOf(supervisor.EventStopped, "supervisor:fragile")) == 1
	})
	if r.c.Err() != nil {
		t.Fatalf("connector failed: %v", r.c.Err())
	}
}

func TestNestedSupervisorRestartsItsChildren(t *testing.T) {
	r := newSupRig(t)
	spec := supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}}
	if err := r.c.AddSupervisor("inner", "", spec, supervisor.ChildSpec{Restart: supervisor.Permanent}); err != nil {
		t.Fatal(err)
	}
	id := transport.CbID{Idx: 450, Val: 1}
	var added atomic.Int32
	r.c.Watch(func(e cnactor.Event) {
		if e.ID == id && e.Kind == dispatch.EventAdded {
			added.Add(1)
		}
	})
	h := &supHandler{}
	if err := r.c.AddCallback(id, "inner", h, cnactor.WithSupervisor("inner")); err != nil {
		t.Fatal(err)
	}
	r.send(id, 1, "panic") // restart 1: allowed
	eventually(t, "the first restart", func() bool { return h.restarts.Load() == 1 })
	r.send(id, 2, "panic") // restart 2: exceeds, escalates; the root restarts "inner"
	eventually(t, "the callback to come back", func() bool { return added.Load() == 2 })
	r.send(id, 3, "ok")
	eventually(t, "a message to the new handler", func() bool { return len(h.handled()) == 1 })
}

func TestTopPolicyFailConnector(t *testing.T) {
	spec := supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}}
	r := newSupRig(t, cnactor.WithRootSupervisor(spec), cnactor.WithTopPolicy(cnactor.FailConnector))
	id := transport.CbID{Idx: 500, Val: 1}
	if err := r.c.AddCallback(id, "doomed", &supHandler{}); err != nil {
		t.Fatal(err)
	}
	r.send(id, 1, "panic")
	r.send(id, 2, "panic")
	select {
	case <-r.c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connector not failed")
	}
	if !errors.Is(r.c.Err(), supervisor.ErrIntensity) {
		t.Fatalf("Err = %v", r.c.Err())
	}
	if _, ok := r.info(id); ok {
		t.Fatal("callback still registered")
	}
}

func TestBackoffWithManualClock(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(1000, 0))
	spec := supervisor.Spec{
		Backoff:   supervisor.Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, ResetAfter: time.Second},
		Intensity: supervisor.Intensity{MaxRestarts: 100, Period: time.Second},
		Clock:     clock,
	}
	r := newSupRig(t, cnactor.WithRootSupervisor(spec))
	id := transport.CbID{Idx: 600, Val: 1}
	h := &supHandler{}
	const capacity = 4
	if err := r.c.AddCallback(id, "slow-to-recover", h, cnactor.WithMailbox(capacity, cnactor.DropNewest)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{10, 20, 40, 40} {
		want *= time.Millisecond
		r.send(id, uint32(i), "panic")
		eventually(t, "the backoff timer", func() bool { return len(clock.Pending()) == 1 })
		if got := clock.Pending()[0]; got != want {
			t.Fatalf("restart %d delayed %v, want %v", i, got, want)
		}
		info, _ := r.info(id)
		if info.State != supervisor.BackingOff || info.Backoff != want {
			t.Fatalf("status during backoff = %+v", info.ChildStatus)
		}
		if i == 0 {
			// While down, the mailbox accepts up to its capacity and
			// counts the rest as dropped.
			for j := 0; j < capacity+3; j++ {
				r.send(id, uint32(100+j), "ok")
			}
			eventually(t, "the overflow", func() bool { info, _ := r.info(id); return info.Dropped == 3 })
			if len(h.handled()) != 0 {
				t.Fatal("a message was handled during the backoff")
			}
		}
		clock.Advance(want)
		eventually(t, "the restart", func() bool { return h.restarts.Load() == int32(i+1) })
		if i == 0 {
			// The mailbox holds its capacity: the next panic would be
			// dropped (DropNewest) if sent before they are handled.
			eventually(t, "the queued messages", func() bool { return len(h.handled()) == capacity })
		}
	}
	if n := len(h.handled()); n != capacity {
		t.Fatalf("handled %d messages, want the %d queued during the first backoff", n, capacity)
	}
	// A second of stability resets the delay to the minimum.
	clock.Advance(time.Second)
	r.send(id, 50, "panic")
	eventually(t, "the backoff timer", func() bool { return len(clock.Pending()) == 1 })
	if got := clock.Pending()[0]; got != 10*time.Millisecond {
		t.Fatalf("delay after a stable second = %v, want 10ms", got)
	}
	clock.Advance(10 * time.Millisecond)
}

func TestDeciderDirectives(t *testing.T) {
	errResume, errRestart, errStop, errEscalate := errors.New("resume"), errors.New("restart"), errors.New("stop"), errors.New("escalate")
	decide := func(err error) supervisor.Directive {
		switch {
		case errors.Is(err, errRestart):
			return supervisor.Restart
		case errors.Is(err, errStop):
			return supervisor.Stop
		case errors.Is(err, errEscalate):
			return supervisor.Escalate
		}
		return supervisor.Resume
	}
	byName := map[string]error{"resume": errResume, "restart": errRestart, "stop": errStop, "escalate": errEscalate}
	tests := []struct {
		err        string
		restarts   int32
		registered bool
		escalated  bool
	}{
		{"resume", 0, true, false},
		{"restart", 1, true, false},
		{"stop", 0, false, false},
		{"escalate", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.err, func(t *testing.T) {
			t.Parallel()
			r := newSupRig(t)
			spec := fastRestarts
			spec.Decider = decide
			if err := r.c.AddSupervisor("decided", "", spec, supervisor.ChildSpec{Restart: supervisor.Temporary}); err != nil {
				t.Fatal(err)
			}
			id := transport.CbID{Idx: 700, Val: 1}
			var dead atomic.Int32
			h := &supHandler{}
			handler := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
				if err, ok := byName[string(m.Data)]; ok {
					return err
				}
				return h.Receive(ctx, m)
			})
			restarts := func() int32 { info, _ := r.info(id); return int32(info.Restarts) }
			if err := r.c.AddCallback(id, "decided", handler, cnactor.WithSupervisor("decided"),
				cnactor.WithDeadLetter(func(m *transport.Received, reason error) {
					if m.Seq == 1 && errors.Is(reason, byName[tt.err]) {
						dead.Add(1)
					}
				})); err != nil {
				t.Fatal(err)
			}
			r.send(id, 1, tt.err)
			eventually(t, "the failure", func() bool { info, ok := r.info(id); return !ok || info.Failed == 1 })
			if tt.registered {
				r.send(id, 2, "ok")
				eventually(t, "the next message", func() bool { return len(h.handled()) == 1 })
				if got := restarts(); got != tt.restarts {
					t.Errorf("restarts = %d, want %d", got, tt.restarts)
				}
			} else {
				eventually(t, "the removal", func() bool { _, ok := r.info(id); return !ok })
			}
			if tt.escalated {
				// The supervisor reports the escalation once it has stopped
				// its children: after the removal the test saw.
				eventually(t, "the escalation", func() bool { return len(r.eventsOf(supervisor.EventEscalated, "")) > 0 })
			}
			if got := len(r.eventsOf(supervisor.EventEscalated, "")) > 0; got != tt.escalated {
				t.Errorf("escalated = %v, want %v", got, tt.escalated)
			}
			if dead.Load() != 1 {
				t.Errorf("dead-letter hook saw the failing message %d times", dead.Load())
			}
		})
	}
}
