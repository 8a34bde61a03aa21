package actors

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/faulty"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// faultRig is a reader on a faulty in-memory socket, one callback with an
// always-open scripted handler, a peer to send from and the reader's log.
type faultRig struct {
	conn  *faulty.Conn
	peer  *memory.Conn
	table *dispatch.Table
	h     *scripted
	id    transport.CbID
	logs  *observer.ObservedLogs
	log   *zap.Logger
}

func newFaultRig(t *testing.T, id transport.CbID, faults ...faulty.Fault) *faultRig {
	t.Helper()
	sys := newSystem(t)
	net := memory.NewNetwork()
	inner, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	conn := faulty.Wrap(inner, faults...)
	t.Cleanup(func() { conn.Close(); peer.Close() })
	core, logs := observer.New(zap.WarnLevel)
	g := &faultRig{conn: conn, peer: peer, table: dispatch.NewTable(conn), id: id, logs: logs, log: zap.New(core),
		h: &scripted{entered: make(chan uint32, 64), gate: make(chan struct{})}}
	close(g.h.gate)
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: id, Name: "faults", Handler: g.h})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.table.Add(&dispatch.Route{ID: id, Target: ref}); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *faultRig) send(t *testing.T, seq uint32) {
	t.Helper()
	m := &transport.Message{ID: g.id, Seq: seq, Data: []byte("payload")}
	if err := g.peer.Send(context.Background(), transport.Addr{Port: g.conn.Port()}, m); err != nil {
		t.Fatal(err)
	}
}

func (g *faultRig) start(t *testing.T, batch int) *Reader {
	t.Helper()
	r, err := StartReader(top(newSystem(t)), ReaderConfig{Conn: g.conn, Table: g.table, Logger: g.log, BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// stop ends the reader as Close does.
func stopReader(t *testing.T, r *Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !r.stopIntake(ctx) {
		t.Fatal("the receive loop did not end")
	}
	r.stopActor()
}

// Receive errors that are not the socket closing (EINTR, ENOMEM, ...) are
// counted, logged without flooding the log, and the reader keeps serving:
// the message queued before them is routed once they pass. A truncated
// datagram is counted as malformed.
func TestReaderReceiveErrors(t *testing.T) {
	t.Parallel()
	g := newFaultRig(t, transport.CbID{Idx: 0x5310, Val: 1},
		faulty.Fault{Op: faulty.Receive, Times: 2, Err: syscall.EINTR},
		faulty.Fault{Op: faulty.Receive, After: 2, Times: 1, Err: syscall.ENOMEM},
		faulty.Fault{Op: faulty.Receive, Times: 1, Truncate: 20}, // the first batch
	)
	g.send(t, 1) // truncated
	r := g.start(t, 0)
	waitFor(t, "the truncated datagram", func() bool { return r.Stats().Malformed == 1 })
	g.send(t, 2)
	waitFor(t, "the message after the errors", func() bool { return g.h.seenCount() == 1 })
	stopReader(t, r)
	s := r.Stats()
	if s.ReceiveErrors != 3 || s.Malformed != 1 || s.Messages != 1 {
		t.Fatalf("stats %+v, want 3 receive errors, 1 malformed, 1 message", s)
	}
	// Logged rate-limited: every error is in a line or in a suppressed
	// count (Stop reports what is still suppressed), the first line says
	// which error it was.
	lines, n := suppressedOf(t, g.logs, warnNames[warnReceive])
	_, m := suppressedOf(t, g.logs, warnNames[warnReceive]+" (repeats suppressed)")
	if lines < 1 || lines+n+m != 3 {
		t.Fatalf("%d lines and %d+%d suppressed for 3 receive errors", lines, n, m)
	}
	first := g.logs.FilterMessage(warnNames[warnReceive]).All()[0]
	if err, _ := first.ContextMap()["error"].(string); err != (&transport.OpError{Op: "receive", Err: syscall.EINTR}).Error() {
		t.Fatalf("first receive error logged as %q", err)
	}
}

// With a batch of one, every batch is full: the handler it fed is left
// asleep and the next receive first tries without waiting. That try
// failing is a receive error like any other; the handler is still woken
// and handles the message.
func TestReaderTryReceiveError(t *testing.T) {
	t.Parallel()
	g := newFaultRig(t, transport.CbID{Idx: 0x5311, Val: 1},
		faulty.Fault{Op: faulty.Receive, After: 1, Times: 1, Err: syscall.EIO})
	g.send(t, 1)
	r := g.start(t, 1)
	waitFor(t, "the message", func() bool { return g.h.seenCount() == 1 })
	waitFor(t, "the failed try", func() bool { return r.Stats().ReceiveErrors == 1 })
	g.send(t, 2)
	waitFor(t, "the next message", func() bool { return g.h.seenCount() == 2 })
	stopReader(t, r)
	if s := r.Stats(); s.ReceiveErrors != 1 || s.Messages != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// endless is a socket whose queue never empties: every non-blocking
// receive returns a datagram, as under a flood that outpaces the reader.
type endless struct {
	transport.Conn
	tries atomic.Int64
	data  []byte
}

func (e *endless) TryReceiveBatch(b *transport.Batch) (bool, error) {
	b.Reset()
	e.tries.Add(1)
	b.AddDatagram(b.Slot(0)[:copy(b.Slot(0), e.data)], 1, 0, transport.Credentials{})
	return true, nil
}

// Under traffic that never stops, the final drain ends after drainMax: a
// flood cannot hold Close up. Everything drained until then is routed.
func TestReaderDrainLimit(t *testing.T) {
	t.Parallel()
	net := memory.NewNetwork()
	inner, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	data, _ := transport.AppendDatagram(nil, &transport.Message{ID: transport.CbID{Idx: 0x5312, Val: 9}}, 0, 0)
	conn := &endless{Conn: inner, data: data}
	sys := newSystem(t)
	core, logs := observer.New(zap.WarnLevel)
	r, err := StartReader(top(sys), ReaderConfig{Conn: conn, Table: dispatch.NewTable(conn), BatchSize: 1, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if !r.stopIntake(ctx) {
		t.Fatal("the drain did not end under an endless flood")
	}
	if took := time.Since(start); took < drainMax {
		t.Fatalf("the drain ended after %v, before drainMax %v, with the queue never empty", took, drainMax)
	}
	if logs.FilterMessageSnippet("drain limit reached").Len() != 1 {
		t.Fatal("the drain limit was reached without a warning")
	}
	r.stopActor()
	// Every batch taken was routed (to no callback: unknown).
	if s := r.Stats(); s.Unknown != uint64(conn.tries.Load()) || s.Unknown < 2 {
		t.Fatalf("%d tries, %d routed", conn.tries.Load(), s.Unknown)
	}
}

// A loop stuck in a receive that ignores the read deadline does not end by
// stopIntake; closing the socket ends it: Stop does that once its ctx has
// ended, and then returns.
func TestReaderStuckReceiveEndsOnClose(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{}) // never opened
	g := newFaultRig(t, transport.CbID{Idx: 0x5313, Val: 1}, faulty.Fault{Op: faulty.Receive, Wait: stuck})
	r := g.start(t, 0)
	waitFor(t, "the receive to hang", func() bool { return g.conn.Injected(faulty.Receive) == 1 })
	// A context already done: stopIntake reports that the loop is still running.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r.stopIntake(ctx) {
		t.Fatal("stopIntake returned drained with the receive stuck")
	}
	if err := r.Stop(ctx); err != nil { // closes the socket
		t.Fatal(err)
	}
	if s := r.Stats(); s.ReceiveErrors != 0 {
		t.Fatalf("closing counted as a receive error: %+v", s)
	}
}

// A batch that reports kernel loss and carries no message still reaches a
// loss observer: the notice is heard although nothing follows it. (Only
// observers are woken for loss; the rest have nothing queued.)
func TestReaderLossNoticeWithNothingAfter(t *testing.T) {
	t.Parallel()
	id := transport.CbID{Idx: 0x5311, Val: 7}
	// Every datagram received is dropped (reported as Batch.Lost, like an
	// overflow): the batch carries the loss and no message.
	g := newFaultRig(t, id, faulty.Fault{Op: faulty.Receive, Drop: true})
	obs := newGated()
	close(obs.gate)
	ref, err := SpawnHandler(top(newSystem(t)), HandlerSpec{ID: transport.CbID{Idx: 0x5311, Val: 8}, Name: "observer", Handler: obs})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop(context.Background())
	if err := g.table.Add(&dispatch.Route{ID: ref.spec.ID, Target: ref}); err != nil {
		t.Fatal(err)
	}
	g.send(t, 1)
	r := g.start(t, 0)
	defer stopReader(t, r)
	waitFor(t, "the loss notice", func() bool { return obs.lostTo(handlers.LossSocket) == 1 })
	if s := r.Stats(); s.KernelDrops != 1 || s.Messages != 0 || g.h.seenCount() != 0 {
		t.Fatalf("stats %+v, handled %d", s, g.h.seenCount())
	}
}
