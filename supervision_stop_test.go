package cnactor_test

// Handlers that will not stop, or panic while stopping.

import (
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/conntest"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

func TestShutdownTimeoutOfStuckHandler(t *testing.T) {
	r := newSupRig(t)
	id := transport.CbID{Idx: 800, Val: 1}
	h := &supHandler{block: make(chan struct{})}
	defer close(h.block) // let the abandoned goroutine end before the leak check
	if err := r.c.AddCallback(id, "stuck", h, cnactor.WithShutdownTimeout(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r.send(id, 1, "block")
	r.send(id, 2, "ok")
	eventually(t, "the handler to block", func() bool { info, _ := r.info(id); return info.Queued == 2 })
	start := time.Now()
	err := r.c.DelCallback(id)
	if !errors.Is(err, actors.ErrStopTimeout) {
		t.Fatalf("DelCallback = %v, want ErrStopTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("DelCallback took %v with a 100ms shutdown timeout", d)
	}
	if _, ok := r.info(id); ok {
		t.Fatal("stuck callback still registered")
	}
}

// TestCloseWithStuckHandler: Close is bounded by the shutdown timeouts of
// stuck handlers, which run in parallel, and reports them.
func TestCloseWithStuckHandler(t *testing.T) {
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := net.Dial()
	defer peer.Close()
	block := make(chan struct{})
	defer close(block) // let the abandoned goroutines end before the leak check
	for i := 0; i < 3; i++ {
		id := transport.CbID{Idx: 850, Val: uint32(i)}
		h := &supHandler{block: block}
		if err := c.AddCallback(id, "stuck", h, cnactor.WithShutdownTimeout(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if err := peer.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("block")}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the handlers to block", func() bool {
		st := c.Stats()
		n := 0
		for _, cb := range st.Callbacks {
			n += int(cb.Queued)
		}
		return n == 3
	})
	start := time.Now()
	err = c.Close(context.Background())
	if !errors.Is(err, actors.ErrStopTimeout) {
		t.Fatalf("Close = %v, want ErrStopTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v with three handlers stuck past a 200ms timeout", d)
	}
}

// stopPanicker panics in OnStop; it must not come back.
type stopPanicker struct {
	supHandler
	stops atomic.Int32
}

func (h *stopPanicker) OnStop() {
	h.stops.Add(1)
	panic("panic while stopping")
}

func TestPanicDuringStop(t *testing.T) {
	r := newSupRig(t)
	id := transport.CbID{Idx: 900, Val: 1}
	h := &stopPanicker{}
	if err := r.c.AddCallback(id, "stop-panicker", h); err != nil {
		t.Fatal(err)
	}
	r.send(id, 1, "ok")
	eventually(t, "the message", func() bool { return len(h.handled()) == 1 })
	if err := r.c.DelCallback(id); err != nil {
		t.Fatal(err)
	}
	if h.stops.Load() != 1 || h.restarts.Load() != 0 {
		t.Fatalf("OnStop ran %d times, restarts %d", h.stops.Load(), h.restarts.Load())
	}
	r.send(id, 2, "ok")
	eventually(t, "the unknown-id count", func() bool { return r.c.Stats().Reader.Unknown == 1 })
	if len(h.handled()) != 1 || len(r.eventsOf(supervisor.EventRestarted, "")) != 0 {
		t.Fatal("the handler came back after a panic in OnStop")
	}
}

var _ = binary.NativeEndian

// Stats after Close keeps what the supervisor reported of each callback:
// its restarts, and that it is stopped.
func TestStatsAfterCloseKeepSupervision(t *testing.T) {
	t.Parallel()
	net := memory.NewNetwork()
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(cnactor.WithTransport(conn), cnactor.WithRootSupervisor(supervisor.Spec{Backoff: supervisor.NoBackoff()}))
	if err != nil {
		t.Fatal(err)
	}
	id := transport.CbID{Idx: 0x7611, Val: 1}
	var calls atomic.Int32
	panicOnce := handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
		if calls.Add(1) == 1 {
			panic("first message")
		}
		return nil
	})
	if err := c.AddCallback(id, "once", panicOnce); err != nil {
		t.Fatal(err)
	}
	peer := dialPeer(t, net)
	sendTo(t, peer, c, id, 1, "boom")
	sendTo(t, peer, c, id, 2, "fine")
	waitFor(t, "the restart and the second message", func() bool {
		ci := info(t, c, id)
		return ci.Restarts == 1 && ci.Handled == 1
	})
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ci, ok := c.Callback(id)
	if !ok || ci.Restarts != 1 || ci.State != supervisor.Stopped || ci.Failed != 1 || ci.Handled != 1 {
		t.Errorf("after Close: %+v (found %v), want 1 restart, 1 failed, 1 handled, stopped", ci, ok)
	}
}

// startCounter is a handler that counts its Starts and OnStops.
type startCounter struct {
	handlers.Handler
	starts, stops atomic.Int32
}

func (s *startCounter) Start(context.Context, handlers.Outbox) error { s.starts.Add(1); return nil }
func (s *startCounter) OnStop()                                      { s.stops.Add(1) }

// A Starter registered again by a restart of its supervisor (after OnStop)
// is started again, as the proc handler must send LISTEN again.
func TestStarterStartedAgainAfterSupervisorRestart(t *testing.T) {
	r := newSupRig(t)
	spec := supervisor.Spec{Backoff: supervisor.NoBackoff(), Intensity: supervisor.Intensity{MaxRestarts: 0, Period: time.Minute}}
	if err := r.c.AddSupervisor("inner-start", "", spec, supervisor.ChildSpec{Restart: supervisor.Permanent}); err != nil {
		t.Fatal(err)
	}
	id := transport.CbID{Idx: 451, Val: 1}
	h := &startCounter{Handler: &supHandler{}}
	if err := r.c.AddCallback(id, "starter", h, cnactor.WithSupervisor("inner-start")); err != nil {
		t.Fatal(err)
	}
	if h.starts.Load() != 1 {
		t.Fatalf("%d starts after AddCallback", h.starts.Load())
	}
	r.send(id, 1, "panic") // past the inner supervisor's intensity: the root restarts it
	eventually(t, "the second start", func() bool { return h.starts.Load() == 2 })
	if h.stops.Load() != 1 {
		t.Errorf("%d stops, want 1 (the stop before the restart)", h.stops.Load())
	}
}

// Close with a ctx already done does not wait a handler's shutdown timeout.
func TestCloseWithDoneContextDoesNotWait(t *testing.T) {
	t.Parallel()
	net := memory.NewNetwork()
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cnactor.New(cnactor.WithTransport(conn))
	if err != nil {
		t.Fatal(err)
	}
	stuck := conntest.NewGated()
	defer stuck.Open()
	id := transport.CbID{Idx: 0x7612, Val: 1}
	if err := c.AddCallback(id, "stuck", stuck); err != nil {
		t.Fatal(err)
	}
	peer := dialPeer(t, net)
	sendTo(t, peer, c, id, 1, "hold")
	<-stuck.Entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err = c.Close(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close with a done ctx took %v (err %v)", d, err)
	}
	if !errors.Is(err, actors.ErrStopTimeout) {
		t.Errorf("Close = %v, want ErrStopTimeout for the stuck handler", err)
	}
}
