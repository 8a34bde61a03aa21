package actors

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The reader counts what the socket lost before it read, routes by id and
// policy, and once stopped answers barriers at once instead of never.
func TestReaderRoutesAndStops(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	const g = 4
	conn, peer := memoryPair(t, memory.WithQueueLen(4), memory.WithGroups(g))

	// Ten multicasts into a queue of four, before anyone reads: six lost.
	known := transport.CbID{Idx: g, Val: 1}
	for seq := range uint32(10) {
		if err := peer.Send(context.Background(), transport.Addr{Group: g}, &transport.Message{ID: known, Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}

	table := dispatch.NewTable(conn)
	h := &scripted{entered: make(chan uint32, 16), gate: make(chan struct{})}
	close(h.gate)
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: known, Name: "known", Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Add(&dispatch.Route{ID: known, Target: ref}); err != nil {
		t.Fatal(err)
	}
	kernelOnly := transport.CbID{Idx: 0x5200, Val: 1}
	kref, err := SpawnHandler(top(sys), HandlerSpec{ID: kernelOnly, Name: "kernel", Handler: handlers.Sink()})
	if err != nil {
		t.Fatal(err)
	}
	if err := table.Add(&dispatch.Route{ID: kernelOnly, Policy: dispatch.AllowKernel(), Target: kref}); err != nil {
		t.Fatal(err)
	}

	r, err := StartReader(top(sys), ReaderConfig{Conn: conn, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	to := transport.Addr{Port: conn.Port()}
	for _, m := range []transport.Message{
		{ID: kernelOnly, Seq: 100},                   // refused: not the kernel
		{ID: transport.CbID{Idx: 0x5200, Val: 2}},    // unknown
		{ID: known, Seq: 101, Data: []byte("hello")}, // routed
	} {
		if err := peer.Send(context.Background(), to, &m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "routing", func() bool { return r.Stats().Messages == 7 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	if s.KernelDrops != 6 || s.Overflows != 1 || s.Unknown != 1 || s.Rejected != 1 || s.Datagrams != 7 {
		t.Errorf("reader counters %+v, want 6 kernel drops in 1 overflow, 1 unknown, 1 rejected, 7 datagrams", s)
	}
	if ks := kref.Stats(); ks.Rejected != 1 || ks.Received != 0 {
		t.Errorf("kernel-only callback %+v", ks)
	}
	if err := ref.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if hs := ref.Stats(); hs.Received != 5 || hs.Handled+hs.Failed != 5 {
		t.Errorf("routed callback %+v, want the 4 multicasts kept and the unicast", hs)
	}

	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	// A barrier after Stop must not wait for an actor that is gone: the
	// connector's supervisors remove callbacks (and take a barrier) while
	// Close runs.
	done := make(chan error, 1)
	go func() { done <- r.barrier(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("barrier after Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("barrier after Stop never returned")
	}
	for _, h := range []*HandlerRef{ref, kref} {
		if err := h.Stop(ctx); err != nil {
			t.Error(err)
		}
	}
}

// panicRig is a reader with a route whose target makes routing panic
// (bad) and a callback that reports the seqs it gets (good).
type panicRig struct {
	r         *Reader
	peer      *memory.Conn
	to        transport.Addr
	bad, good transport.CbID
	h         *scripted
	ref       *HandlerRef
}

func newPanicRig(t *testing.T, idx uint32, badTarget func(bad transport.CbID) any, log *zap.Logger, batchSize int) *panicRig {
	t.Helper()
	sys := newSystem(t)
	conn, peer := memoryPair(t)
	table := dispatch.NewTable(conn)
	g := &panicRig{peer: peer, to: transport.Addr{Port: conn.Port()},
		bad: transport.CbID{Idx: idx, Val: 1}, good: transport.CbID{Idx: idx, Val: 2},
		h: &scripted{entered: make(chan uint32, 64), gate: make(chan struct{})}}
	close(g.h.gate)
	if err := table.Add(&dispatch.Route{ID: g.bad, Target: badTarget(g.bad)}); err != nil {
		t.Fatal(err)
	}
	var err error
	if g.ref, err = SpawnHandler(top(sys), HandlerSpec{ID: g.good, Name: "good", Handler: g.h}); err != nil {
		t.Fatal(err)
	}
	if err := table.Add(&dispatch.Route{ID: g.good, Target: g.ref}); err != nil {
		t.Fatal(err)
	}
	if g.r, err = StartReader(top(sys), ReaderConfig{Conn: conn, Table: table, Logger: log, BatchSize: batchSize}); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *panicRig) send(t *testing.T, ctx context.Context, id transport.CbID, seq uint32) {
	t.Helper()
	if err := g.peer.Send(ctx, g.to, &transport.Message{ID: id, Seq: seq}); err != nil {
		t.Fatal(err)
	}
}

// routed sends seq to the good callback and waits for it to get it.
func (g *panicRig) routed(t *testing.T, ctx context.Context, seq uint32) {
	t.Helper()
	g.send(t, ctx, g.good, seq)
	select {
	case got := <-g.h.entered:
		if got != seq {
			t.Fatalf("handler got seq %d, want %d", got, seq)
		}
	case <-ctx.Done():
		t.Fatalf("seq %d never reached the good callback after a routing panic (reader stats %+v)", seq, g.r.Stats())
	}
}

// stop stops the reader and the good callback, failing if either hangs.
func (g *panicRig) stop(t *testing.T, ctx context.Context) {
	t.Helper()
	stopped := make(chan error, 1)
	go func() { stopped <- g.r.Stop(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Reader.Stop did not return")
	}
	if err := g.ref.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// A panic while routing (only a bug can cause one; here a route whose
// target is not a handler) is recovered by the reader itself: counted with
// the messages it lost, logged, and the reader routes the next batch and
// answers control messages. More panics than the root supervisor's restart
// budget (10 in 10 s) change nothing: escalated, they made the supervisor
// stop the reader actor, and the receive loop then waited for ever.
func TestReaderRoutePanicRecovered(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.ErrorLevel)
	g := newPanicRig(t, 0x5300, func(transport.CbID) any { return "not a handler" }, zap.New(core), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const rounds = 15
	for round := uint32(1); round <= rounds; round++ {
		g.send(t, ctx, g.bad, round)
		waitFor(t, "the bad message routed", func() bool { return g.r.Stats().RoutePanics == uint64(round) })
		g.routed(t, ctx, 100+round)
		if err := g.r.barrier(ctx); err != nil {
			t.Fatalf("round %d: barrier: %v", round, err)
		}
	}
	if s := g.r.Stats(); s.RoutePanics != rounds || s.RouteLost != rounds || s.Messages != 2*rounds {
		t.Errorf("reader stats %+v, want %d panics each losing its one message", s, rounds)
	}
	if logs.FilterMessage(warnNames[warnRoutePanic]).Len() == 0 {
		t.Error("no routing panic was logged")
	}
	g.stop(t, ctx)
}

// A panic while the reader wakes the handlers it fed (injected with a
// handler whose mailbox protoactor never registered: its wake calls a nil
// dispatcher) is recovered like one while picking: the next messages reach
// a good handler, and Stop returns. Found by review: the wake loop cleared
// the list as it went, so the recovery tripped over the cleared entries,
// and the reader stopped routing for good.
func TestReaderRoutePanicInWakeRecovered(t *testing.T) {
	t.Parallel()
	g := newPanicRig(t, 0x5400, unregisteredHandler, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.send(t, ctx, g.bad, 1)
	waitFor(t, "the panic in wake", func() bool { return g.r.Stats().RoutePanics == 1 })
	// More than the root supervisor's restart budget, had it been escalated.
	for seq := uint32(2); seq <= 15; seq++ {
		g.routed(t, ctx, seq)
	}
	// The bad message was handed to its mailbox before the wake panicked:
	// not lost.
	if s := g.r.Stats(); s.RoutePanics != 1 || s.RouteLost != 0 {
		t.Errorf("reader stats %+v, want 1 panic and nothing lost", s)
	}
	g.stop(t, ctx)
}

// unregisteredHandler is a route target whose wake panics: protoactor
// never registered its mailbox, so it has no dispatcher.
func unregisteredHandler(id transport.CbID) any {
	ref := &HandlerRef{spec: HandlerSpec{ID: id, StallTimeout: time.Second}, log: zap.NewNop()}
	ref.mb = newMailbox(0, Backpressure, &ref.counters)
	return ref
}

// With batches of one datagram every batch is full, so the handlers fed
// are left asleep and woken by the actor's control message before the
// receive loop waits: a panic in that wake is recovered too (escalated, it
// would have left the reader failing on every control message, a barrier
// never answered, and Stop hanging).
func TestReaderWakePanicInControlRecovered(t *testing.T) {
	t.Parallel()
	g := newPanicRig(t, 0x5500, unregisteredHandler, nil, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.send(t, ctx, g.bad, 1)
	waitFor(t, "the panic in the wake", func() bool { return g.r.Stats().RoutePanics == 1 })
	for seq := uint32(2); seq <= 15; seq++ {
		g.routed(t, ctx, seq)
	}
	if err := g.r.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if s := g.r.Stats(); s.RoutePanics != 1 || s.RouteLost != 0 {
		t.Errorf("reader stats %+v, want 1 panic and nothing lost", s)
	}
	g.stop(t, ctx)
}

// memoryPair is a reader's socket (with opts) and a peer to send from, on
// an in-memory network of their own, closed when the test ends.
func memoryPair(t *testing.T, opts ...memory.DialOption) (conn, peer *memory.Conn) {
	t.Helper()
	net := memory.NewNetwork()
	conn, err := net.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if peer, err = net.Dial(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return conn, peer
}
