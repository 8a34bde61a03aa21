//go:build linux

package transport

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a NetlinkConn waits for datagrams.
//
// The Go poller keeps every descriptor it is given in its epoll instance,
// edge-triggered, for the descriptor's whole life, so each datagram queued
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
// So the socket itself stays off the poller (a blocking descriptor in an
// os.File, which the poller does not take). An epoll instance of the
// connection's own, ready, watches it, level-triggered, and ready is on the
// poller: a receive with nothing queued waits on ready, and the datagram
// that comes wakes it as it would on the socket itself (ready's wait queue
// carries the wake-up to the poller's). Once a receive comes back full, the
// queue is refilling faster than it is read, and ready stops watching the
// socket (one epoll_ctl): datagrams queued meanwhile wake no one. Before
// the next wait it watches again (one more epoll_ctl, then one more look
// at the queue, for what came in between). Under steady load that is two
// system calls per stretch of full batches; a receive loop that waits
// after every batch (request/reply) never stops watching and pays nothing.

// open creates the socket, bound to a port the kernel assigns, and ready.
func (c *NetlinkConn) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return err
	}
	// Blocking: os.NewFile leaves it off the poller. Every call on it
	// passes MSG_DONTWAIT.
	c.sock = os.NewFile(uintptr(fd), "netlink-connector")
	if c.raw, err = c.sock.SyscallConn(); err != nil {
		return err
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
	efd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(efd, true); err != nil {
		unix.Close(efd)
		return os.NewSyscallError("fcntl", err)
	}
	c.ready = os.NewFile(uintptr(efd), "netlink-connector-ready") // non-blocking: on the poller
	if c.readyRaw, err = c.ready.SyscallConn(); err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(efd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	c.armed = true
	return nil
}

// receiveOrArm receives what is queued on sfd. When nothing is and ready
// (efd) is not watching the socket, it makes it watch and looks once more:
// a datagram queued before that would not wake a wait. An error arming is
// the receive's error.
func (c *NetlinkConn) receiveOrArm(sfd, efd uintptr) bool {
	if c.recvmmsg(sfd) {
		return true
	}
	if c.armed {
		return false
	}
	if errno := c.arm(sfd, efd, true); errno != 0 {
		c.recvN, c.recvErr = 0, errno
		c.dirty = len(c.hdrs)
		return true
	}
	return c.recvmmsg(sfd)
}

// arm makes ready watch the socket, or stop watching it; called with the
// receive lock held, during a use of both descriptors.
func (c *NetlinkConn) arm(sfd, efd uintptr, on bool) syscall.Errno {
	c.ev = unix.EpollEvent{Fd: int32(sfd)}
	if on {
		c.ev.Events = unix.EPOLLIN
	}
	_, _, errno := unix.Syscall6(unix.SYS_EPOLL_CTL, efd, unix.EPOLL_CTL_MOD, sfd, uintptr(unsafe.Pointer(&c.ev)), 0, 0)
	if errno == 0 {
		c.armed = on
		if !on {
			c.unwatched++
		}
	}
	return errno
}
