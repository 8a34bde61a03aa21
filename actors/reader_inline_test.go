package actors

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
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
	if refs[slowID].inlineAfter.Load() == 0 {
		t.Error("the slow handler was not barred from the loop after keeping it")
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
