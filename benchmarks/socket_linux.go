//go:build linux

package benchmarks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

// drainBuffer is the receive buffer the throughput drain asks for with
// SO_RCVBUFFORCE (the kernel doubles it): room for a whole chunk.
const drainBuffer = 256 << 20

// readBufferFor is the receive buffer every receiver of a run gets: with a
// sender running alongside, cnactor's default (cnactor.DefaultReadBuffer,
// as users run it), so that a full queue makes a unicast sender wait and
// drops multicast in the kernel, as it would outside the benchmark; a
// queue of 512 MiB would absorb more than a slot of traffic and the live
// rows would never see either. The drain needs drainBuffer.
func readBufferFor(cfg *Config) int {
	if cfg.Method == Drain {
		return drainBuffer
	}
	return cnactor.DefaultReadBuffer
}

// openRawSocket opens a blocking NETLINK_CONNECTOR socket bound to a port the
// kernel assigns.
func openRawSocket() (fd int, port uint32, err error) {
	fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	if err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("getsockname: %w", err)
	}
	return fd, sa.(*unix.SockaddrNetlink).Pid, nil
}

// joinGroup is NETLINK_ADD_MEMBERSHIP.
func joinGroup(fd int, group uint32) error {
	return unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(group))
}

func setTimeout(fd, opt int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv)
}

// socketDrops reads SK_MEMINFO_DROPS, the socket's drop counter.
func socketDrops(fd uintptr) (uint32, error) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, errno
	}
	return mem[unix.SK_MEMINFO_DROPS], nil
}

func rawConnDrops(rc syscall.RawConn) (uint32, error) {
	var d uint32
	var serr error
	if err := rc.Control(func(fd uintptr) { d, serr = socketDrops(fd) }); err != nil {
		return 0, err
	}
	return d, serr
}

// groupLockDir is where internal/testutil.Group takes its flocks: the
// benchmarks use the same locks, so that they never share a group with a
// test running at the same time.
var groupLockDir = filepath.Join(os.TempDir(), "cnactor-test-groups")

// ReserveGroups reserves n multicast groups in 2..32 until release is
// called, with the same cross-process flocks as the kernel tests.
func ReserveGroups(n int) (groups []uint32, release func(), err error) {
	if err := os.MkdirAll(groupLockDir, 0o777); err != nil {
		return nil, nil, err
	}
	var files []*os.File
	release = func() {
		for _, f := range files {
			f.Close()
		}
	}
	for g := uint32(32); g >= 2 && len(groups) < n; g-- { // from the top: tests take from the bottom
		f, err := os.OpenFile(filepath.Join(groupLockDir, fmt.Sprint(g)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			release()
			return nil, nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue
			}
			release()
			return nil, nil, err
		}
		files = append(files, f)
		groups = append(groups, g)
	}
	if len(groups) < n {
		release()
		return nil, nil, fmt.Errorf("benchmarks: fewer than %d free multicast groups", n)
	}
	return groups, release, nil
}

// rawSender sends pre-encoded datagrams at full rate with sendmmsg from a
// blocking socket of its own: a full unicast receiver makes it wait in the
// kernel (bounded by SO_SNDTIMEO, so that it can stop); a multicast never
// waits, the kernel drops what does not fit.
type rawSender struct {
	fd    int
	port  uint32
	dgs   [][]byte // one per id
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	sa    unix.RawSockaddrNetlink
	sent  atomic.Uint64 // every datagram sendmmsg accepted
	ids   []uint64      // sent per id (index), owned by the sending goroutine
	errno syscall.Errno // the last unexpected error
}

const sendBatch = 64

func newRawSender(ids []transport.CbID, payload int) (*rawSender, error) {
	fd, port, err := openRawSocket()
	if err != nil {
		return nil, err
	}
	if err := setTimeout(fd, unix.SO_SNDTIMEO, 50*time.Millisecond); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &rawSender{fd: fd, port: port, hdrs: make([]unix.Mmsghdr, sendBatch), iovs: make([]unix.Iovec, sendBatch), ids: make([]uint64, len(ids))}
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i)
	}
	for i, id := range ids {
		dg, err := transport.AppendDatagram(nil, &transport.Message{ID: id, Seq: uint32(i), Data: data}, uint32(i), port)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		s.dgs = append(s.dgs, dg)
	}
	for j := range s.hdrs {
		dg := s.dgs[j%len(s.dgs)]
		s.iovs[j].Base = &dg[0]
		s.iovs[j].SetLen(len(dg))
		h := &s.hdrs[j].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.sa))
		h.Namelen = unix.SizeofSockaddrNetlink
		h.Iov = &s.iovs[j]
		h.Iovlen = 1
	}
	return s, nil
}

func (s *rawSender) close() { unix.Close(s.fd) }

// target sets where the next sends go.
func (s *rawSender) target(a transport.Addr) {
	s.sa = unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: a.Port}
	if a.Group != 0 {
		s.sa.Groups = 1 << (a.Group - 1)
	}
}

// send sends up to n datagrams (cycling through the ids) and returns how
// many went out; it stops early when the receiver stays full past the send
// timeout (unicast) and when stop is set.
func (s *rawSender) send(n int, stop *atomic.Bool) int {
	done := 0
	for done < n && (stop == nil || !stop.Load()) {
		k := min(n-done, sendBatch)
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(k), 0, 0, 0)
		switch errno {
		case 0:
			done += int(r)
			s.sent.Add(uint64(r))
			for j := range int(r) {
				s.ids[j%len(s.ids)]++
			}
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if stop == nil {
				return done // a full receiver: the caller decides
			}
			continue
		}
		s.errno = errno
		return done
	}
	return done
}

// fill is drain's: exactly n datagrams, or fewer if the receiver's queue
// cannot hold them (then the rest were never sent).
func (s *rawSender) fill(n int) int {
	return s.send(n, nil)
}

// run sends until stop is set.
func (s *rawSender) run(stop *atomic.Bool, _ <-chan struct{}) {
	for !stop.Load() {
		s.send(1<<30, stop)
		if s.errno != 0 {
			return
		}
	}
}
