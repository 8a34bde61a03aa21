package benchmarks

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/cnactor/cnactor/transport"
)

// gate holds a receive loop back: it may read only as many datagrams as
// were allowed. The drain method queues a chunk while the receiver is held
// and then allows exactly that chunk, so the timed part is receiving alone.
type gate struct {
	mu      sync.Mutex
	read    int64
	allowed int64 // < 0: no limit
	wake    chan struct{}
}

func newGate() *gate { return &gate{wake: make(chan struct{})} }

// allow lets n more datagrams through.
func (g *gate) allow(n int64) {
	g.mu.Lock()
	if g.allowed >= 0 {
		g.allowed += n
	}
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// open lifts the limit for good.
func (g *gate) open() {
	g.mu.Lock()
	g.allowed = -1
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// wait returns once something may be read, or false when done is closed.
func (g *gate) wait(done <-chan struct{}) bool {
	for {
		select {
		case <-done:
			return false
		default:
		}
		g.mu.Lock()
		if g.allowed < 0 || g.read < g.allowed {
			g.mu.Unlock()
			return true
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-done:
			return false
		}
	}
}

// passable reports, without waiting, whether something may be read.
func (g *gate) passable() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allowed < 0 || g.read < g.allowed
}

func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allowed < 0
}

func (g *gate) add(n int) {
	g.mu.Lock()
	g.read += int64(n)
	g.mu.Unlock()
}

// gatedConn is a transport.Conn whose ReceiveBatch waits at a gate: the
// connector under test runs unchanged on top of it.
type gatedConn struct {
	transport.Conn
	g *gate
}

func (c *gatedConn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	if !c.g.wait(ctx.Done()) {
		b.Reset()
		return &transport.OpError{Op: "receive", Err: ctx.Err()}
	}
	err := c.Conn.ReceiveBatch(ctx, b)
	if err == nil {
		c.g.add(b.Datagrams)
	}
	return err
}

// TryReceiveBatch finds nothing while the gate is shut, and counts what it
// reads: transport.ReceiveEach's generic loop receives with it too.
func (c *gatedConn) TryReceiveBatch(b *transport.Batch) (bool, error) {
	if !c.g.passable() {
		b.Reset()
		return false, nil
	}
	got, err := c.Conn.TryReceiveBatch(b)
	if got {
		c.g.add(b.Datagrams)
	}
	return got, err
}

// ReceiveEach keeps the wrapped Conn's own receive loop (see
// transport.ReceiveEach) once the gate is open for good, as in live runs; a
// gate that counts (drain runs) is asked before every ReceiveBatch.
func (c *gatedConn) ReceiveEach(ctx context.Context, b *transport.Batch, deliver func(*transport.Batch) *transport.Batch, idle func()) error {
	if idle != nil && !c.g.passable() {
		idle() // the gate is shut: the wait at it is a wait
	}
	if !c.g.wait(ctx.Done()) {
		return &transport.OpError{Op: "receive", Err: ctx.Err()}
	}
	if !c.g.isOpen() {
		return transport.ReceiveEach(ctx, batchesOnly{c}, b, deliver, idle)
	}
	return transport.ReceiveEach(ctx, c.Conn, b, func(b *transport.Batch) *transport.Batch {
		c.g.add(b.Datagrams)
		return deliver(b)
	}, idle)
}

// batchesOnly hides a Conn's ReceiveEach.
type batchesOnly struct{ transport.Conn }

// counter counts deliveries and signals once a target is reached.
type counter struct {
	n      atomic.Uint64
	target atomic.Uint64
	reach  chan struct{}
}

func newCounter() *counter {
	c := &counter{reach: make(chan struct{}, 1)}
	c.target.Store(^uint64(0))
	return c
}

func (c *counter) add(k uint64) {
	n := c.n.Add(k)
	if t := c.target.Load(); n >= t && n-k < t {
		select {
		case c.reach <- struct{}{}:
		default:
		}
	}
}

// expect arms the signal for total t; it drains a stale signal first.
func (c *counter) expect(t uint64) {
	select {
	case <-c.reach:
	default:
	}
	c.target.Store(t)
	if c.n.Load() >= t {
		select {
		case c.reach <- struct{}{}:
		default:
		}
	}
}
