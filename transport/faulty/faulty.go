package faulty

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Op names the Conn methods a Fault can hit.
type Op uint8

const (
	Receive  Op = iota // ReceiveBatch and TryReceiveBatch
	Send               // Send
	Close              // Close
	Join               // JoinGroup and LeaveGroup
	Drops              // Drops
	Deadline           // SetReadDeadline
	numOps
)

func (o Op) String() string {
	names := [...]string{"receive", "send", "close", "join", "drops", "deadline"}
	if int(o) < len(names) {
		return names[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// Fault is one injected fault: it hits the calls of Op numbered
// After+1 .. After+Times, counted from when the fault was added (Times 0:
// every call from After+1 on). A Fault is meant to do one thing; when it
// sets several fields they apply in the order Wait, Delay, Err, then the
// batch transforms.
//
// Wait, Delay and Err hit calls. The batch transforms (Truncate, Corrupt,
// Reorder and, for Receive, Drop) count only the receives that returned
// datagrams, so that "the third batch" means the third batch whatever
// empty TryReceiveBatch calls happened in between.
type Fault struct {
	Op    Op
	After int // calls of Op to let through first
	Times int // calls to hit; 0 means every call after After

	// Match, if set, limits a Send fault to the sends it accepts; the
	// others neither count nor are hit.
	Match func(to transport.Addr, m *transport.Message) bool

	// Wait blocks the call until the channel is closed, the call's context
	// is done or the Conn is closed (then the call fails with ErrClosed).
	Wait <-chan struct{}
	// Delay sleeps before the call, bounded the same way.
	Delay time.Duration
	// Err fails the call: the wrapped Conn is not called (except by
	// Close, which still closes it and then reports Err), and the error is
	// a *transport.OpError wrapping Err.
	Err error

	// Truncate cuts every datagram of the batch longer than Truncate bytes
	// to its first Truncate bytes and reports it in Batch.Malformed with
	// transport.ErrTruncated, as the kernel socket does for MSG_TRUNC.
	Truncate int
	// Corrupt rewrites a copy of every datagram of the batch; the result is
	// decoded as if it had arrived so (malformed results land in
	// Batch.Malformed).
	Corrupt func(datagram []byte) []byte
	// Reorder holds the batch back: it is delivered after the next batch
	// the wrapped Conn returns, or when a TryReceiveBatch finds nothing.
	Reorder bool
	// Drop discards what the call carries. On Receive the datagrams are
	// reported as Batch.Lost, like a kernel overflow; on Send, Send
	// reports success and sends nothing.
	Drop bool
}

func (f *Fault) transforms() bool {
	return f.Op == Receive && (f.Truncate > 0 || f.Corrupt != nil || f.Reorder || f.Drop)
}

// rule is a Fault with its own call count.
type rule struct {
	Fault
	seen int
}

// hit counts one call and reports whether the fault applies to it.
func (r *rule) hit() bool {
	r.seen++
	return r.seen > r.After && (r.Times == 0 || r.seen <= r.After+r.Times)
}

// Conn wraps a transport.Conn and injects the faults it is given. It is a
// transport.Conn itself; methods a fault does not hit go straight through.
type Conn struct {
	inner transport.Conn

	mu       sync.Mutex
	rules    []*rule
	calls    [numOps]int
	injected [numOps]int

	closeOnce sync.Once
	done      chan struct{} // closed by Close: ends every Wait and Delay

	recv receiver // the receive path's state, see receive.go
}

var _ transport.Conn = (*Conn)(nil)

// Wrap returns a Conn that forwards to inner and injects faults. inner is
// owned by the wrapper from now on: Close closes it.
func Wrap(inner transport.Conn, faults ...Fault) *Conn {
	c := &Conn{inner: inner, done: make(chan struct{})}
	c.recv.stage = transport.NewBatch(0)
	c.Inject(faults...)
	return c
}

// Inject adds faults; their calls are counted from now.
func (c *Conn) Inject(faults ...Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range faults {
		c.rules = append(c.rules, &rule{Fault: f})
	}
}

// Clear removes every fault; a call already waiting goes on waiting.
func (c *Conn) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules = nil
}

// Calls is how many calls of op were made.
func (c *Conn) Calls(op Op) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Injected is how many times a fault hit a call of op.
func (c *Conn) Injected(op Op) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.injected[op]
}

// Unwrap returns the wrapped Conn.
func (c *Conn) Unwrap() transport.Conn { return c.inner }

// match counts a call of op against the faults of that op (the call
// faults, or with data the batch transforms) and returns those that hit it.
func (c *Conn) match(op Op, data bool, to transport.Addr, m *transport.Message) []Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !data {
		c.calls[op]++
	}
	var hits []Fault
	for _, r := range c.rules {
		if r.Op != op || r.transforms() != data || r.Match != nil && (op != Send || !r.Match(to, m)) {
			continue
		}
		if r.hit() {
			hits = append(hits, r.Fault)
		}
	}
	if len(hits) > 0 {
		c.injected[op]++
	}
	return hits
}

// before applies the call faults of op: waits, delays and an error.
func (c *Conn) before(ctx context.Context, op Op, to transport.Addr, m *transport.Message) (drop bool, err error) {
	for _, f := range c.match(op, false, to, m) {
		if f.Wait != nil {
			if err := waitOn(ctx, c, f.Wait); err != nil {
				return false, err
			}
		}
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			err := waitOn(ctx, c, t.C)
			t.Stop()
			if err != nil {
				return false, err
			}
		}
		if f.Err != nil {
			return false, f.Err
		}
		drop = drop || f.Drop
	}
	return drop, nil
}

// waitOn returns when ch is ready, or fails when ctx is done or c closed.
func waitOn[T any](ctx context.Context, c *Conn, ch <-chan T) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return transport.ErrClosed
	}
}

// Port is the wrapped Conn's port.
func (c *Conn) Port() uint32 { return c.inner.Port() }

// JoinGroup joins group unless a Join fault hits the call.
func (c *Conn) JoinGroup(group uint32) error {
	if _, err := c.before(context.Background(), Join, transport.Addr{}, nil); err != nil {
		return &transport.OpError{Op: "join", Err: err}
	}
	return c.inner.JoinGroup(group)
}

// LeaveGroup leaves group unless a Join fault hits the call.
func (c *Conn) LeaveGroup(group uint32) error {
	if _, err := c.before(context.Background(), Join, transport.Addr{}, nil); err != nil {
		return &transport.OpError{Op: "leave", Err: err}
	}
	return c.inner.LeaveGroup(group)
}

// Send sends m unless a Send fault hits the call.
func (c *Conn) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	drop, err := c.before(ctx, Send, to, m)
	if err != nil {
		return &transport.OpError{Op: "send", Addr: &to, Err: err}
	}
	if drop {
		return nil
	}
	return c.inner.Send(ctx, to, m)
}

// SetReadDeadline sets the wrapped Conn's deadline unless a Deadline fault
// hits the call.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if _, err := c.before(context.Background(), Deadline, transport.Addr{}, nil); err != nil {
		return &transport.OpError{Op: "set-deadline", Err: err}
	}
	return c.inner.SetReadDeadline(t)
}

// Drops is the wrapped Conn's drop counter unless a Drops fault hits the
// call. Datagrams discarded by a Drop fault are not in it.
func (c *Conn) Drops() (uint64, error) {
	if _, err := c.before(context.Background(), Drops, transport.Addr{}, nil); err != nil {
		return 0, &transport.OpError{Op: "meminfo", Err: err}
	}
	return c.inner.Drops()
}

// Close closes the wrapped Conn and ends every Wait and Delay of other
// calls. A Close fault's Wait or Delay holds Close up first (a close that
// hangs); its Err is returned after the wrapped Conn is closed, as a
// close(2) that fails still releases the descriptor.
func (c *Conn) Close() error {
	_, ferr := c.before(context.Background(), Close, transport.Addr{}, nil)
	c.closeOnce.Do(func() { close(c.done) })
	err := c.inner.Close()
	if ferr != nil {
		return &transport.OpError{Op: "close", Err: ferr}
	}
	return err
}
