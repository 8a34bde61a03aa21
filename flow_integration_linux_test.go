//go:build linux

package cnactor_test

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// On the real kernel, with the default overflow policy: a unicast sender
// faster than the handler loses nothing. The connector's small receive
// buffer fills while its reader waits for the handler, and the kernel
// makes the sender wait.
func TestIntegrationBackpressureUnicastNoLoss(t *testing.T) {
	testutil.Privileged(t)
	t.Parallel()
	c, err := cnactor.New(cnactor.WithReadBuffer(64 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	id := transport.CbID{Idx: 0x7810, Val: 1} // above 32: no group
	h := newSlowHandler()
	if err := c.AddCallback(id, "slow", h, cnactor.WithMailbox(64, cnactor.Backpressure),
		cnactor.WithStallTimeout(time.Minute)); err != nil {
		t.Fatal(err)
	}
	peer := dialKernel(t)
	n := 20000
	if testutil.RaceEnabled {
		n = 5000
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		for i := range uint32(n) {
			if err := peer.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: i, Data: []byte("x")}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	// The handler stays shut until its full mailbox holds the reader; the
	// socket's queue fills behind it and the kernel makes the sender wait.
	testutil.WaitFor(t, "the full mailbox to hold the reader", func() bool { return info(t, c, id).Stalls > 0 })
	close(h.gate)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "every message handled", func() bool { return info(t, c, id).Handled == uint64(n) })
	ci, st := info(t, c, id), c.Stats()
	if ci.Dropped != 0 || ci.Shed != 0 || st.Reader.KernelDrops != 0 {
		t.Errorf("callback %+v, kernel drops %d: want nothing lost", ci.CallbackStats, st.Reader.KernelDrops)
	}
	if !h.inOrder(n) {
		t.Error("messages were not handled once each, in order")
	}
}

// Multicast senders never wait: while the reader waits for a slow handler,
// the kernel drops for the full socket and counts it. Every message is
// handled or counted as a kernel drop; none is dropped in userspace.
func TestIntegrationBackpressureMulticastCountsKernelDrops(t *testing.T) {
	testutil.Privileged(t)
	t.Parallel()
	group := testutil.Group(t)
	c, err := cnactor.New(cnactor.WithReadBuffer(64 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	id := transport.CbID{Idx: group, Val: 0x7811}
	h := newSlowHandler()
	if err := c.AddCallback(id, "slow", h, cnactor.WithMailbox(64, cnactor.Backpressure),
		cnactor.WithStallTimeout(time.Minute)); err != nil {
		t.Fatal(err)
	}
	peer := dialKernel(t)
	// The handler is shut while everything is sent: 5,000 multicasts
	// cannot fit in 64 mailbox slots and a 64 KiB socket, so the kernel
	// must drop (multicast senders never wait).
	const n = 5000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range uint32(n) {
		if err := peer.Send(ctx, transport.Addr{Group: group}, &transport.Message{ID: id, Seq: i, Data: []byte("x")}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	close(h.gate)
	testutil.WaitFor(t, "every message handled or counted as a kernel drop", func() bool {
		return info(t, c, id).Handled+c.Stats().Reader.KernelDrops == n
	})
	ci, st := info(t, c, id), c.Stats()
	if ci.Dropped != 0 || ci.Failed != 0 {
		t.Errorf("callback %+v: want nothing dropped in userspace", ci.CallbackStats)
	}
	if st.Reader.KernelDrops == 0 {
		t.Error("the kernel dropped nothing: the test did not overflow the socket")
	}
	t.Logf("%d handled, %d dropped by the kernel, reader held %d times for %v", ci.Handled, st.Reader.KernelDrops, ci.Stalls, ci.Stalled)
}

// A peer that never reads its replies costs only its own replies: once its
// receive queue is full, a reply to it waits a few milliseconds, then fails
// at once while the peer stays congested, and a well-behaved client's
// requests behind it are answered. (It used to hold the echo handler for
// the 1 s send timeout per reply.)
func TestIntegrationNonReadingPeerDoesNotStallReplies(t *testing.T) {
	testutil.Privileged(t)
	t.Parallel()
	c := newKernelConnector(t)
	id := transport.CbID{Idx: 0x7812, Val: 1}
	if err := c.AddCallback(id, "echo", handlers.Echo()); err != nil {
		t.Fatal(err)
	}
	deaf := dialKernel(t, transport.WithReadBuffer(1)) // the kernel's minimum: a few replies fill it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const flood = 300
	for i := range uint32(flood) {
		if err := deaf.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: i, Data: make([]byte, 512)}); err != nil {
			t.Fatal(err)
		}
	}
	client := newKernelConnector(t)
	for i := range 20 {
		if _, err := client.Request(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Data: []byte("ping")},
			cnactor.WithRequestTimeout(10*time.Second), cnactor.WithRetries(0)); err != nil {
			t.Fatalf("request %d behind the deaf peer: %v", i, err)
		}
	}
	// The positive control: the deaf peer's queue did fill.
	testutil.WaitFor(t, "every message handled or failed", func() bool {
		ci := info(t, c, id)
		return ci.Handled+ci.Failed == flood+20
	})
	if ci := info(t, c, id); ci.Failed == 0 {
		t.Errorf("no reply to the deaf peer failed (%+v): its queue never filled", ci.CallbackStats)
	}
}
