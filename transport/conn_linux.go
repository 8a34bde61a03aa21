//go:build linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetlinkConn is a NETLINK_CONNECTOR socket. Unlike the descriptors of
// os, net and mdlayher/netlink, the socket itself is not on the Go poller:
// a receive waits on a duplicate of it that is, and the receive loop takes
// that off the poller while it reads full batches (see ready_linux.go).
type NetlinkConn struct {
	sock        *os.File // the socket, not on the poller
	raw         syscall.RawConn
	port        uint32
	sendTimeout time.Duration
	closed      atomic.Bool
	deadline    atomic.Int64 // unix nanos of the read deadline, 0 for none
	sendOps     sync.Pool    // *sendOp

	// pmu guards watch (a duplicate of the socket on the poller, nil while
	// the receive loop is off it) and the deadline a wait on it sees. The
	// receive lock's holder alone replaces watch (and watchRaw).
	pmu          sync.Mutex
	watch        *os.File
	waitDeadline time.Time

	// Receive state, owned by the one ReceiveBatch running at a time.
	rmu       sync.Mutex
	bound     *Batch // the batch hdrs point into
	dirty     int    // hdrs[:dirty] may have been written by the kernel
	hdrs      []unix.Mmsghdr
	iovs      []unix.Iovec
	names     []unix.RawSockaddrNetlink
	ctrl      []byte
	recvFn    func(fd uintptr) bool
	watchFn   func(sfd uintptr) // puts the socket on the poller (watchErr)
	watchErr  error
	watchRaw  syscall.RawConn // watch's; nil while off the poller
	unwatched int             // times the loop left the poller
	streak    int             // messages read in full batches since the queue last ran empty
	tryFn     func(fd uintptr)
	tried     bool // the last tryFn read something (or an error)
	recvN     int
	recvErr   syscall.Errno
	lastDrops uint32 // drop counter at the last loss report
	congested bool   // ENOBUFS seen, queue not yet drained
	// The last two batches bound, see bind.
	binds    [2]binding
	bindNext int
}

type binding struct {
	b     *Batch
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrNetlink
	ctrl  []byte
	dirty int
}

var (
	_ Conn         = (*NetlinkConn)(nil)
	_ EachReceiver = (*NetlinkConn)(nil)
)

const ctrlSlot = (unix.SizeofCmsghdr + unix.SizeofUcred + 7) &^ 7

// Dial opens a NETLINK_CONNECTOR socket bound to a port id the kernel
// assigns, with SO_PASSCRED on (see WithCredentials) so that every message
// carries its sender's credentials.
func Dial(opts ...DialOption) (*NetlinkConn, error) {
	cfg := newDialConfig(opts)
	for _, g := range cfg.groups {
		if err := CheckGroup(g); err != nil {
			return nil, &OpError{Op: "dial", Err: err}
		}
	}
	c := &NetlinkConn{sendTimeout: cfg.sendTimeout}
	if err := c.open(); err != nil {
		c.Close()
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			err = errors.Join(ErrNotSupported, err)
		}
		return nil, &OpError{Op: "dial", Err: err}
	}
	c.recvFn = c.recvmmsg
	c.watchFn = func(sfd uintptr) { c.watchErr = c.watchSocket(sfd) }
	c.tryFn = func(fd uintptr) { c.tried = c.recvmmsg(fd) }
	fail := func(op string, err error) (*NetlinkConn, error) {
		c.Close()
		return nil, &OpError{Op: op, Err: err}
	}
	if !cfg.noCreds {
		var serr error
		if err := c.raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		}); err != nil || serr != nil {
			return fail("set-passcred", errors.Join(err, serr))
		}
	}
	if cfg.readBuffer > 0 {
		if err := c.SetReadBuffer(cfg.readBuffer); err != nil {
			return fail("set-read-buffer", err)
		}
	}
	for _, g := range cfg.groups {
		if err := c.JoinGroup(g); err != nil {
			return fail("join", err)
		}
	}
	d, err := c.readDrops()
	if err != nil {
		return fail("meminfo", err)
	}
	c.lastDrops = d
	return c, nil
}

// Port is the port id the kernel assigned.
func (c *NetlinkConn) Port() uint32 { return c.port }

// JoinGroup joins multicast group 1..32.
func (c *NetlinkConn) JoinGroup(group uint32) error {
	if err := CheckGroup(group); err != nil {
		return &OpError{Op: "join", Err: err}
	}
	if err := c.setsockopt(unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group)); err != nil {
		return &OpError{Op: "join", Err: c.mapErr(err)}
	}
	return nil
}

// LeaveGroup leaves multicast group 1..32.
func (c *NetlinkConn) LeaveGroup(group uint32) error {
	if err := CheckGroup(group); err != nil {
		return &OpError{Op: "leave", Err: err}
	}
	if err := c.setsockopt(unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, int(group)); err != nil {
		return &OpError{Op: "leave", Err: c.mapErr(err)}
	}
	return nil
}

// ReadBuffer returns the socket's receive buffer size as the kernel reports it.
func (c *NetlinkConn) ReadBuffer() (n int, err error) {
	cerr := c.raw.Control(func(fd uintptr) { n, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if cerr != nil {
		return 0, c.mapErr(cerr)
	}
	if err != nil {
		return 0, os.NewSyscallError("getsockopt", err)
	}
	return n, nil
}

// SetReadBuffer sets the receive buffer: SO_RCVBUFFORCE, which is not
// capped by net.core.rmem_max, or, if that is refused (no privilege, or a
// security policy), SO_RCVBUF.
func (c *NetlinkConn) SetReadBuffer(bytes int) error {
	err := c.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
	if err != nil && !errors.Is(err, ErrClosed) {
		err = c.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
	}
	return err
}

// setsockopt sets an integer option on the socket.
func (c *NetlinkConn) setsockopt(level, opt, value int) error {
	var err error
	if cerr := c.raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, value) }); cerr != nil {
		return c.mapErr(cerr)
	}
	if err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	return nil
}

// SetReadDeadline bounds a blocking ReceiveBatch, and ReceiveEach both in
// its waits and between batches; zero means no deadline.
func (c *NetlinkConn) SetReadDeadline(t time.Time) error {
	var at int64
	if !t.IsZero() {
		at = t.UnixNano()
	}
	c.deadline.Store(at)
	return c.mapErr(c.setWaitDeadline(t))
}

// deadlinePassed is for ReceiveEach between batches; a wait sees the
// deadline through the poller.
func (c *NetlinkConn) deadlinePassed() bool {
	at := c.deadline.Load()
	return at != 0 && time.Now().UnixNano() >= at
}

// SetOption sets a boolean netlink socket option (mdlayher/netlink's
// names for them).
func (c *NetlinkConn) SetOption(option netlink.ConnOption, enable bool) error {
	opt, ok := netlinkOptions[option]
	if !ok {
		return os.NewSyscallError("setsockopt", unix.ENOPROTOOPT)
	}
	v := 0
	if enable {
		v = 1
	}
	return c.setsockopt(unix.SOL_NETLINK, opt, v)
}

var netlinkOptions = map[netlink.ConnOption]int{
	netlink.PacketInfo:          unix.NETLINK_PKTINFO,
	netlink.BroadcastError:      unix.NETLINK_BROADCAST_ERROR,
	netlink.NoENOBUFS:           unix.NETLINK_NO_ENOBUFS,
	netlink.ListenAllNSID:       unix.NETLINK_LISTEN_ALL_NSID,
	netlink.CapAcknowledge:      unix.NETLINK_CAP_ACK,
	netlink.ExtendedAcknowledge: unix.NETLINK_EXT_ACK,
	netlink.GetStrictCheck:      unix.NETLINK_GET_STRICT_CHK,
}

// SyscallConn exposes the raw socket for options this package does not
// wrap. The socket is non-blocking but not on the Go poller: use Control;
// Read and Write do not wait (when f returns false they return an error).
func (c *NetlinkConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// Close closes the socket; a pending ReceiveBatch returns ErrClosed.
func (c *NetlinkConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.pmu.Lock()
	w := c.watch
	c.pmu.Unlock()
	if w != nil {
		w.Close() // first: it wakes a receive waiting (a duplicate: its error says nothing)
	}
	if c.sock == nil {
		return nil
	}
	return c.sock.Close()
}

func (c *NetlinkConn) mapErr(err error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return err
}

func groupMask(group uint32) uint32 {
	if group == 0 {
		return 0
	}
	return 1 << (group - 1)
}

// Send encodes m into one datagram and sends it. Sends never wait on the
// socket: a full unicast receiver does not wake the sender's descriptor, so
// EAGAIN is retried with a short backoff until ctx or the send timeout ends.
func (c *NetlinkConn) Send(ctx context.Context, to Addr, m *Message) error {
	if to.Group != 0 {
		if err := CheckGroup(to.Group); err != nil {
			return sendError(to, err)
		}
	}
	op, _ := c.sendOps.Get().(*sendOp)
	if op == nil {
		op = &sendOp{}
		op.fn = op.sendto // made once per pooled op: Send allocates nothing
	}
	defer c.sendOps.Put(op)
	var err error
	if op.buf, err = AppendDatagram(op.buf[:0], m, m.Seq, c.port); err != nil {
		return sendError(to, err)
	}
	op.sa = unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: to.Port, Groups: groupMask(to.Group)}
	var deadline time.Time
	for wait := 20 * time.Microsecond; ; {
		if err := c.raw.Control(op.fn); err != nil {
			return sendError(to, c.mapErr(err))
		}
		switch op.errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if to.Group != 0 {
				// The kernel multicast before it found to.Port full;
				// a retry would deliver the multicast again.
				return sendError(to, op.errno)
			}
		default:
			return sendError(to, op.errno)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(c.sendTimeout)
			if d, ok := ctx.Deadline(); ok {
				deadline = d
			}
		}
		if err := ctx.Err(); err != nil {
			return sendError(to, err)
		}
		if time.Now().After(deadline) {
			return sendError(to, ErrSendTimeout)
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Millisecond)
	}
}

// sendOp is one send's state, pooled with the closure raw.Write calls.
type sendOp struct {
	buf   []byte
	sa    unix.RawSockaddrNetlink
	errno syscall.Errno
	fn    func(fd uintptr)
}

// sendto never waits (see Send).
func (op *sendOp) sendto(fd uintptr) {
	_, _, op.errno = unix.Syscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&op.buf[0])), uintptr(len(op.buf)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&op.sa)), unix.SizeofSockaddrNetlink)
}

// sendError builds a send's error; to is a copy, so that Send's own
// argument does not escape.
func sendError(to Addr, err error) error {
	return &OpError{Op: "send", Addr: &to, Err: err}
}

// bind points the mmsghdrs at b's slots; it runs again only when the caller
// switches batches. The last two bindings are kept, so that a caller
// alternating two batches (the socket reader does) allocates nothing.
func (c *NetlinkConn) bind(b *Batch) {
	switch {
	case c.bound == nil:
	case c.binds[0].b == c.bound:
		c.binds[0].dirty = c.dirty
	case c.binds[1].b == c.bound:
		c.binds[1].dirty = c.dirty
	default:
		c.binds[c.bindNext] = binding{c.bound, c.hdrs, c.iovs, c.names, c.ctrl, c.dirty}
		c.bindNext ^= 1
	}
	for _, k := range c.binds {
		if k.b == b {
			c.bound, c.hdrs, c.iovs, c.names, c.ctrl, c.dirty = k.b, k.hdrs, k.iovs, k.names, k.ctrl, k.dirty
			return
		}
	}
	n := b.Cap()
	c.bound, c.dirty = b, n
	c.hdrs = make([]unix.Mmsghdr, n)
	c.iovs = make([]unix.Iovec, n)
	c.names = make([]unix.RawSockaddrNetlink, n)
	c.ctrl = make([]byte, n*ctrlSlot)
	for i := range c.hdrs {
		slot := b.Slot(i)
		c.iovs[i].Base = &slot[0]
		c.iovs[i].SetLen(len(slot))
		h := &c.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.names[i]))
		h.Iov = &c.iovs[i]
		h.Iovlen = 1
		h.Control = &c.ctrl[i*ctrlSlot]
	}
}

// recvmmsg receives what is queued on the socket, without waiting: false
// when nothing is (and no loss is left to report).
func (c *NetlinkConn) recvmmsg(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.hdrs[0])),
			uintptr(len(c.hdrs)), unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0) // MSG_TRUNC: msg_len is the datagram's real size
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if !c.congested {
				return false
			}
			// A full batch emptied the queue after an ENOBUFS report:
			// drops since that report are final now, and finish reports
			// them although nothing was read.
			c.recvN, c.recvErr = 0, 0
			return true
		}
		c.recvN, c.recvErr = int(n), errno
		if errno == 0 {
			c.dirty = int(n)
		} else {
			c.dirty = len(c.hdrs) // unknown: reset them all next time
		}
		return true
	}
}

// ReceiveBatch fills b with every datagram queued, up to b.Cap(), waiting
// for the first one. ENOBUFS does not end anything: it becomes b.Lost, the
// exact number of datagrams dropped (SO_MEMINFO drop counter).
func (c *NetlinkConn) ReceiveBatch(ctx context.Context, b *Batch) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.prepare(b)
	if err := ctx.Err(); err != nil {
		return &OpError{Op: "receive", Err: err}
	}
	defer c.wakeOnDone(ctx)()
	for {
		c.prepare(b)
		if c.watchRaw == nil {
			if err := c.raw.Control(c.watchFn); err != nil {
				return c.waitError(ctx, err)
			}
			if c.watchErr != nil {
				return c.waitError(ctx, c.watchErr)
			}
		}
		if err := c.watchRaw.Read(c.recvFn); err != nil {
			return c.waitError(ctx, err)
		}
		// Empty only after an ENOBUFS or a queue found empty while
		// congested, with no drop since the last report: go on.
		if err := c.finish(b); err != nil || b.Datagrams > 0 || b.Lost > 0 {
			return err
		}
	}
}

// wakeOnDone makes ctx's end wake a receive waiting on the poller; the
// returned func disarms it. Arming allocates: the receive loop of a
// connector passes a context that is never done and uses SetReadDeadline.
func (c *NetlinkConn) wakeOnDone(ctx context.Context) (disarm func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.setWaitDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired // then undo what it set, not before: the caller's deadline again
			var t time.Time
			if at := c.deadline.Load(); at != 0 {
				t = time.Unix(0, at)
			}
			c.setWaitDeadline(t)
		}
	}
}

func (c *NetlinkConn) waitError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &OpError{Op: "receive", Err: ctx.Err()}
	}
	return &OpError{Op: "receive", Err: c.mapErr(err)}
}

// ReceiveEach implements EachReceiver. While it waits after every batch
// the loop runs inside one Read on the poller, so the poller's readiness is
// never reset between batches. That is what makes it safe to wait right
// after a batch with room to spare, without a recvmmsg that finds the
// queue empty: recvmmsg returns short only when the queue ran empty, and
// then the next datagram marks the socket readable, or when an overrun's
// ENOBUFS arose during the call, whose error report already did (the
// kernel keeps the error for the next call). After an ENOBUFS report or a
// full batch the queue may hold more: no wait, and the loop leaves the
// poller until it next finds the queue empty (see ready_linux.go); a Read
// that starts on a fresh duplicate receives before it waits.
//
// deliver runs while the loop holds the socket, and Close waits for the
// loop to let go of it: deliver must not close c. Close, ctx and a passed
// read deadline end the loop between batches as well as in a wait.
func (c *NetlinkConn) ReceiveEach(ctx context.Context, b *Batch, deliver func(*Batch) *Batch, idle func()) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	defer c.wakeOnDone(ctx)()
	if idle == nil {
		idle = func() {}
	}
	var err error
	var next step
	onPoller := func(fd uintptr) bool {
		for {
			next = c.receiveStep(ctx, fd, &b, deliver, idle, &err)
			if next == stepRead && c.streak < leaveAfter {
				continue // full, but not for long yet: stay on the poller
			}
			return next != stepWait // stepRead: leave the poller; stepStop: end
		}
	}
	cerr := c.raw.Control(func(sfd uintptr) {
		for {
			if c.watchRaw == nil {
				// Off the poller: read on while batches come back full.
				if next = c.receiveStep(ctx, sfd, &b, deliver, idle, &err); next != stepWait {
					if next == stepStop {
						return
					}
					continue
				}
				if werr := c.watchSocket(sfd); werr != nil {
					err = &OpError{Op: "receive", Err: c.mapErr(werr)}
					return
				}
			}
			if rerr := c.watchRaw.Read(onPoller); rerr != nil {
				err = c.waitError(ctx, rerr)
				return
			}
			if next == stepStop {
				return
			}
			c.unwatchSocket() // stepRead
		}
	})
	if cerr != nil {
		return c.waitError(ctx, cerr)
	}
	return err
}

// TryReceiveBatch fills b with what is queued without waiting (one
// non-blocking recvmmsg) and reports whether there was anything: datagrams
// or a loss report. It ignores the read deadline.
func (c *NetlinkConn) TryReceiveBatch(b *Batch) (bool, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.prepare(b)
	if err := c.raw.Control(c.tryFn); err != nil {
		return false, &OpError{Op: "receive", Err: c.mapErr(err)}
	}
	if !c.tried {
		return false, nil // EAGAIN: the queue is empty
	}
	err := c.finish(b)
	return b.Datagrams > 0 || b.Lost > 0, err
}

// prepare resets b and the headers that point into it.
func (c *NetlinkConn) prepare(b *Batch) {
	b.Reset()
	if c.bound != b {
		c.bind(b)
	}
	// Only the headers the last receive filled need resetting: a receive
	// of one datagram does not pay for the batch's 64.
	for i := range c.dirty {
		c.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrNetlink
		c.hdrs[i].Hdr.SetControllen(ctrlSlot)
		c.hdrs[i].Hdr.Flags = 0
		c.hdrs[i].Len = 0
	}
	c.dirty = 0
}

// finish turns the result of the last recvmmsg into b's contents.
func (c *NetlinkConn) finish(b *Batch) error {
	switch c.recvErr {
	case 0:
	case unix.ENOBUFS:
		c.congested = true
		return c.reportDrops(b)
	default:
		return &OpError{Op: "receive", Err: c.recvErr}
	}
	for i := 0; i < c.recvN; i++ {
		h := &c.hdrs[i]
		slot := b.Slot(i)
		data := slot[:min(int(h.Len), len(slot))]
		from, group := c.names[i].Pid, uint32(0)
		if mask := c.names[i].Groups; mask != 0 {
			group = uint32(bits.TrailingZeros32(mask)) + 1
		}
		creds := parseCreds(c.ctrl[i*ctrlSlot : i*ctrlSlot+int(h.Hdr.Controllen)])
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			b.Datagrams++
			b.Bytes += len(data)
			b.AddMalformed(data, from, group, creds, &DecodeError{Err: ErrTruncated,
				Detail: fmt.Sprintf("a %d-byte datagram, %d bytes read", h.Len, len(data))})
			continue
		}
		b.AddDatagram(data, from, group, creds)
	}
	// A batch that did not fill up, or a receive that found the queue
	// empty, drained it: any drops that happened after the ENOBUFS report
	// are final now. If the counter
	// cannot be read, the batch is still delivered and the next receive
	// tries again: the counter is cumulative, nothing is lost.
	if c.congested && c.recvN < len(c.hdrs) {
		if err := c.reportDrops(b); err == nil {
			c.congested = false
		} else if c.recvN == 0 {
			return err // nothing read to deliver; no receive loop spins on it
		}
	}
	return nil
}

func (c *NetlinkConn) reportDrops(b *Batch) error {
	d, err := c.readDrops()
	if err != nil {
		return &OpError{Op: "meminfo", Err: c.mapErr(err)}
	}
	b.Lost += uint64(d - c.lastDrops) // the counter is a wrapping u32
	c.lastDrops = d
	return nil
}

// parseCreds reads SCM_CREDENTIALS from a control buffer without allocating.
func parseCreds(ctrl []byte) Credentials {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctrl) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_CREDENTIALS && l >= unix.SizeofCmsghdr+unix.SizeofUcred {
			u := (*unix.Ucred)(unsafe.Pointer(&ctrl[unix.SizeofCmsghdr]))
			return Credentials{PID: uint32(u.Pid), UID: u.Uid, GID: u.Gid}
		}
		ctrl = ctrl[min((l+7)&^7, len(ctrl)):]
	}
	return Credentials{}
}

// Drops returns the socket's cumulative drop counter (SK_MEMINFO_DROPS), the
// Drops column of /proc/net/netlink.
func (c *NetlinkConn) Drops() (uint64, error) {
	d, err := c.readDrops()
	if err != nil {
		return 0, &OpError{Op: "meminfo", Err: c.mapErr(err)}
	}
	return uint64(d), nil
}

func (c *NetlinkConn) readDrops() (uint32, error) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	err := c.raw.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return mem[unix.SK_MEMINFO_DROPS], nil
}
