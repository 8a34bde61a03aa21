package cnactor_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// The seed's notification protocol: peers subscribe with control messages
// to the core's id and get a message on their group for every matching
// registration (ack 0) and removal (ack 1).
func TestNotifications(t *testing.T) {
	t.Parallel()
	const g1, g2 = 12, 13
	c, net := newMemConnector(t)
	p1 := dialPeer(t, net, memory.WithGroups(g1))
	p2 := dialPeer(t, net, memory.WithGroups(g2))

	var mu sync.Mutex
	var events []string
	stop := c.Watch(func(e cnactor.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e.Kind.String()+" "+e.ID.String()+" "+e.Name)
	})
	defer stop()

	control := func(from *memory.Conn, s dispatch.Subscription) {
		t.Helper()
		send(t, from, transport.Addr{Port: c.Port()}, &transport.Message{ID: dispatch.CoreID, Data: dispatch.AppendControl(nil, &s)})
	}
	applied := func(n uint64, subs int) {
		t.Helper()
		waitFor(t, "control messages applied", func() bool {
			s := c.Stats().Control
			return s.Applied == n && s.Subscriptions == subs
		})
	}
	ranges := func(first, count uint32) []dispatch.Range { return []dispatch.Range{{First: first, Count: count}} }
	subA := dispatch.Subscription{Group: g1, IdxRanges: ranges(0x7500, 16), ValRanges: ranges(0, 4)}
	subB := dispatch.Subscription{Group: g1, IdxRanges: ranges(0x7600, 1), ValRanges: ranges(0, 1)}
	subC := dispatch.Subscription{Group: g2, IdxRanges: subA.IdxRanges, ValRanges: subA.ValRanges}
	control(p1, subA)
	control(p1, subB)
	control(p2, subC)
	applied(3, 3)

	// expect checks the next notification port p gets from the connector.
	expect := func(p *memory.Conn, group uint32, id transport.CbID, ev dispatch.Event) {
		t.Helper()
		r := recvFrom(t, p, c.Port())
		if r.ID != id || r.Seq != 0 || r.Ack != uint32(ev) || len(r.Data) != 0 || r.Group != group {
			t.Errorf("port %d got id %v seq %d ack %d len %d on group %d; want %v %v (ack %d) on group %d",
				p.Port(), r.ID, r.Seq, r.Ack, len(r.Data), r.Group, id, ev, ev, group)
		}
	}
	add := func(id transport.CbID) {
		t.Helper()
		if err := c.AddCallback(id, "n"+id.String(), handlers.Sink()); err != nil {
			t.Fatal(err)
		}
	}
	del := func(id transport.CbID) {
		t.Helper()
		if err := c.DelCallback(id); err != nil {
			t.Fatal(err)
		}
	}

	matching := transport.CbID{Idx: 0x7503, Val: 2}
	add(matching)
	expect(p1, g1, matching, dispatch.EventAdded)
	expect(p2, g2, matching, dispatch.EventAdded)
	// Outside the ranges: val at the end of its range, idx past its range.
	add(transport.CbID{Idx: 0x7503, Val: 4})
	add(transport.CbID{Idx: 0x7510, Val: 0})
	other := transport.CbID{Idx: 0x7600, Val: 0}
	add(other)
	expect(p1, g1, other, dispatch.EventAdded) // next after matching: nothing in between
	del(matching)
	expect(p1, g1, matching, dispatch.EventRemoved)
	expect(p2, g2, matching, dispatch.EventRemoved)

	// A removal (group 0) with A's ranges removes A and C, not B.
	control(p1, dispatch.Subscription{IdxRanges: subA.IdxRanges, ValRanges: subA.ValRanges})
	applied(4, 1)
	add(transport.CbID{Idx: 0x7504, Val: 1}) // matched A: no longer notified
	del(other)
	expect(p1, g1, other, dispatch.EventRemoved)

	// Malformed control messages are counted and ignored.
	bad := [][]byte{
		{1, 2, 3},
		dispatch.AppendControl(nil, &subA)[:20], // cut short
		append(dispatch.AppendControl(nil, &subA), 0, 0, 0, 0),         // too long
		dispatch.AppendControl(nil, &dispatch.Subscription{Group: 33}), // no such group
	}
	for _, data := range bad {
		send(t, p1, transport.Addr{Port: c.Port()}, &transport.Message{ID: dispatch.CoreID, Data: data})
	}
	waitFor(t, "malformed control messages", func() bool { return c.Stats().Control.Malformed == uint64(len(bad)) })
	if s := c.Stats().Control; s.Applied != 4 || s.Subscriptions != 1 {
		t.Errorf("after malformed control messages: %+v", s)
	}
	// Still serving: B still notifies.
	add(other)
	expect(p1, g1, other, dispatch.EventAdded)

	// p2's subscription is gone: it got nothing since the removal.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	b := transport.NewBatch(8)
	if err := p2.ReceiveBatch(ctx, b); err == nil {
		for _, m := range b.Messages {
			t.Errorf("p2 got %v ack %d after its subscription was removed", m.ID, m.Ack)
		}
	}

	mu.Lock()
	got := slices.Clone(events)
	mu.Unlock()
	ev := func(kind dispatch.Event, id transport.CbID) string {
		return kind.String() + " " + id.String() + " n" + id.String()
	}
	want := []string{
		ev(dispatch.EventAdded, matching),
		ev(dispatch.EventAdded, transport.CbID{Idx: 0x7503, Val: 4}),
		ev(dispatch.EventAdded, transport.CbID{Idx: 0x7510, Val: 0}),
		ev(dispatch.EventAdded, other),
		ev(dispatch.EventRemoved, matching),
		ev(dispatch.EventAdded, transport.CbID{Idx: 0x7504, Val: 1}),
		ev(dispatch.EventRemoved, other),
		ev(dispatch.EventAdded, other),
	}
	if !slices.Equal(got, want) {
		t.Errorf("Watch saw\n%q\nwant\n%q", got, want)
	}
	stop()
	add(transport.CbID{Idx: 0x7505, Val: 0})
	mu.Lock()
	if len(events) != len(want) {
		t.Errorf("Watch called after stop: %q", events[len(want):])
	}
	mu.Unlock()
}
