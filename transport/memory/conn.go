package memory

import (
	"bytes"
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Conn is an endpoint of a Network. It implements transport.Conn: Send may
// be called from many goroutines, ReceiveBatch serialises its callers.
type Conn struct {
	net         *Network
	port        uint32
	creds       transport.Credentials
	sendTimeout time.Duration
	isKernel    bool
	groups      uint64 // bit g set: member of group g; guarded by net.mu

	rmu     sync.Mutex  // serialises ReceiveBatch
	scratch []*datagram // datagrams taken off the queue; owned under rmu

	mu        sync.Mutex // guards the fields below
	ring      []*datagram
	head, n   int    // first queued datagram and how many are queued
	lost      uint64 // drops not yet reported in a Batch
	drops     uint64 // all drops
	congested bool   // overflowed and not yet drained, as NETLINK_S_CONGESTED
	closed    bool
	waiters   int           // unicast senders waiting for room
	space     chan struct{} // closed, and replaced, when waiters may retry
	ready     chan struct{} // holds a token when there may be something to receive
	done      chan struct{} // closed by Close
	deadline  time.Time     // read deadline; zero for none
	dlChanged chan struct{} // closed, and replaced, when the deadline changes
}

var _ transport.Conn = (*Conn)(nil)

func newConn(n *Network, queueLen int, sendTimeout time.Duration, creds transport.Credentials) *Conn {
	return &Conn{
		net:         n,
		creds:       creds,
		sendTimeout: sendTimeout,
		ring:        make([]*datagram, queueLen),
		space:       make(chan struct{}),
		ready:       make(chan struct{}, 1),
		done:        make(chan struct{}),
		dlChanged:   make(chan struct{}),
	}
}

// datagram is one encoded message, shared read-only by every queue it is
// in and recycled when the last reference is released.
type datagram struct {
	buf   []byte
	from  uint32
	group uint32
	creds transport.Credentials
	refs  atomic.Int32
}

var datagrams = sync.Pool{New: func() any { return new(datagram) }}

func newDatagram() *datagram {
	d := datagrams.Get().(*datagram)
	d.refs.Store(1)
	return d
}

func (d *datagram) release() {
	if d.refs.Add(-1) == 0 {
		d.buf = d.buf[:0]
		datagrams.Put(d)
	}
}

// received decodes d for the kernel handler, with a private copy of the data.
func (d *datagram) received() transport.Received {
	var m transport.Message
	// Send encoded d, so it decodes; the kernel reads only the first cn_msg.
	_ = m.UnmarshalBinary(d.buf[transport.NlmsgHeaderLen:])
	m.Data = bytes.Clone(m.Data)
	return transport.Received{Message: m, From: d.from, Group: d.group, Creds: d.creds}
}

// Port is the port id the network assigned (0 for the kernel endpoint).
func (c *Conn) Port() uint32 { return c.port }

// JoinGroup joins multicast group 1..32. The kernel endpoint cannot join
// groups (EINVAL): it already receives every multicast sent with Port 0.
func (c *Conn) JoinGroup(group uint32) error {
	return c.membership("join", group, (*Network).join)
}

// LeaveGroup leaves multicast group 1..32; leaving a group the endpoint is
// not in does nothing, as with the kernel socket.
func (c *Conn) LeaveGroup(group uint32) error {
	return c.membership("leave", group, (*Network).leave)
}

func (c *Conn) membership(op string, group uint32, change func(*Network, *Conn, uint32)) error {
	if err := transport.CheckGroup(group); err != nil {
		return &transport.OpError{Op: op, Err: err}
	}
	if c.isKernel {
		return &transport.OpError{Op: op, Err: syscall.EINVAL}
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.isClosed() {
		return &transport.OpError{Op: op, Err: transport.ErrClosed}
	}
	change(c.net, c, group)
	return nil
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes the endpoint: it leaves its groups, frees its port, discards
// what is queued, makes a pending ReceiveBatch return transport.ErrClosed
// and senders waiting for room in its queue fail with ECONNREFUSED. Closing
// twice is a no-op.
func (c *Conn) Close() error {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for ; c.n > 0; c.n-- {
		c.ring[c.head].release()
		c.ring[c.head] = nil
		c.head = (c.head + 1) % len(c.ring)
	}
	close(c.done)
	c.mu.Unlock()
	if n.ports[c.port] == c {
		delete(n.ports, c.port)
	}
	for g := uint32(1); g <= transport.MaxGroup; g++ {
		n.leave(c, g)
	}
	return nil
}

// Send encodes m with transport.AppendDatagram and delivers it as the
// kernel would (see the package documentation): to the endpoint at to.Port,
// waiting while its queue is full, or, when to.Group is set, to every other
// member of the group without waiting and then to to.Port (EAGAIN if its
// queue is full). Errors are *transport.OpError wrapping
// transport.ErrInvalidGroup, ErrOversize, ErrClosed, ErrSendTimeout,
// syscall.ECONNREFUSED (no such port), syscall.EAGAIN or the context's
// error.
func (c *Conn) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	if to.Group != 0 {
		if err := transport.CheckGroup(to.Group); err != nil {
			return sendError(to, err)
		}
	}
	if c.isClosed() {
		return sendError(to, transport.ErrClosed)
	}
	d := newDatagram()
	defer d.release()
	buf, err := transport.AppendDatagram(d.buf[:0], m, m.Seq, c.port)
	d.buf = buf
	if err != nil {
		return sendError(to, err)
	}
	d.from, d.group, d.creds = c.port, to.Group, c.creds
	if to.Group != 0 {
		c.net.multicast(c, d)
		if c.isKernel {
			return nil // the kernel's multicasts go to the group only
		}
	}
	if err := c.unicast(ctx, to.Port, d); err != nil {
		return sendError(to, err)
	}
	return nil
}

// sendError builds the error of a failed Send; taking to by value keeps the
// successful path free of allocations.
func sendError(to transport.Addr, err error) error {
	return &transport.OpError{Op: "send", Addr: &to, Err: err}
}

func (c *Conn) unicast(ctx context.Context, port uint32, d *datagram) error {
	dst, ok := c.net.lookup(port)
	switch {
	case !ok:
		return nil // no kernel endpoint yet: discarded, like an unknown id
	case dst == nil:
		return syscall.ECONNREFUSED
	case dst.isKernel:
		if h := c.net.handler.Load(); h != nil {
			if dst.isClosed() {
				return syscall.ECONNREFUSED
			}
			(*h)(dst, d.received())
			return nil
		}
		if err := dst.offer(d, true); err == syscall.ECONNREFUSED {
			return err
		}
		return nil // the kernel drops what it cannot take; the sender never knows
	case c.isKernel:
		return dst.offer(d, true)
	case d.group != 0:
		// The multicast half is out: like the netlink conn, which would
		// have to send it again to wait, fail at once (uncounted).
		return dst.offer(d, false)
	default:
		return dst.push(ctx, c, d)
	}
}

// offer queues d without waiting. A full or congested queue reports EAGAIN
// and, when count is set (the kernel's netlink_overrun: multicasts and the
// kernel's own sends), counts a drop to report in the next Batch. A closed
// queue reports ECONNREFUSED.
func (c *Conn) offer(d *datagram, count bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return syscall.ECONNREFUSED
	}
	if c.n == len(c.ring) || c.congested {
		if !count {
			return syscall.EAGAIN
		}
		c.drops++
		c.lost++
		c.congested = true
		c.signal()
		return syscall.EAGAIN
	}
	c.enqueue(d)
	return nil
}

// push queues d, waiting while the queue is full or congested, until ctx is
// done, the sender's timeout expires (when ctx has no deadline), or either
// end closes.
func (c *Conn) push(ctx context.Context, from *Conn, d *datagram) error {
	var timeout <-chan time.Time
	for waited := false; ; waited = true {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return syscall.ECONNREFUSED
		}
		if c.n < len(c.ring) && !c.congested {
			c.enqueue(d)
			c.mu.Unlock()
			return nil
		}
		space := c.space
		c.waiters++
		c.mu.Unlock()
		if !waited {
			if _, ok := ctx.Deadline(); !ok {
				t := time.NewTimer(from.sendTimeout)
				defer t.Stop()
				timeout = t.C
			}
		}
		var err error
		select {
		case <-space:
		case <-c.done: // retried: reports ECONNREFUSED
		case <-from.done:
			err = transport.ErrClosed
		case <-ctx.Done():
			err = ctx.Err()
		case <-timeout:
			err = transport.ErrSendTimeout
		}
		c.mu.Lock()
		c.waiters--
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// enqueue appends d to the queue; c.mu must be held and there must be room.
func (c *Conn) enqueue(d *datagram) {
	d.refs.Add(1)
	c.ring[(c.head+c.n)%len(c.ring)] = d
	c.n++
	c.signal()
}

// signal wakes the receiver; c.mu must be held.
func (c *Conn) signal() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// ReceiveBatch resets b and fills it with up to b.Cap() queued datagrams,
// waiting until there is at least one or a loss to report, ctx is done, or
// the endpoint is closed (transport.ErrClosed). b.Lost is the number of
// datagrams dropped since the previous report. Draining the queue ends
// congestion.
func (c *Conn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	b.Reset()
	if err := ctx.Err(); err != nil {
		return &transport.OpError{Op: "receive", Err: err}
	}
	c.mu.Lock()
	for !c.closed {
		// As on a real socket, a passed deadline fails the read even if
		// something is queued.
		var timeout <-chan time.Time
		if !c.deadline.IsZero() {
			d := time.Until(c.deadline)
			if d <= 0 {
				c.mu.Unlock()
				return &transport.OpError{Op: "receive", Err: os.ErrDeadlineExceeded}
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		if c.n > 0 || c.lost > 0 {
			break
		}
		changed := c.dlChanged
		c.mu.Unlock()
		select {
		case <-c.ready:
		case <-c.done:
		case <-changed:
		case <-timeout:
		case <-ctx.Done():
			return &transport.OpError{Op: "receive", Err: ctx.Err()}
		}
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return &transport.OpError{Op: "receive", Err: transport.ErrClosed}
	}
	c.take(b)
	return nil
}

// TryReceiveBatch fills b with what is queued without waiting and reports
// whether there was anything (datagrams or a loss report).
func (c *Conn) TryReceiveBatch(b *transport.Batch) (bool, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	b.Reset()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, &transport.OpError{Op: "receive", Err: transport.ErrClosed}
	}
	if c.n == 0 && c.lost == 0 {
		c.mu.Unlock()
		return false, nil
	}
	c.take(b)
	return true, nil
}

// take moves up to b.Cap() queued datagrams into b; called with mu and rmu
// held, it releases mu.
func (c *Conn) take(b *transport.Batch) {
	k := min(c.n, b.Cap())
	for range k {
		c.scratch = append(c.scratch, c.ring[c.head])
		c.ring[c.head] = nil
		c.head = (c.head + 1) % len(c.ring)
	}
	c.n -= k
	b.Lost, c.lost = c.lost, 0
	if c.n == 0 {
		c.congested = false
	}
	if c.waiters > 0 && k > 0 && !c.congested {
		close(c.space)
		c.space = make(chan struct{})
	}
	c.mu.Unlock()

	for i, d := range c.scratch {
		slot := b.Slot(i)
		if len(d.buf) > len(slot) {
			b.Datagrams++
			b.Bytes += len(slot)
			copy(slot, d.buf)
			b.AddMalformed(slot, d.from, d.group, d.creds, &transport.DecodeError{Err: transport.ErrTruncated})
		} else {
			n := copy(slot, d.buf)
			b.AddDatagram(slot[:n], d.from, d.group, d.creds)
		}
		d.release()
		c.scratch[i] = nil
	}
	c.scratch = c.scratch[:0]
}

// SetReadDeadline bounds ReceiveBatch like a socket's deadline: once t has
// passed, ReceiveBatch fails with an error wrapping os.ErrDeadlineExceeded.
// A zero t means no deadline. It wakes a pending ReceiveBatch.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	return nil
}

// Drops is the cumulative number of datagrams the endpoint's queue dropped,
// counted as the kernel's SK_MEMINFO_DROPS is: one per datagram.
func (c *Conn) Drops() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, &transport.OpError{Op: "meminfo", Err: transport.ErrClosed}
	}
	return c.drops, nil
}
