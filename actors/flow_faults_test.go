package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// gated handles a message only once its gate is open, and records the
// loss notices it is given.
type gated struct {
	gate    chan struct{}
	entered atomic.Int64
	handled atomic.Int64
	mu      sync.Mutex
	lost    map[handlers.LossSource]uint64
}

func newGated() *gated {
	return &gated{gate: make(chan struct{}), lost: map[handlers.LossSource]uint64{}}
}

func (g *gated) Receive(_ handlers.Context, _ *transport.Message) error {
	g.entered.Add(1)
	<-g.gate
	g.handled.Add(1)
	return nil
}

func (g *gated) Lost(n uint64, s handlers.LossSource) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lost[s] += n
}

func (g *gated) lostTo(s handlers.LossSource) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lost[s]
}

// flowRig is a reader with one Backpressure callback of a small mailbox.
type flowRig struct {
	r    *Reader
	ref  *HandlerRef
	h    *gated
	peer *memory.Conn
	to   transport.Addr
	id   transport.CbID
}

func newFlowRig(t *testing.T, id transport.CbID, mailbox int, stall time.Duration) *flowRig {
	t.Helper()
	sys := newSystem(t)
	net := memory.NewNetwork(memory.WithQueueLen(4096))
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	h := newGated()
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: id, Name: "flow", Handler: h,
		MailboxSize: mailbox, StallTimeout: stall})
	if err != nil {
		t.Fatal(err)
	}
	table := dispatch.NewTable(conn)
	if err := table.Add(&dispatch.Route{ID: id, Target: ref}); err != nil {
		t.Fatal(err)
	}
	r, err := StartReader(top(sys), ReaderConfig{Conn: conn, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	g := &flowRig{r: r, ref: ref, h: h, peer: peer, to: transport.Addr{Port: conn.Port()}, id: id}
	t.Cleanup(func() {
		select {
		case <-h.gate:
		default:
			close(h.gate)
		}
		stopReader(t, r)
		ref.Stop(context.Background())
		conn.Close()
		peer.Close()
	})
	return g
}

func (g *flowRig) send(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if err := g.peer.Send(context.Background(), g.to, &transport.Message{ID: g.id, Seq: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

// Backpressure: a full mailbox holds the reader, which takes up again once
// the handler makes room; nothing is lost.
func TestFlowHoldThenSpace(t *testing.T) {
	t.Parallel()
	const n = 40
	g := newFlowRig(t, transport.CbID{Idx: 0x5320, Val: 1}, 8, time.Hour)
	g.send(t, n)
	waitFor(t, "the reader to hold", func() bool { return g.ref.Stats().Stalls >= 1 })
	close(g.h.gate)
	waitFor(t, "every message handled", func() bool { return g.ref.Stats().Handled == n })
	s := g.ref.Stats()
	checkInvariant(t, "after the hold", s)
	if s.Received != n || s.Handled != n || s.Dropped != 0 || s.Shed != 0 || s.Sheddings != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Past its stall timeout a callback sheds (counted, with loss notices
// equal to what was shed) until its mailbox drains; then it is back under
// flow control and loses nothing more.
func TestFlowShedsAfterStallTimeout(t *testing.T) {
	t.Parallel()
	const n = 60
	g := newFlowRig(t, transport.CbID{Idx: 0x5321, Val: 1}, 8, time.Millisecond)
	g.send(t, n)
	// All n read: the reader gave up waiting and shed the rest.
	waitFor(t, "the flood to be read", func() bool { return g.ref.Stats().Received == n })
	s := g.ref.Stats()
	if s.Sheddings != 1 || s.Shed == 0 || s.Shed != s.Dropped {
		t.Fatalf("while stuck: %+v", s)
	}
	close(g.h.gate)
	waitFor(t, "the mailbox to drain", func() bool { return g.ref.Stats().Queued == 0 })
	// Fewer than the mailbox holds, into an empty mailbox: queued again
	// (it rejoined), whatever the 1 ms stall timeout meets on a slow
	// machine.
	const m = 6
	g.send(t, m)
	waitFor(t, "the second round", func() bool { return g.ref.Stats().Received == n+m && g.ref.Stats().Queued == 0 })
	// The notice of what was shed comes before the next message queued.
	if lost := g.h.lostTo(handlers.LossMailbox); lost != s.Shed {
		t.Fatalf("loss notices for %d, %d shed", lost, s.Shed)
	}
	s2 := g.ref.Stats()
	checkInvariant(t, "after the second round", s2)
	if s2.Shed != s.Shed || s2.Handled != n+m-s.Shed {
		t.Fatalf("after draining: %+v (first round shed %d)", s2, s.Shed)
	}
}

// detachOnce ends a hold at once: the held message is shed, not waited for.
func TestFlowDetachEndsHold(t *testing.T) {
	t.Parallel()
	g := newFlowRig(t, transport.CbID{Idx: 0x5322, Val: 1}, 8, time.Hour)
	g.send(t, 40)
	waitFor(t, "the reader to hold", func() bool { return g.ref.Stats().Stalls >= 1 })
	g.ref.detachOnce()
	waitFor(t, "the hold to end", func() bool { return g.ref.Stats().Sheddings == 1 })
	waitFor(t, "everything read", func() bool { return g.ref.Stats().Received == 40 })
	if s := g.ref.Stats(); s.Shed == 0 || s.Shed != s.Dropped {
		t.Fatalf("stats %+v", s)
	}
}
