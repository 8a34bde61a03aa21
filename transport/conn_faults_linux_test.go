//go:build linux

package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rawPeer is a bare NETLINK_CONNECTOR socket that sends whatever bytes a
// test gives it.
func rawPeer(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func receiveWithin(t *testing.T, c Conn, b *Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if err := c.ReceiveBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// A datagram larger than a receive slot is cut by the kernel (MSG_TRUNC):
// it is reported as ErrTruncated with the slot's worth of bytes, and the
// socket goes on to the next datagram.
func TestIntegrationTruncatedByKernel(t *testing.T) {
	testutil.Privileged(t)
	rx, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	fd := rawPeer(t)
	to := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: rx.Port()}
	big := make([]byte, slotSize+512)
	binary.NativeEndian.PutUint32(big, uint32(len(big)))
	binary.NativeEndian.PutUint16(big[4:], nlmsgDone)
	good, _ := AppendDatagram(nil, &Message{ID: CbID{Idx: 0x5340, Val: 1}, Data: []byte("after")}, 0, 0)
	for _, d := range [][]byte{big, good} {
		if err := unix.Sendto(fd, d, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBatch(4)
	var malformed []Malformed
	for len(b.Messages) == 0 {
		receiveWithin(t, rx, b)
		malformed = append(malformed, b.Malformed...)
	}
	if len(malformed) != 1 || !errors.Is(malformed[0].Err, ErrTruncated) || len(malformed[0].Data) != slotSize {
		t.Fatalf("malformed %+v, want one truncated datagram of %d bytes", malformed, slotSize)
	}
	if malformed[0].Creds.PID != uint32(os.Getpid()) {
		t.Fatalf("truncated datagram's creds %+v", malformed[0].Creds)
	}
	// The report gives the datagram's real size, not the slot's.
	if want := fmt.Sprintf("a %d-byte datagram, %d bytes read", len(big), slotSize); !strings.Contains(malformed[0].Err.Error(), want) {
		t.Fatalf("truncation reported as %q, want it to say %q", malformed[0].Err, want)
	}
	if string(b.Messages[0].Data) != "after" {
		t.Fatalf("next message %q", b.Messages[0].Data)
	}
}

// A receive error other than EAGAIN and ENOBUFS (the kernel has none to
// give on demand; the receive call is replaced) fails the receive as a
// *OpError carrying the errno, on both receive paths, and the socket stays
// usable.
func TestIntegrationReceiveErrno(t *testing.T) {
	testutil.KernelConnector(t)
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	real, realTry := c.recvFn, c.tryFn
	c.recvFn = func(uintptr) bool { c.recvN, c.recvErr = 0, unix.EIO; return true }
	c.tryFn = func(uintptr) { c.tried, c.recvN, c.recvErr = true, 0, unix.ENOMEM }
	b := NewBatch(2)
	if err := c.ReceiveBatch(context.Background(), b); !errors.Is(err, unix.EIO) {
		t.Fatalf("receive = %v, want EIO", err)
	}
	var op *OpError
	if got, err := c.TryReceiveBatch(b); got || !errors.As(err, &op) || op.Op != "receive" || !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("try = %v, %v; want a receive OpError with ENOMEM", got, err)
	}
	c.recvFn, c.tryFn = real, realTry
	if got, err := c.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("empty try after the errors = %v, %v", got, err)
	}
}

// Control data the kernel never sends, parsed without panicking: no
// message, a header whose length is impossible, credentials too short, and
// credentials after another control message.
func TestParseCredsMalformed(t *testing.T) {
	t.Parallel()
	cmsg := func(level, typ int32, payload []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(payload)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(payload)))
		copy(b[unix.CmsgLen(0):], payload)
		return b
	}
	ucred := make([]byte, unix.SizeofUcred)
	binary.NativeEndian.PutUint32(ucred[0:], 11)
	binary.NativeEndian.PutUint32(ucred[4:], 22)
	binary.NativeEndian.PutUint32(ucred[8:], 33)
	creds := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, ucred)
	want := Credentials{PID: 11, UID: 22, GID: 33}
	tooLong := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, ucred)
	(*unix.Cmsghdr)(unsafe.Pointer(&tooLong[0])).SetLen(len(tooLong) + 8)
	tooShort := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, ucred)
	(*unix.Cmsghdr)(unsafe.Pointer(&tooShort[0])).SetLen(unix.SizeofCmsghdr - 1)
	short := cmsg(unix.SOL_SOCKET, unix.SCM_CREDENTIALS, ucred[:4])
	other := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, []byte{1, 2, 3, 4})
	for name, tc := range map[string]struct {
		ctrl []byte
		want Credentials
	}{
		"none":              {nil, Credentials{}},
		"header cut":        {creds[:unix.SizeofCmsghdr-1], Credentials{}},
		"length past end":   {tooLong, Credentials{}},
		"length below head": {tooShort, Credentials{}},
		"payload too short": {short, Credentials{}},
		"after another":     {append(append([]byte(nil), other...), creds...), want},
		"well formed":       {creds, want},
	} {
		if got := parseCreds(tc.ctrl); got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}

// The pass-through accessors reach the socket, and errors format as they
// should.
func TestIntegrationAccessors(t *testing.T) {
	testutil.KernelConnector(t)
	c, err := Dial(WithCredentials(false), WithReadBuffer(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadBuffer(1 << 17); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadBuffer(); err != nil || n < 1<<17 {
		t.Fatalf("read buffer %d, %v", n, err)
	}
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		t.Fatal(err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	passcred := -1
	raw.Control(func(fd uintptr) { passcred, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED) })
	if passcred != 0 {
		t.Fatalf("SO_PASSCRED = %d with WithCredentials(false)", passcred)
	}
	c.Close()
	if _, err := c.Drops(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Drops after Close = %v", err)
	}
	if err := c.JoinGroup(3); !errors.Is(err, ErrClosed) {
		t.Fatalf("JoinGroup after Close = %v", err)
	}
	if err := c.LeaveGroup(3); !errors.Is(err, ErrClosed) {
		t.Fatalf("LeaveGroup after Close = %v", err)
	}
	if err := c.Send(context.Background(), Kernel(), &Message{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&DecodeError{Err: ErrNlmsgError, Offset: 4, Errno: unix.EPERM}, ErrNlmsgError.Error() + " at offset 4: operation not permitted"},
		{&DecodeError{Err: ErrCnMsgLen, Offset: 16}, ErrCnMsgLen.Error() + " at offset 16"},
		{&OpError{Op: "send", Addr: &Addr{Group: 5}, Err: ErrSendTimeout}, "cnactor send group=5: " + ErrSendTimeout.Error()},
		{&OpError{Op: "dial", Err: ErrNotSupported}, "cnactor dial: " + ErrNotSupported.Error()},
	} {
		if tc.err.Error() != tc.want {
			t.Errorf("%q, want %q", tc.err.Error(), tc.want)
		}
	}
	if (Addr{Port: 9}).String() != "port=9" || (&OpError{Err: ErrSendTimeout}).Timeout() != true {
		t.Fatal("address or timeout formatting")
	}
}

// Sends to a closed peer are refused (ECONNREFUSED) at once, and a send
// into a full peer that stays full gives up after the send timeout.
func TestIntegrationSendToClosedAndFullPeer(t *testing.T) {
	testutil.Privileged(t)
	tx, err := Dial(WithSendTimeout(50 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	gone, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	port := gone.Port()
	gone.Close()
	m := &Message{ID: CbID{Idx: 0x5341, Val: 1}, Data: make([]byte, 1024)}
	if err := tx.Send(context.Background(), Addr{Port: port}, m); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("send to a closed peer = %v", err)
	}
	full, err := Dial(WithReadBuffer(1)) // the kernel's minimum
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	// Fill it: unicast never drops, so sends succeed until one times out.
	var sendErr error
	for i := 0; i < 10000 && sendErr == nil; i++ {
		sendErr = tx.Send(context.Background(), Addr{Port: full.Port()}, m)
	}
	var op *OpError
	if !errors.Is(sendErr, ErrSendTimeout) || !errors.As(sendErr, &op) || !op.Timeout() {
		t.Fatalf("send into a full peer = %v, want a send timeout", sendErr)
	}
	// A context that ends first wins over the send timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tx.Send(ctx, Addr{Port: full.Port()}, m); !errors.Is(err, context.Canceled) {
		t.Fatalf("send with a done context into a full peer = %v", err)
	}
	if d, err := full.Drops(); err != nil || d != 0 {
		t.Fatalf("unicast dropped %d (%v): the sender must wait instead", d, err)
	}
}
