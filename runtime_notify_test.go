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
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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
		send(t, from, transport.Addr{Port: c.Port()}, &transport.Message{ID: dispatch.CoreID(), Data: dispatch.AppendControl(nil, &s)})
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
		send(t, p1, transport.Addr{Port: c.Port()}, &transport.Message{ID: dispatch.CoreID(), Data: data})
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

// Issue 13, item 1: control messages from a peer cannot grow the core's
// subscriptions without bound. Equal subscriptions are stored once (and so
// notify once), distinct ones up to dispatch.DefaultMaxSubscriptions, and
// what is over a bound is counted as rejected with a rate-limited warning,
// while the connector keeps serving.
func TestControlSubscriptionsBounded(t *testing.T) {
	t.Parallel()
	const g = 30
	core, logs := observer.New(zap.WarnLevel)
	c, net := newMemConnector(t, cnactor.WithLogger(zap.New(core)))
	p := dialPeer(t, net, memory.WithGroups(g))
	all := []dispatch.Range{{First: 0, Count: 0xffffffff}}
	control := func(s dispatch.Subscription) {
		t.Helper()
		send(t, p, transport.Addr{Port: c.Port()}, &transport.Message{ID: dispatch.CoreID(), Data: dispatch.AppendControl(nil, &s)})
	}
	start := time.Now()
	const dups, distinct = 3000, dispatch.DefaultMaxSubscriptions + 100
	for range dups {
		control(dispatch.Subscription{Group: g, IdxRanges: all, ValRanges: all})
	}
	// Idx ranges {i, 1} with i below 0x1000: none matches the ids added below.
	for i := range uint32(distinct) {
		control(dispatch.Subscription{Group: g, IdxRanges: []dispatch.Range{{First: i, Count: 1}}, ValRanges: all})
	}
	control(dispatch.Subscription{Group: g, IdxRanges: make([]dispatch.Range, dispatch.DefaultMaxSubscriptionRanges+1), ValRanges: all})
	const total = dups + distinct + 1
	waitFor(t, "every control message handled", func() bool {
		s := c.Stats().Control
		return s.Applied+s.Rejected+s.Malformed == total
	})
	elapsed := time.Since(start)
	s := c.Stats().Control
	wantRejected := uint64(distinct - (dispatch.DefaultMaxSubscriptions - 1) + 1)
	if s.Subscriptions != dispatch.DefaultMaxSubscriptions || s.Rejected != wantRejected || s.Malformed != 0 {
		t.Fatalf("control stats %+v; want %d subscriptions, %d rejected", s, dispatch.DefaultMaxSubscriptions, wantRejected)
	}
	// One warning per second at most, the first at once.
	warned := logs.FilterMessage("notification subscription refused").Len()
	if warned < 1 || warned > 1+int(elapsed/time.Second) {
		t.Errorf("%d refusal warnings for %d refusals in %v; want 1 per second", warned, s.Rejected, elapsed)
	}

	// One notification per registration, however often it was asked for:
	// the next message after the first add's notice is the second add's.
	first, second := transport.CbID{Idx: 0x7700, Val: 1}, transport.CbID{Idx: 0x7700, Val: 2}
	for _, id := range []transport.CbID{first, second} {
		if err := c.AddCallback(id, "bounded", handlers.Sink()); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []transport.CbID{first, second} {
		if r := recvFrom(t, p, c.Port()); r.ID != id || r.Ack != uint32(dispatch.EventAdded) || r.Group != g {
			t.Fatalf("got notification %v ack %d on group %d, want %v added on group %d", r.ID, r.Ack, r.Group, id, g)
		}
	}
}
