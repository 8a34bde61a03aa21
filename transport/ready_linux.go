//go:build linux

package transport

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// How a NetlinkConn waits for datagrams: on the Go poller while it waits,
// off it while it reads full batches.
//
// The poller keeps every descriptor it is given in its epoll instance,
// edge-triggered, until the descriptor is closed, so each datagram queued
// on a busy socket is an edge. When the receive loop is busy reading and
// another goroutine anywhere in the process waits on the poller (a
// listener, a pipe), an idle P's thread blocks in epoll_wait and is woken
// by every one of those edges, finds no goroutine to run and blocks
// again: measured, about one epoll_wait per ten datagrams, each with its
// context switches, on the CPU the sender and the handlers need. The
// socket-reader alone (no callback), against a raw recvmmsg loop, with a
// sender in a process of its own: CPU per message 1.00-1.05x without such
// a waiter in the process, 1.26-1.27x with one.
//
// So the socket itself (sock) is in an os.File the poller does not take
// (made while the descriptor was blocking), and what waits is a duplicate of
// it (watch), an os.File on the poller. Once receives have come back full
// for a while (leaveAfter messages), the queue is refilling faster than it
// is read: the loop leaves the poller (closing watch takes the duplicate
// out of the poller's epoll instance) and reads on without waiting; when
// it finds the queue empty it puts a new duplicate on the poller and waits
// there. That is a few system calls
// per stretch of full batches. A loop that waits after every batch
// (request/reply) stays on the poller and pays nothing: its wake-up is the
// poller's own. A connection uses two descriptors (one while its loop
// reads on off the poller). (An epoll instance of the connection's own, on
// the poller and told to stop watching the socket, did the same with one
// epoll_ctl each way, but every wake-up then went through two epoll
// instances: request/reply p50 8.5 -> 9.0 us.)

// watchSocket puts a duplicate of sfd on the poller, with the read deadline
// applied; called with the receive lock held, during a use of sock.
func (c *NetlinkConn) watchSocket(sfd uintptr) error {
	fd, err := unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	// The duplicate shares sock's open file, which is non-blocking (open):
	// os.NewFile puts it on the poller.
	f := os.NewFile(uintptr(fd), "netlink-connector") // non-blocking: on the poller
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.closed.Load() {
		f.Close()
		return ErrClosed
	}
	// The deadline, and a check that the file is on the poller: were it
	// not (the poller refused it), every wait on it would fail.
	if err := f.SetReadDeadline(c.waitDeadline); err != nil {
		f.Close()
		return err
	}
	c.watch, c.watchRaw = f, raw
	return nil
}

// unwatchSocket takes the duplicate off the poller (closing it); called
// with the receive lock held, outside a wait on it.
func (c *NetlinkConn) unwatchSocket() {
	c.pmu.Lock()
	f := c.watch
	c.watch, c.watchRaw = nil, nil
	c.pmu.Unlock()
	if f != nil {
		f.Close()
		c.unwatched++
	}
}

// setWaitDeadline sets the deadline a wait on the poller sees, now and on
// the next duplicate.
func (c *NetlinkConn) setWaitDeadline(t time.Time) error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.waitDeadline = t
	if c.watch != nil {
		return c.watch.SetReadDeadline(t)
	}
	return nil
}

// open creates the socket, bound to a port the kernel assigns.
func (c *NetlinkConn) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return err
	}
	// Blocking when os.NewFile looks, so that it leaves it off the
	// poller; non-blocking from then on (every call here passes
	// MSG_DONTWAIT anyway; a SyscallConn user gets EAGAIN, not a thread
	// blocked in the kernel).
	c.sock = os.NewFile(uintptr(fd), "netlink-connector")
	if c.raw, err = c.sock.SyscallConn(); err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("bind", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return os.NewSyscallError("getsockname", unix.EAFNOSUPPORT)
	}
	c.port = nl.Pid
	return nil
}

// leaveAfter is how many messages, read in full batches without the queue
// running empty, make the receive loop leave the poller: a few full batches
// of the default size, so that a burst that fills one batch, or a loop with
// a batch of one, does not pay for a duplicate per wait.
const leaveAfter = 128

// step is what a receive loop does after receiveStep.
type step uint8

const (
	stepRead step = iota // receive again at once: the batch came back full
	stepWait             // the queue is empty: wait
	stepStop             // the loop ends (with *err, or nil)
)

// receiveStep receives one batch on fd and hands it to deliver. idle is
// called before a wait that follows a receive finding the queue empty.
func (c *NetlinkConn) receiveStep(ctx context.Context, fd uintptr, b **Batch, deliver func(*Batch) *Batch, idle func(), err *error) step {
	switch {
	case c.closed.Load():
		*err = &OpError{Op: "receive", Err: ErrClosed}
		return stepStop
	case ctx.Err() != nil:
		*err = &OpError{Op: "receive", Err: ctx.Err()}
		return stepStop
	case c.deadlinePassed():
		*err = &OpError{Op: "receive", Err: os.ErrDeadlineExceeded}
		return stepStop
	}
	c.prepare(*b)
	if !c.recvmmsg(fd) {
		idle()
		return stepWait
	}
	more := c.recvErr != 0 || c.recvN == len(c.hdrs)
	if more {
		c.streak += c.recvN
	} else {
		c.streak = 0
	}
	if *err = c.finish(*b); *err != nil {
		return stepStop
	}
	if (*b).Datagrams == 0 && (*b).Lost == 0 {
		// Nothing to hand on: an ENOBUFS with no drop since the last
		// report (read on: the queue is full), or the queue found empty
		// while congested with none either (wait).
		if more {
			return stepRead
		}
		idle()
		return stepWait
	}
	if *b = deliver(*b); *b == nil {
		return stepStop
	}
	if !more {
		return stepWait // this batch emptied the queue
	}
	return stepRead
}
