//go:build linux

package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Receiver names, as results show them.
const (
	NameRecvmmsg = "recvmmsg"
	NameMdlayher = "mdlayher"
	NameCnactor  = "cnactor"
	// NameMemoryRaw is the memory transport's baseline: a bare
	// ReceiveBatch loop on a memory endpoint.
	NameMemoryRaw = "memory-raw"
)

// receiver is one way of receiving the benchmark's traffic. Its loop runs
// from creation, held back by its gate.
type receiver interface {
	name() string
	addr() transport.Addr
	gate() *gate
	counter() *counter
	// kernelDrops is the receive queue's drop counter since creation.
	kernelDrops() uint64
	// otherLoss is every message counted but not delivered after the
	// socket (mailbox drops, rejections, ...), since creation.
	otherLoss() uint64
	books(sent uint64) Accounting
	close() error
}

// rawRecv is the baseline: recvmmsg in batches of 64 on a blocking socket,
// asking for the same information cnactor asks for (sender address and
// credentials); it counts datagrams and decodes nothing.
type rawRecv struct {
	fd     int
	port   uint32
	group  uint32
	g      *gate
	c      *counter
	drops0 uint32
	done   chan struct{}
	exited chan struct{}
	err    error
}

func newRawRecv(group uint32, readBuffer int) (*rawRecv, error) {
	fd, port, err := openRawSocket()
	if err != nil {
		return nil, err
	}
	r := &rawRecv{fd: fd, port: port, group: group, g: newGate(), c: newCounter(), done: make(chan struct{}), exited: make(chan struct{})}
	fail := func(err error) (*rawRecv, error) { unix.Close(fd); return nil, err }
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer); err != nil {
		return fail(fmt.Errorf("SO_RCVBUFFORCE: %w", err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fail(err)
	}
	if err := setTimeout(fd, unix.SO_RCVTIMEO, 100*time.Millisecond); err != nil {
		return fail(err)
	}
	if group != 0 {
		if err := joinGroup(fd, group); err != nil {
			return fail(fmt.Errorf("join group %d: %w", group, err))
		}
	}
	if r.drops0, err = socketDrops(uintptr(fd)); err != nil {
		return fail(err)
	}
	go r.loop()
	return r, nil
}

const ctrlSlot = (unix.SizeofCmsghdr + unix.SizeofUcred + 7) &^ 7

func (r *rawRecv) loop() {
	defer close(r.exited)
	const n = 64
	hdrs := make([]unix.Mmsghdr, n)
	iovs := make([]unix.Iovec, n)
	names := make([]unix.RawSockaddrNetlink, n)
	ctrl := make([]byte, n*ctrlSlot)
	for i := range hdrs {
		buf := make([]byte, transport.MaxDatagram)
		iovs[i].Base = &buf[0]
		iovs[i].SetLen(len(buf))
		hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.Iovlen = 1
		hdrs[i].Hdr.Control = &ctrl[i*ctrlSlot]
	}
	for r.g.wait(r.done) {
		for i := range hdrs {
			hdrs[i].Hdr.Namelen = unix.SizeofSockaddrNetlink
			hdrs[i].Hdr.SetControllen(ctrlSlot)
		}
		got, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&hdrs[0])), n, unix.MSG_WAITFORONE, 0, 0)
		switch errno {
		case 0:
			r.g.add(int(got))
			r.c.add(uint64(got))
		case unix.EAGAIN, unix.EINTR, unix.ENOBUFS: // timeout (to look at done), overflow (counted by SO_MEMINFO)
		default:
			select {
			case <-r.done:
			default:
				r.err = errno
			}
			return
		}
	}
}

func (r *rawRecv) name() string { return NameRecvmmsg }
func (r *rawRecv) addr() transport.Addr {
	if r.group != 0 {
		return transport.Addr{Group: r.group}
	}
	return transport.Addr{Port: r.port}
}
func (r *rawRecv) gate() *gate       { return r.g }
func (r *rawRecv) counter() *counter { return r.c }
func (r *rawRecv) kernelDrops() uint64 {
	d, _ := socketDrops(uintptr(r.fd))
	return uint64(d - r.drops0)
}
func (r *rawRecv) otherLoss() uint64 { return 0 }
func (r *rawRecv) books(sent uint64) Accounting {
	return Accounting{Receiver: r.name(), Sent: sent, Delivered: r.c.n.Load(), KernelDrops: r.kernelDrops()}
}
func (r *rawRecv) close() error {
	close(r.done)
	<-r.exited // SO_RCVTIMEO wakes it
	unix.Close(r.fd)
	return r.err
}

// mdlRecv is what a straightforward Go client does: mdlayher/netlink's
// Conn.Receive in a loop, decoding each cn_msg.
type mdlRecv struct {
	conn   *netlink.Conn
	group  uint32
	g      *gate
	c      *counter
	drops0 uint32
	done   chan struct{}
	exited chan struct{}
	mu     sync.Mutex
	err    error
}

func newMdlRecv(group uint32, readBuffer int) (*mdlRecv, error) {
	conn, err := netlink.Dial(unix.NETLINK_CONNECTOR, &netlink.Config{})
	if err != nil {
		return nil, err
	}
	r := &mdlRecv{conn: conn, group: group, g: newGate(), c: newCounter(), done: make(chan struct{}), exited: make(chan struct{})}
	fail := func(err error) (*mdlRecv, error) { conn.Close(); return nil, err }
	if err := conn.SetReadBuffer(readBuffer); err != nil {
		return fail(err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		return fail(errors.Join(err, serr))
	}
	if group != 0 {
		if err := conn.JoinGroup(group); err != nil {
			return fail(err)
		}
	}
	if r.drops0, err = rawConnDrops(rc); err != nil {
		return fail(err)
	}
	go r.loop()
	return r, nil
}

func (r *mdlRecv) loop() {
	defer close(r.exited)
	for r.g.wait(r.done) {
		msgs, err := r.conn.Receive()
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				continue // overflow: counted by SO_MEMINFO
			}
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
		var m transport.Message
		k := 0
		for i := range msgs {
			if m.UnmarshalBinary(msgs[i].Data) == nil {
				k++
			}
		}
		r.g.add(len(msgs))
		r.c.add(uint64(k))
	}
}

func (r *mdlRecv) name() string { return NameMdlayher }
func (r *mdlRecv) addr() transport.Addr {
	if r.group != 0 {
		return transport.Addr{Group: r.group}
	}
	return transport.Addr{Port: r.conn.PID()}
}
func (r *mdlRecv) gate() *gate       { return r.g }
func (r *mdlRecv) counter() *counter { return r.c }
func (r *mdlRecv) kernelDrops() uint64 {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return 0
	}
	d, _ := rawConnDrops(rc)
	return uint64(d - r.drops0)
}
func (r *mdlRecv) otherLoss() uint64 { return 0 }
func (r *mdlRecv) books(sent uint64) Accounting {
	return Accounting{Receiver: r.name(), Sent: sent, Delivered: r.c.n.Load(), KernelDrops: r.kernelDrops()}
}
func (r *mdlRecv) close() error {
	close(r.done)
	r.conn.SetReadDeadline(time.Unix(1, 0))
	<-r.exited
	r.conn.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// cnRecv is a cnactor Connector with one counting callback per id, on a
// gated socket (or memory endpoint).
type cnRecv struct {
	c      *cnactor.Connector
	nc     *transport.NetlinkConn // netlink transport
	mc     *memory.Conn           // memory transport
	ids    []transport.CbID
	group  uint32
	g      *gate
	cnt    *counter
	perID  []*counter
	stall  chan struct{} // closed to release the stalled handler (overload)
	drops0 uint64
}

type cnOptions struct {
	ids        []transport.CbID
	group      uint32
	readBuffer int
	mailbox    int
	stall      bool            // the first id's handler blocks until release
	batch      bool            // handlers are handlers.BatchHandlers (a run per call)
	network    *memory.Network // memory transport if set
}

func newCnRecv(o cnOptions) (*cnRecv, error) {
	r := &cnRecv{ids: o.ids, group: o.group, g: newGate(), cnt: newCounter(), stall: make(chan struct{})}
	var conn transport.Conn
	if o.network != nil {
		mc, err := o.network.Dial()
		if err != nil {
			return nil, err
		}
		r.mc, conn = mc, mc
	} else {
		nc, err := transport.Dial(transport.WithReadBuffer(o.readBuffer))
		if err != nil {
			return nil, err
		}
		r.nc, conn = nc, nc
	}
	var err error
	if r.drops0, err = conn.Drops(); err != nil {
		conn.Close()
		return nil, err
	}
	opts := []cnactor.Option{cnactor.WithTransport(&gatedConn{Conn: conn, g: r.g})}
	if o.mailbox > 0 {
		opts = append(opts, cnactor.WithDefaultMailbox(o.mailbox, cnactor.Backpressure))
	}
	c, err := cnactor.New(opts...)
	if err != nil {
		return nil, err
	}
	r.c = c
	for i, id := range o.ids {
		pc := newCounter()
		r.perID = append(r.perID, pc)
		var h handlers.Handler = handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
			pc.add(1)
			r.cnt.add(1)
			return nil
		})
		if o.batch {
			h = batchCounter{pc: pc, all: r.cnt}
		}
		if o.stall && i == 0 {
			h = handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
				<-r.stall
				pc.add(1)
				r.cnt.add(1)
				return nil
			})
		}
		if err := c.AddCallback(id, fmt.Sprintf("bench-%d", i), h); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

func (r *cnRecv) name() string { return NameCnactor }
func (r *cnRecv) addr() transport.Addr {
	if r.group != 0 {
		return transport.Addr{Group: r.group}
	}
	return transport.Addr{Port: r.c.Port()}
}
func (r *cnRecv) gate() *gate       { return r.g }
func (r *cnRecv) counter() *counter { return r.cnt }
func (r *cnRecv) kernelDrops() uint64 {
	var d uint64
	if r.nc != nil {
		d, _ = r.nc.Drops()
	} else {
		d, _ = r.mc.Drops()
	}
	if r.nc != nil {
		return uint64(uint32(d) - uint32(r.drops0)) // a wrapping u32
	}
	return d - r.drops0
}

func (r *cnRecv) otherLoss() uint64 {
	a := r.booksNow(0)
	return a.Accounted() - a.Delivered - a.KernelDrops
}

func (r *cnRecv) books(sent uint64) Accounting {
	// The callbacks' Handled counts a message once Receive has returned,
	// just after our handler counted it: let it catch up.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		a := r.booksNow(sent)
		if a.Delivered >= r.cnt.n.Load() || time.Now().After(deadline) {
			return a
		}
	}
}

func (r *cnRecv) booksNow(sent uint64) Accounting {
	st := r.c.Stats()
	a := Accounting{
		Receiver: r.name(), Sent: sent, KernelDrops: r.kernelDrops(),
		Unknown: st.Reader.Unknown, Malformed: st.Reader.Malformed, Intercepted: st.Reader.Intercepted,
		ReaderKernelDrops: st.Reader.KernelDrops,
	}
	for _, cb := range st.Callbacks {
		a.Delivered += cb.Handled
		a.MailboxDrops += cb.Dropped
		a.Failed += cb.Failed
		a.Rejected += cb.Rejected
	}
	return a
}

// loopMoves is how many times a handler run on the receive loop held it
// past its limit, so that the loop moved to another goroutine and that
// handler ran on its own for a while (actors.ReaderStats.LoopMoves).
func (r *cnRecv) loopMoves() uint64 { return r.c.Stats().Reader.LoopMoves }

func (r *cnRecv) release() {
	select {
	case <-r.stall:
	default:
		close(r.stall)
	}
}

func (r *cnRecv) close() error {
	r.release()
	r.g.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.c.Close(ctx)
}

// memRecv is the memory transport's baseline: a ReceiveBatch loop on a
// bare endpoint, counting messages.
type memRecv struct {
	conn   *memory.Conn
	group  uint32
	g      *gate
	c      *counter
	done   chan struct{}
	exited chan struct{}
}

func newMemRecv(n *memory.Network, group uint32) (*memRecv, error) {
	conn, err := n.Dial()
	if err != nil {
		return nil, err
	}
	if group != 0 {
		if err := conn.JoinGroup(group); err != nil {
			conn.Close()
			return nil, err
		}
	}
	r := &memRecv{conn: conn, group: group, g: newGate(), c: newCounter(), done: make(chan struct{}), exited: make(chan struct{})}
	go r.loop()
	return r, nil
}

func (r *memRecv) loop() {
	defer close(r.exited)
	b := transport.NewBatch(0)
	ctx := context.Background()
	for r.g.wait(r.done) {
		if err := r.conn.ReceiveBatch(ctx, b); err != nil {
			return
		}
		r.g.add(b.Datagrams)
		r.c.add(uint64(len(b.Messages)))
	}
}

func (r *memRecv) name() string { return NameMemoryRaw }
func (r *memRecv) addr() transport.Addr {
	if r.group != 0 {
		return transport.Addr{Group: r.group}
	}
	return transport.Addr{Port: r.conn.Port()}
}
func (r *memRecv) gate() *gate       { return r.g }
func (r *memRecv) counter() *counter { return r.c }
func (r *memRecv) kernelDrops() uint64 {
	d, _ := r.conn.Drops()
	return d
}
func (r *memRecv) otherLoss() uint64 { return 0 }
func (r *memRecv) books(sent uint64) Accounting {
	return Accounting{Receiver: r.name(), Sent: sent, Delivered: r.c.n.Load(), KernelDrops: r.kernelDrops()}
}
func (r *memRecv) close() error {
	close(r.done)
	r.conn.Close()
	<-r.exited
	return nil
}

// batchCounter is the batch path's counting handler: one update per run.
type batchCounter struct{ pc, all *counter }

func (b batchCounter) Receive(handlers.Context, *transport.Message) error {
	b.pc.add(1)
	b.all.add(1)
	return nil
}

func (b batchCounter) ReceiveBatch(_ handlers.CallbackContext, msgs []transport.Received) (int, error) {
	b.pc.add(uint64(len(msgs)))
	b.all.add(uint64(len(msgs)))
	return len(msgs), nil
}
