package cnactor_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// Callbacks come and go while a peer keeps sending to them. Once
// DelCallback returns, the handler gets nothing more, and its final
// counters account for every message routed to it.
func TestAddDelCallbackUnderTraffic(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	ids := []transport.CbID{{Idx: 0x7100, Val: 1}, {Idx: 0x7100, Val: 2}}

	var removedMu sync.Mutex
	removed := map[transport.CbID][]cnactor.Event{}
	stopWatch := c.Watch(func(e cnactor.Event) {
		if e.Kind == dispatch.EventRemoved {
			removedMu.Lock()
			removed[e.ID] = append(removed[e.ID], e)
			removedMu.Unlock()
		}
	})
	defer stopWatch()

	// The peer sends to both ids without pause until the end.
	stop := make(chan struct{})
	var sent atomic.Uint64
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		ctx := context.Background()
		for seq := uint32(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			m := transport.Message{ID: ids[seq%2], Seq: seq, Data: []byte("x")}
			if err := peer.Send(ctx, transport.Addr{Port: c.Port()}, &m); err != nil {
				t.Errorf("peer send: %v", err)
				return
			}
			sent.Add(1)
		}
	}()
	defer func() { close(stop); traffic.Wait() }()

	const rounds = 5
	var workers sync.WaitGroup
	for _, id := range ids {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for round := range rounds {
				var calls, late atomic.Uint64
				var gone atomic.Bool
				h := handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
					if gone.Load() {
						late.Add(1)
					}
					calls.Add(1)
					return nil
				})
				if err := c.AddCallback(id, fmt.Sprintf("round-%d", round), h); err != nil {
					t.Errorf("round %d: add %v: %v", round, id, err)
					return
				}
				deadline := time.Now().Add(waitTimeout)
				for calls.Load() < 50 && time.Now().Before(deadline) {
					time.Sleep(200 * time.Microsecond)
				}
				if calls.Load() < 50 {
					t.Errorf("round %d: %v got %d messages", round, id, calls.Load())
					return
				}
				if err := c.DelCallback(id); err != nil {
					t.Errorf("round %d: del %v: %v", round, id, err)
					return
				}
				gone.Store(true)
				final := calls.Load()

				// Traffic for the id keeps coming and is now unknown.
				unknown := c.Stats().Reader.Unknown
				deadline = time.Now().Add(waitTimeout)
				for c.Stats().Reader.Unknown < unknown+20 && time.Now().Before(deadline) {
					time.Sleep(200 * time.Microsecond)
				}
				if n := late.Load(); n != 0 || calls.Load() != final {
					t.Errorf("round %d: %v handled %d messages after DelCallback returned", round, id, calls.Load()-final)
				}

				removedMu.Lock()
				evs := removed[id]
				removedMu.Unlock()
				if len(evs) != round+1 {
					t.Errorf("round %d: %d removal events for %v", round, len(evs), id)
					return
				}
				s := evs[round].Stats
				if s.Received != s.Handled+s.Dropped+s.Failed || s.Queued != 0 {
					t.Errorf("round %d: final counters of %v do not add up: %+v", round, id, s)
				}
				if s.Handled != final || s.Received == 0 {
					t.Errorf("round %d: final counters %+v, but the handler ran %d times", round, s, final)
				}
			}
		}()
	}
	workers.Wait()
	if sent.Load() == 0 {
		t.Fatal("the peer sent nothing")
	}
}

// Callbacks sharing an idx share its group: the connector stays in the
// group until the last of them is removed, and then multicasts to it no
// longer reach the connector at all.
func TestGroupRefcount(t *testing.T) {
	t.Parallel()
	const g = 9 // the memory network is the test's own: any group will do
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	a, b := transport.CbID{Idx: g, Val: 1}, transport.CbID{Idx: g, Val: 2}
	marker := transport.CbID{Idx: 0x7200, Val: 0} // never registered
	ra, rb := &recorder{}, &recorder{}
	for id, r := range map[transport.CbID]*recorder{a: ra, b: rb} {
		if err := c.AddCallback(id, "member", r); err != nil {
			t.Fatal(err)
		}
		if ci := info(t, c, id); ci.Group != g {
			t.Errorf("callback %v has group %d, want %d", id, ci.Group, g)
		}
	}
	mcast := func(id transport.CbID, seq uint32) {
		t.Helper()
		send(t, peer, transport.Addr{Group: g}, &transport.Message{ID: id, Seq: seq})
	}

	mcast(a, 1)
	mcast(b, 2)
	waitFor(t, "both multicasts", func() bool { return ra.count() == 1 && rb.count() == 1 })
	if m := ra.messages()[0]; m.Group != g || m.From != peer.Port() || m.Seq != 1 {
		t.Errorf("a got %+v, want seq 1 from port %d on group %d", m, peer.Port(), g)
	}

	if err := c.DelCallback(a); err != nil {
		t.Fatal(err)
	}
	unknown := c.Stats().Reader.Unknown
	mcast(b, 3) // b still holds the group
	mcast(a, 4) // still delivered to the socket, but a is gone: unknown
	waitFor(t, "b's second multicast", func() bool { return rb.count() == 2 })
	waitFor(t, "a's multicast counted unknown", func() bool { return c.Stats().Reader.Unknown == unknown+1 })
	if ra.count() != 1 {
		t.Errorf("removed callback a got %d messages", ra.count())
	}

	if err := c.DelCallback(b); err != nil {
		t.Fatal(err)
	}
	// Nobody holds the group: the multicast must not reach the socket. A
	// unicast sent after it arrives after it, so once the marker is in,
	// the datagram count tells whether the multicast came too.
	before := c.Stats().Reader
	mcast(b, 5)
	sendTo(t, peer, c, marker, 6, "")
	waitFor(t, "the marker", func() bool { return c.Stats().Reader.Unknown == before.Unknown+1 })
	if after := c.Stats().Reader; after.Datagrams != before.Datagrams+1 {
		t.Errorf("after the last callback of group %d left, %d datagrams arrived for 1 sent to the port",
			g, after.Datagrams-before.Datagrams)
	}
	if rb.count() != 2 {
		t.Errorf("removed callback b got %d messages", rb.count())
	}

	// Registering an id of the group again joins it again.
	rc := &recorder{}
	if err := c.AddCallback(transport.CbID{Idx: g, Val: 3}, "again", rc); err != nil {
		t.Fatal(err)
	}
	mcast(transport.CbID{Idx: g, Val: 3}, 7)
	waitFor(t, "a multicast after rejoining", func() bool { return rc.count() == 1 })
}

// Unicast and multicast messages reach the handler of their id, with what
// the socket knows of the sender.
func TestDelivery(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	creds := transport.Credentials{PID: 4242, UID: 1234, GID: 99}
	peer := dialPeer(t, net, memory.WithCredentials(creds))
	ids := []transport.CbID{{Idx: 0x7300, Val: 1}, {Idx: 0x7300, Val: 2}, {Idx: 5, Val: 1}, {Idx: 5, Val: 2}}
	recs := map[transport.CbID]*recorder{}
	for i, id := range ids {
		recs[id] = &recorder{}
		if err := c.AddCallback(id, fmt.Sprint("cb", i), recs[id]); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id    transport.CbID
		to    transport.Addr
		group uint32
	}{
		{ids[0], transport.Addr{Port: c.Port()}, 0},
		{ids[1], transport.Addr{Port: c.Port()}, 0},
		{ids[2], transport.Addr{Group: 5}, 5},
		{ids[3], transport.Addr{Port: c.Port()}, 0}, // a group id can be reached by unicast too
	} {
		send(t, peer, tc.to, &transport.Message{ID: tc.id, Seq: 10 + tc.id.Val, Ack: 3, Data: []byte("to " + tc.id.String())})
		want := received{
			ID: tc.id, Seq: 10 + tc.id.Val, Ack: 3, Data: "to " + tc.id.String(),
			From: peer.Port(), Group: tc.group, Creds: creds,
		}
		r := recs[tc.id]
		waitFor(t, "delivery to "+tc.id.String(), func() bool { return r.count() == 1 })
		got := r.messages()[0]
		want.Name = got.Name
		if got != want {
			t.Errorf("%v got %+v, want %+v", tc.id, got, want)
		}
	}
	for i, id := range ids {
		if n := recs[id].count(); n != 1 {
			t.Errorf("%v got %d messages, want 1", id, n)
		}
		if name := recs[id].messages()[0].Name; name != fmt.Sprint("cb", i) {
			t.Errorf("%v: Callback() name %q", id, name)
		}
		// The recorder sees the message just before the handler returns
		// and it counts.
		waitFor(t, "the handled count", func() bool { return info(t, c, id).Handled == 1 })
		if ci := info(t, c, id); ci.Received != 1 || ci.Handled != 1 {
			t.Errorf("%v counters %+v", id, ci.CallbackStats)
		}
	}
	if r := c.Stats().Reader; r.Messages != 4 || r.Unknown != 0 || r.Rejected != 0 {
		t.Errorf("reader counters %+v", r)
	}
}

// Reply answers with the same id and seq, ack + 1, to the sender's port,
// whether the request came by unicast or on a group.
func TestReply(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	other := dialPeer(t, net, memory.WithGroups(6)) // in the group, must not get replies
	uni, multi := transport.CbID{Idx: 0x7300, Val: 3}, transport.CbID{Idx: 6, Val: 1}
	for _, id := range []transport.CbID{uni, multi} {
		if err := c.AddCallback(id, "echo", handlers.Echo()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id       transport.CbID
		to       transport.Addr
		seq, ack uint32
	}{
		{uni, transport.Addr{Port: c.Port()}, 77, 5},
		{uni, transport.Addr{Port: c.Port()}, 0xffffffff, 0xffffffff}, // ack wraps
		{multi, transport.Addr{Group: 6}, 78, 0},
	} {
		data := fmt.Sprintf("ping %d", tc.seq)
		send(t, peer, tc.to, &transport.Message{ID: tc.id, Seq: tc.seq, Ack: tc.ack, Data: []byte(data)})
		r := recvFrom(t, peer, c.Port())
		if r.ID != tc.id || r.Seq != tc.seq || r.Ack != tc.ack+1 || string(r.Data) != data || r.Group != 0 {
			t.Errorf("reply %+v (group %d), want id %v seq %d ack %d data %q by unicast",
				r.Message, r.Group, tc.id, tc.seq, tc.ack+1, data)
		}
	}
	// Only the multicast reached other, and no reply did.
	if r := recvFrom(t, other, peer.Port()); r.Seq != 78 {
		t.Errorf("group member got %+v", r.Message)
	}
	sendTo(t, peer, c, transport.CbID{Idx: 0x7300, Val: 0xdead}, 1, "") // a marker, then look
	waitFor(t, "marker", func() bool { return c.Stats().Reader.Unknown == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	b := transport.NewBatch(4)
	if err := other.ReceiveBatch(ctx, b); err == nil {
		for _, m := range b.Messages {
			t.Errorf("group member got %+v from port %d", m.Message, m.From)
		}
	}
}

// Send reaches a group or a port; a zero seq goes out numbered, and the
// caller's message is never modified.
func TestSend(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	member := dialPeer(t, net, memory.WithGroups(7))
	id := transport.CbID{Idx: 7, Val: 7}
	ctx := context.Background()
	m := &transport.Message{ID: id, Data: []byte("hello")}
	if err := c.Send(ctx, transport.Addr{Group: id.Idx}, m); err != nil {
		t.Fatal(err)
	}
	got := recvFrom(t, member, c.Port())
	if got.Group != 7 || got.ID != id || string(got.Data) != "hello" || got.Seq == 0 || m.Seq != 0 {
		t.Errorf("member got %+v on group %d; the sent message now has seq %d", got.Message, got.Group, m.Seq)
	}
	first := got.Seq
	m2 := &transport.Message{ID: id, Data: []byte("direct")}
	if err := c.Send(ctx, transport.Addr{Port: member.Port()}, m2); err != nil {
		t.Fatal(err)
	}
	got = recvFrom(t, member, c.Port())
	if got.Group != 0 || string(got.Data) != "direct" || got.Seq != first+1 || m2.Seq != 0 {
		t.Errorf("member got %+v on group %d, want the next seq %d", got.Message, got.Group, first+1)
	}
	kept := &transport.Message{ID: id, Seq: 4242}
	if err := c.Send(ctx, transport.Addr{Port: member.Port()}, kept); err != nil {
		t.Fatal(err)
	}
	if got = recvFrom(t, member, c.Port()); got.Seq != 4242 {
		t.Errorf("Send with a seq of its own: sent with %d", got.Seq)
	}
}

// Messages for ids nobody registered are counted, and go to the fallback
// handler when there is one.
func TestUnknownID(t *testing.T) {
	t.Parallel()
	unknown := transport.CbID{Idx: 0x7301, Val: 1}
	t.Run("no fallback", func(t *testing.T) {
		t.Parallel()
		c, net := newMemConnector(t)
		peer := dialPeer(t, net)
		for seq := range uint32(3) {
			sendTo(t, peer, c, unknown, seq, "lost")
		}
		waitFor(t, "3 unknown", func() bool { return c.Stats().Reader.Unknown == 3 })
		if s := c.Stats(); s.Fallback != nil || s.Reader.Messages != 3 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("fallback", func(t *testing.T) {
		t.Parallel()
		fb := &recorder{}
		c, net := newMemConnector(t, cnactor.WithFallback(fb))
		peer := dialPeer(t, net)
		known := &recorder{}
		if err := c.AddCallback(transport.CbID{Idx: 0x7301, Val: 2}, "known", known); err != nil {
			t.Fatal(err)
		}
		sendTo(t, peer, c, unknown, 1, "nobody")
		sendTo(t, peer, c, transport.CbID{Idx: 0x7301, Val: 2}, 2, "somebody")
		waitFor(t, "the fallback", func() bool {
			s := c.Stats() // a handler counts a message when it returns
			return fb.count() == 1 && known.count() == 1 && s.Fallback != nil && s.Fallback.Handled == 1
		})
		got := fb.messages()[0]
		if got.ID != unknown || got.Data != "nobody" || got.From != peer.Port() || got.Name != "fallback" {
			t.Errorf("fallback got %+v", got)
		}
		s := c.Stats()
		if s.Reader.Unknown != 1 || s.Fallback == nil || s.Fallback.Received != 1 || s.Fallback.Handled != 1 {
			t.Errorf("reader %+v, fallback %+v", s.Reader, s.Fallback)
		}
	})
	t.Run("fallback and id 0:0", func(t *testing.T) {
		t.Parallel()
		// The fallback is no callback: id 0:0 can still be registered.
		c, _ := newMemConnector(t, cnactor.WithFallback(handlers.Sink()))
		if err := c.AddCallback(transport.CbID{}, "zero", handlers.Sink()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCallbackErrors(t *testing.T) {
	t.Parallel()
	c, _ := newMemConnector(t)
	id := transport.CbID{Idx: 0x7302, Val: 1}
	if err := c.AddCallback(id, "one", handlers.Sink()); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCallback(id, "two", handlers.Sink()); !errors.Is(err, cnactor.ErrDuplicate) {
		t.Errorf("duplicate: %v, want ErrDuplicate", err)
	}
	if ci := info(t, c, id); ci.Name != "one" {
		t.Errorf("the duplicate replaced the callback: %q", ci.Name)
	}
	if err := c.AddCallback(transport.CbID{Idx: 0x7302, Val: 2}, "nil", nil); err == nil {
		t.Error("nil handler accepted")
	}
	if err := c.AddCallback(dispatch.CoreID(), "core", handlers.Sink()); !errors.Is(err, cnactor.ErrDuplicate) {
		t.Errorf("registering the core id: %v, want ErrDuplicate", err)
	}
	if err := c.DelCallback(dispatch.CoreID()); !errors.Is(err, cnactor.ErrCoreCallback) {
		t.Errorf("removing the core: %v, want ErrCoreCallback", err)
	}
	if err := c.DelCallback(transport.CbID{Idx: 0x7302, Val: 3}); !errors.Is(err, cnactor.ErrNotFound) {
		t.Errorf("removing an unknown id: %v, want ErrNotFound", err)
	}
	if err := c.DelCallback(id); err != nil {
		t.Fatal(err)
	}
	if err := c.DelCallback(id); !errors.Is(err, cnactor.ErrNotFound) {
		t.Errorf("removing twice: %v, want ErrNotFound", err)
	}
	// The same id can be registered again.
	if err := c.AddCallback(id, "three", handlers.Sink()); err != nil {
		t.Errorf("re-registering: %v", err)
	}
	core := info(t, c, dispatch.CoreID())
	if core.Name != dispatch.CoreName || core.Group != 0 {
		t.Errorf("core callback %+v", core)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCallback(transport.CbID{Idx: 0x7302, Val: 4}, "late", handlers.Sink()); !errors.Is(err, cnactor.ErrClosed) {
		t.Errorf("add after Close: %v, want ErrClosed", err)
	}
	if err := c.DelCallback(id); !errors.Is(err, cnactor.ErrClosed) {
		t.Errorf("del after Close: %v, want ErrClosed", err)
	}
	if err := c.Send(context.Background(), transport.Kernel(), &transport.Message{ID: id}); !errors.Is(err, cnactor.ErrClosed) {
		t.Errorf("send after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// WithTransport(nil) is a mistake, not a request to dial the kernel.
func TestNewRefusesNilTransport(t *testing.T) {
	t.Parallel()
	c, err := cnactor.New(cnactor.WithTransport(nil))
	if err == nil {
		c.Close(context.Background())
		t.Fatal("New(WithTransport(nil)) started a connector")
	}
	if !strings.Contains(err.Error(), "WithTransport(nil)") {
		t.Errorf("error %q does not name the option", err)
	}
}
