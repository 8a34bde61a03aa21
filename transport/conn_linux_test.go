//go:build linux

package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

var procID = transport.CbID{Idx: 1, Val: 1}

func procOp(op uint32) []byte { return binary.NativeEndian.AppendUint32(nil, op) }

// TestIntegrationProcConnector subscribes to the real proc connector the
// way the kernel wants it (LISTEN to port 0, no groups) and finds the fork
// and exit events of a child this test spawns.
func TestIntegrationProcConnector(t *testing.T) {
	testutil.KernelConnector(t)
	c, err := transport.Dial(transport.WithGroups(1), transport.WithReadBuffer(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listen := transport.Message{ID: procID, Seq: 1, Ack: 0x5eed, Data: procOp(1)}
	if err := c.Send(ctx, transport.Kernel(), &listen); err != nil {
		t.Fatal(err)
	}
	defer c.Send(context.Background(), transport.Kernel(), &transport.Message{ID: procID, Seq: 2, Data: procOp(2)})

	cmd := exec.Command("/bin/sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	cmd.Wait()

	const fork, exit = 0x1, 0x80000000
	var sawFork, sawExit bool
	b := transport.NewBatch(0)
	for !sawFork || !sawExit {
		if err := c.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("waiting for events of pid %d: %v", pid, err)
		}
		if b.Lost > 0 {
			t.Logf("lost %d datagrams", b.Lost)
		}
		for _, m := range b.Messages {
			if m.From != 0 || m.Group != 1 || m.Creds != (transport.Credentials{}) {
				t.Fatalf("proc event from port %d group %d creds %+v, want the kernel on group 1", m.From, m.Group, m.Creds)
			}
			if m.ID != procID || len(m.Data) < 40 {
				continue
			}
			u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(m.Data[off:]) }
			switch u32(0) {
			case fork:
				if u32(24) == pid {
					sawFork = true
					// parent_pid (16) is the forking thread; parent_tgid (20) the process.
					if u32(20) != uint32(os.Getpid()) {
						t.Errorf("fork parent tgid = %d, want %d", u32(20), os.Getpid())
					}
				}
			case exit:
				if u32(16) == pid && u32(20) == pid {
					sawExit = true
					if code := u32(24); code != 3<<8 {
						t.Errorf("exit code = %#x, want %#x", code, 3<<8)
					}
				}
			}
		}
	}
}

// TestIntegrationForgedHeaderPid checks that From is the socket address, not
// the nlmsg_pid a sender writes into its header.
func TestIntegrationForgedHeaderPid(t *testing.T) {
	testutil.Privileged(t)
	rx, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	realPort := sa.(*unix.SockaddrNetlink).Pid
	// nlmsg_pid claims to be the kernel (0).
	dgram, _ := transport.AppendDatagram(nil, &transport.Message{ID: transport.CbID{9, 9}, Data: []byte("forged")}, 0, 0)
	if err := unix.Sendto(fd, dgram, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: rx.Port()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := transport.NewBatch(4)
	if err := rx.ReceiveBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 1 || b.Messages[0].From != realPort || b.Messages[0].Creds.PID != uint32(os.Getpid()) {
		t.Fatalf("got %+v, want one message from port %d", b.Messages, realPort)
	}
}

// TestIntegrationMalformedFromPeer sends broken datagrams from a raw socket:
// each is reported in Batch.Malformed and the next good one still arrives.
func TestIntegrationMalformedFromPeer(t *testing.T) {
	testutil.Privileged(t)
	rx, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: rx.Port()}
	good, _ := transport.AppendDatagram(nil, &transport.Message{ID: transport.CbID{9, 9}, Data: []byte("good")}, 0, 0)
	badLen := append([]byte(nil), good...)
	binary.NativeEndian.PutUint16(badLen[transport.NlmsgHeaderLen+16:], 200)
	for _, d := range [][]byte{good[:10], badLen, good} {
		if err := unix.Sendto(fd, d, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var malformed []error
	b := transport.NewBatch(8)
	for len(malformed) < 2 || len(b.Messages) == 0 {
		if err := rx.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("after %v: %v", malformed, err)
		}
		for _, m := range b.Malformed {
			malformed = append(malformed, m.Err)
		}
	}
	if !errors.Is(malformed[0], transport.ErrShortDatagram) || !errors.Is(malformed[1], transport.ErrCnMsgLen) {
		t.Fatalf("malformed = %v", malformed)
	}
	if string(b.Messages[0].Data) != "good" {
		t.Fatalf("got %q", b.Messages[0].Data)
	}
}

func TestIntegrationReadDeadline(t *testing.T) {
	testutil.KernelConnector(t)
	c, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	err = c.ReceiveBatch(context.Background(), transport.NewBatch(1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	var op *transport.OpError
	if !errors.As(err, &op) || !op.Timeout() {
		t.Fatalf("err = %#v, want a timeout *OpError", err)
	}
}

func TestIntegrationJoinInvalidGroup(t *testing.T) {
	testutil.KernelConnector(t)
	if _, err := transport.Dial(transport.WithGroups(33)); !errors.Is(err, transport.ErrInvalidGroup) {
		t.Fatalf("Dial with group 33: %v", err)
	}
}

// recvmmsgBaseline is the raw loop the transport is measured against: the
// same syscall, the same batch size, no decoding.
// With withSender it also asks, as the transport does, for the sender's
// address and the control data (credentials), and nothing more.
func recvmmsgBaseline(b *testing.B, fd int, n int, withSender bool) {
	hdrs := make([]unix.Mmsghdr, 64)
	bufs := make([][]byte, 64)
	iovs := make([]unix.Iovec, 64)
	names := make([]unix.RawSockaddrNetlink, 64)
	ctrl := make([]byte, 64*64)
	for i := range hdrs {
		bufs[i] = make([]byte, transport.MaxDatagram)
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.Iovlen = 1
	}
	for got := 0; got < n; {
		if withSender {
			for i := range hdrs {
				hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
				hdrs[i].Hdr.Namelen = unix.SizeofSockaddrNetlink
				hdrs[i].Hdr.Control = &ctrl[i*64]
				hdrs[i].Hdr.SetControllen(64)
			}
		}
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), 64, 0, 0, 0)
		if errno != 0 {
			if errno == syscall.EINTR {
				continue
			}
			b.Fatal(errno)
		}
		got += int(r)
	}
}

// TestIntegrationSendAllocs: a send in steady state allocates nothing.
func TestIntegrationSendAllocs(t *testing.T) {
	testutil.KernelConnector(t)
	if testutil.RaceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	c, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An id nobody serves: the kernel drops it silently.
	m := &transport.Message{ID: transport.CbID{Idx: 0x7ffffff0, Val: 1}, Data: make([]byte, 64)}
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { c.Send(ctx, transport.Kernel(), m) }); n != 0 {
		t.Fatalf("%v allocations per send", n)
	}
}

// Drops that happen after the ENOBUFS report, while the queue is still
// full, are reported once a receive finds the queue empty, even when the
// batch that emptied it was full (a full batch does not say the queue is
// empty, so it cannot report them itself). Batches of one make every batch
// full. Both the non-blocking receive and ReceiveEach report them.
func TestIntegrationDropsAfterOverrunReportedWhenEmptied(t *testing.T) {
	testutil.Privileged(t)
	for _, via := range []string{"try", "each"} {
		t.Run(via, func(t *testing.T) {
			g := testutil.Group(t)
			s, err := transport.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r, err := transport.Dial(transport.WithReadBuffer(1), transport.WithGroups(g))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			sent := uint64(0)
			multicast := func(n int) {
				for range n {
					if err := s.Send(context.Background(), transport.Addr{Group: g}, &transport.Message{ID: confID, Data: make([]byte, 64)}); err != nil {
						t.Fatal(err)
					}
					sent++
				}
			}
			multicast(50) // fills the queue; the rest is dropped: ENOBUFS
			b := transport.NewBatch(1)
			var got, lost uint64
			count := func(b *transport.Batch) {
				lost += b.Lost
				for _, m := range b.Messages {
					if m.From == s.Port() {
						got++
					}
				}
			}
			if ok, err := r.TryReceiveBatch(b); !ok || err != nil || b.Lost == 0 {
				t.Fatalf("first receive: %v, %v, lost %d; want the overrun reported", ok, err, b.Lost)
			}
			count(b)
			multicast(10) // the queue is still full: all dropped, no new ENOBUFS
			switch via {
			case "try":
				for {
					ok, err := r.TryReceiveBatch(b)
					if err != nil {
						t.Fatal(err)
					}
					if !ok {
						break
					}
					count(b)
				}
			case "each":
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				err := transport.ReceiveEach(ctx, r, b, func(b *transport.Batch) *transport.Batch {
					count(b)
					if got+lost >= sent {
						return nil
					}
					return b
				}, nil)
				if err != nil {
					t.Fatalf("ReceiveEach: %v with %d received + %d lost of %d sent", err, got, lost, sent)
				}
			}
			drops, err := r.Drops()
			if err != nil {
				t.Fatal(err)
			}
			if got+lost != sent || drops != lost {
				t.Fatalf("received %d + lost %d != sent %d, or socket drops %d != lost", got, lost, sent, drops)
			}
		})
	}
}

// A receive woken by its context leaves the caller's read deadline in
// place for the next receive.
func TestIntegrationCancelKeepsReadDeadline(t *testing.T) {
	testutil.Privileged(t)
	c, err := transport.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	b := transport.NewBatch(1)
	if err := c.ReceiveBatch(ctx, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive under a 20ms context: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.ReceiveBatch(context.Background(), b) }()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("next receive: %v, want the read deadline's error", err)
		}
	case <-time.After(5 * time.Second):
		c.Close()
		t.Fatal("the read deadline set before the cancelled receive was lost")
	}
}
