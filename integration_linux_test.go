//go:build linux

package cnactor_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/cnactor/cnactor/dispatch"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

// newKernelConnector starts a Connector on the real kernel connector.
func newKernelConnector(t *testing.T) *cnactor.Connector {
	t.Helper()
	c, err := cnactor.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func dialKernel(t *testing.T, opts ...transport.DialOption) *transport.NetlinkConn {
	t.Helper()
	p, err := transport.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// On the real kernel: an id with idx G joins group G; a raw peer reaches the
// callback by unicast and by multicast to G, and the echo replies come back
// to the peer's own port with the seq/ack of the protocol.
func TestIntegrationUnicastMulticastReply(t *testing.T) {
	testutil.Privileged(t)
	g := testutil.Group(t)
	c := newKernelConnector(t)
	id := transport.CbID{Idx: g, Val: 0x7a01}
	var lastGroup atomic.Uint32
	echo := handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		lastGroup.Store(hc.Group())
		return hc.Reply(append([]byte(fmt.Sprintf("from=%d group=%d ", hc.From(), hc.Group())), m.Data...))
	})
	if err := c.AddCallback(id, "echo", echo); err != nil {
		t.Fatal(err)
	}
	peer := dialKernel(t)
	member := dialKernel(t, transport.WithGroups(g)) // sees the multicast, never a reply

	for _, tc := range []struct {
		name     string
		to       transport.Addr
		seq, ack uint32
		group    uint32
	}{
		{"unicast", transport.Addr{Port: c.Port()}, 11, 0, 0},
		{"multicast", transport.Addr{Group: g}, 12, 41, g},
	} {
		send(t, peer, tc.to, &transport.Message{ID: id, Seq: tc.seq, Ack: tc.ack, Data: []byte(tc.name)})
		r := recvFrom(t, peer, c.Port())
		want := fmt.Sprintf("from=%d group=%d %s", peer.Port(), tc.group, tc.name)
		if r.ID != id || r.Seq != tc.seq || r.Ack != tc.ack+1 || string(r.Data) != want || r.Group != 0 {
			t.Errorf("%s: reply id %v seq %d ack %d group %d data %q; want %v, %d, %d, unicast, %q",
				tc.name, r.ID, r.Seq, r.Ack, r.Group, r.Data, id, tc.seq, tc.ack+1, want)
		}
	}
	if m := recvFrom(t, member, peer.Port()); m.Seq != 12 || m.Group != g {
		t.Errorf("group member got seq %d on group %d", m.Seq, m.Group)
	}

	// The connector's own Send multicasts on the id's group (idx).
	if err := c.Send(context.Background(), transport.Addr{Group: id.Idx}, &transport.Message{ID: id, Data: []byte("news")}); err != nil {
		t.Fatal(err)
	}
	if m := recvFrom(t, member, c.Port()); m.Group != g || string(m.Data) != "news" {
		t.Errorf("group member got %q on group %d from the connector", m.Data, m.Group)
	}
	// A handler's effects can be seen just before it returns and counts.
	waitFor(t, "both messages handled", func() bool { return info(t, c, id).Handled == 2 })
	ci := info(t, c, id)
	if ci.Group != g || ci.Handled != 2 || ci.Rejected != 0 {
		t.Errorf("callback %+v", ci)
	}
}

// rawSend writes datagram to port from a socket of its own, bypassing the
// transport, so that it can claim any nlmsg_pid.
func rawSend(t *testing.T, port uint32, datagram []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, datagram, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: port}); err != nil {
		t.Fatal(err)
	}
}

// On the real kernel: a callback for the proc connector's id that admits
// only the kernel gets the kernel's events, and a user socket forging a
// "kernel" message (nlmsg_pid 0) is rejected and counted.
func TestIntegrationForgedKernelRejected(t *testing.T) {
	testutil.Privileged(t)
	c := newKernelConnector(t)
	procID := transport.CbID{Idx: 1, Val: 1}
	var fromUser, fromKernel atomic.Uint64
	h := handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		if hc.From() != 0 {
			fromUser.Add(1)
		} else {
			fromKernel.Add(1)
		}
		return nil
	})
	if err := c.AddCallback(procID, "proc", h, cnactor.WithSenderPolicy(dispatch.AllowKernel())); err != nil {
		t.Fatal(err)
	}

	// The forgery: the proc id, the kernel's nlmsg_pid, a user socket.
	forged, err := transport.AppendDatagram(nil, &transport.Message{ID: procID, Seq: 0x7a02, Data: make([]byte, 40)}, 0x7a02, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.NativeEndian.Uint32(forged[12:]); got != 0 {
		t.Fatalf("forged nlmsg_pid %d", got)
	}
	rawSend(t, c.Port(), forged)
	waitFor(t, "the forged message rejected", func() bool { return info(t, c, procID).Rejected == 1 })
	if r := c.Stats().Reader; r.Rejected < 1 {
		t.Errorf("reader rejected %d", r.Rejected)
	}

	// The real kernel: subscribe (LISTEN, to port 0 without groups) and
	// make a process; its events come from port 0 and are admitted.
	op := func(v uint32) *transport.Message {
		return &transport.Message{ID: procID, Ack: 0x7a03, Data: binary.NativeEndian.AppendUint32(nil, v)}
	}
	if err := c.Send(context.Background(), transport.Kernel(), op(1)); err != nil {
		t.Fatal(err)
	}
	defer c.Send(context.Background(), transport.Kernel(), op(2))
	deadline := time.Now().Add(waitTimeout)
	for fromKernel.Load() == 0 && time.Now().Before(deadline) {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	if fromKernel.Load() == 0 {
		t.Error("no proc event from the kernel reached the kernel-only callback")
	}
	if n := fromUser.Load(); n != 0 {
		t.Errorf("the kernel-only handler got %d messages from user ports", n)
	}
	if ci := info(t, c, procID); ci.Rejected != 1 {
		t.Errorf("rejected %d, want the one forgery", ci.Rejected)
	}
}
