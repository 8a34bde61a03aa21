package actors

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A handler run on the receive loop that blocks does not hold the loop:
// after inlineMax the loop moves to another goroutine and the other
// callbacks go on getting their messages, Stop still returns at once, the
// blocked handler finishes on the old goroutine (which then ends), and it
// runs on its own goroutine from then on (for inlineBackoff). Not
// parallel: goleak would see the other tests' readers.
func TestReaderMovesLoopOffBlockedHandler(t *testing.T) {
	before := goleak.IgnoreCurrent()
	sys := newSystem(t)
	conn, peer := memoryPair(t)
	table := dispatch.NewTable(conn)
	slowID, fastID := transport.CbID{Idx: 0x5600, Val: 1}, transport.CbID{Idx: 0x5600, Val: 2}
	slow := &scripted{entered: make(chan uint32, 16), gate: make(chan struct{})}
	fast := &scripted{entered: make(chan uint32, 16), gate: make(chan struct{})}
	close(fast.gate)
	refs := map[transport.CbID]*HandlerRef{}
	for id, h := range map[transport.CbID]*scripted{slowID: slow, fastID: fast} {
		ref, err := SpawnHandler(top(sys), HandlerSpec{ID: id, Name: "h", Handler: h})
		if err != nil {
			t.Fatal(err)
		}
		if err := table.Add(&dispatch.Route{ID: id, Target: ref}); err != nil {
			t.Fatal(err)
		}
		refs[id] = ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	to := transport.Addr{Port: conn.Port()}
	send := func(id transport.CbID, seq uint32) {
		t.Helper()
		if err := peer.Send(ctx, to, &transport.Message{ID: id, Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	// Both handler actors idle (protoactor's Started has run on their own
	// goroutines): the next run of each is the loop's to make.
	for _, ref := range refs {
		if err := ref.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the handler idle", func() bool { return ref.mb.status.Load() == idle })
	}
	// Two messages in the first batch: more than one is run on the loop
	// (a lone one goes to the handler's goroutine, wakeBeforeWait).
	send(slowID, 1)
	send(slowID, 2)
	core, logs := observer.New(zap.InfoLevel)
	r, err := StartReader(top(sys), ReaderConfig{Conn: conn, Table: table, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	expect := func(h *scripted, seq uint32, what string) {
		t.Helper()
		select {
		case got := <-h.entered:
			if got != seq {
				t.Fatalf("%s: got seq %d, want %d", what, got, seq)
			}
		case <-ctx.Done():
			t.Fatalf("%s: seq %d never arrived (reader %+v)", what, seq, r.Stats())
		}
	}
	expect(slow, 1, "slow handler") // and now blocked in it, on the loop
	send(fastID, 3)
	expect(fast, 3, "fast callback while the slow one blocks")
	if s := r.Stats(); s.LoopMoves != 1 {
		t.Errorf("LoopMoves = %d, want 1 (the slow handler ran on the loop, and the loop moved once)", s.LoopMoves)
	}
	if logs.FilterMessage(warnNames[warnLoopMoved]).Len() != 1 {
		t.Errorf("the move was not logged once: %v", logs.All())
	}
	if bar, now := refs[slowID].inlineAfter.Load(), sinceEpoch(); bar <= now || bar > now+int64(inlineBackoff) {
		t.Errorf("the slow handler's bar from the loop ends at %d, want within %v of now (%d)", bar, inlineBackoff, now)
	}
	send(fastID, 4)
	expect(fast, 4, "fast callback, later")

	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Reader.Stop waited for the blocked handler")
	}
	close(slow.gate)
	for _, ref := range refs {
		if err := ref.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := refs[slowID].Stats(); s.Received != 2 || s.Handled != 2 {
		t.Errorf("slow callback %+v, want its two messages handled", s)
	}
	if s := r.Stats(); s.LoopMoves != 1 {
		t.Errorf("LoopMoves = %d after stop, want 1", s.LoopMoves)
	}
	goleak.VerifyNone(t, before)
}

// wakeRig is a reader on a memory Conn with two callbacks that record what
// they get, A and B.
type wakeRig struct {
	r          *Reader
	conn       *waitingConn
	peer       *memory.Conn
	a, b       transport.CbID
	ha, hb     *scripted
	refA, refB *HandlerRef
}

// waitingConn tells when the reader's loop calls ReceiveBatch, which the
// generic receive loop does only to wait (after idle).
type waitingConn struct {
	*memory.Conn
	waits chan struct{}
}

func (c *waitingConn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	select {
	case c.waits <- struct{}{}:
	default:
	}
	return c.Conn.ReceiveBatch(ctx, b)
}

func newWakeRig(t *testing.T, idx uint32, batchSize int) *wakeRig {
	t.Helper()
	sys := newSystem(t)
	conn, peer := memoryPair(t, memory.WithQueueLen(1024))
	g := &wakeRig{conn: &waitingConn{Conn: conn, waits: make(chan struct{}, 1)}, peer: peer,
		a: transport.CbID{Idx: idx, Val: 1}, b: transport.CbID{Idx: idx, Val: 2},
		ha: &scripted{entered: make(chan uint32, 1024), gate: make(chan struct{})},
		hb: &scripted{entered: make(chan uint32, 1024), gate: make(chan struct{})}}
	close(g.ha.gate)
	close(g.hb.gate)
	table := dispatch.NewTable(conn)
	for _, x := range []struct {
		id  transport.CbID
		h   *scripted
		ref **HandlerRef
	}{{g.a, g.ha, &g.refA}, {g.b, g.hb, &g.refB}} {
		ref, err := SpawnHandler(top(sys), HandlerSpec{ID: x.id, Name: "h", Handler: x.h})
		if err != nil {
			t.Fatal(err)
		}
		if err := table.Add(&dispatch.Route{ID: x.id, Target: ref}); err != nil {
			t.Fatal(err)
		}
		*x.ref = ref
	}
	var err error
	if g.r, err = StartReader(top(sys), ReaderConfig{Conn: g.conn, Table: table, BatchSize: batchSize}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.r.Stop(ctx)
		g.refA.Stop(ctx)
		g.refB.Stop(ctx)
	})
	return g
}

func (g *wakeRig) send(t *testing.T, id transport.CbID, seq uint32) {
	t.Helper()
	if err := g.peer.Send(context.Background(), transport.Addr{Port: g.conn.Port()}, &transport.Message{ID: id, Seq: seq}); err != nil {
		t.Fatal(err)
	}
}

// waitHandled waits until ref has handled n messages, or fails.
func waitHandled(t *testing.T, what string, ref *HandlerRef, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := ref.Stats(); s.Handled+s.Failed == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: %+v, want %d handled, with no more traffic to wake it", what, ref.Stats(), n)
}

// A handler left asleep in a full batch is woken before the loop waits,
// also when the loop went back into the receive to run another handler
// first (the generic receive loop then starts without waiting, and calls
// idle when it finds the queue empty): B's one message shares full
// batches with A's, A reaches a run's worth and runs on the loop, and then
// the queue is empty.
func TestReaderWakesSleeperAfterRunOnLoop(t *testing.T) {
	t.Parallel()
	g := newWakeRig(t, 0x5700, 64)
	// Stop the loop at its first wait, so that everything below is
	// queued before it reads.
	select {
	case <-g.conn.waits:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never waited")
	}
	g.send(t, g.b, 1)
	for seq := uint32(2); seq <= 320; seq++ {
		g.send(t, g.a, seq)
	}
	waitHandled(t, "A", g.refA, 319)
	waitHandled(t, "B, left asleep by full batches", g.refB, 1)
}

// A full batch that finds the reader actor held by another goroutine (a
// barrier, say) is routed by that goroutine, maybe after the loop has found
// the queue empty and waits: whoever it feeds is woken then, not left
// asleep for a wake-up that already happened.
func TestReaderWakesAllFedOffTheLoop(t *testing.T) {
	t.Parallel()
	g := newWakeRig(t, 0x5800, 1) // batches of one: every batch is full
	select {
	case <-g.conn.waits:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never waited")
	}
	// Hold the reader actor as a control message's poster would.
	waitFor(t, "the reader actor idle", func() bool { return g.r.mb.status.CompareAndSwap(idle, running) })
	g.send(t, g.b, 1)
	waitFor(t, "the batch queued behind the holder", func() bool { return g.r.mb.userCount.Load() == 1 })
	select { // the loop found the queue empty and waits again
	case <-g.conn.waits:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never went back to waiting")
	}
	g.r.mb.process() // the holder runs what was queued, and lets go
	waitHandled(t, "B, fed off the loop", g.refB, 1)
}
