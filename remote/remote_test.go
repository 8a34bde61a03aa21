package remote

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/conntest"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// newSubscriber starts a subscriber on loopback, closed by the test.
func newSubscriber(t *testing.T, cfg SubscriberConfig) *Subscriber {
	t.Helper()
	if cfg.Host == nil {
		cfg.Host = sharedHost(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = helperLogger()
	}
	s, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("subscriber close: %v", err)
		}
	})
	return s
}

// events records a subscriber's events.
type events struct {
	mu  sync.Mutex
	evs []Event
	ch  chan struct{}
}

func watchEvents(s *Subscriber) *events {
	e := &events{ch: make(chan struct{}, 1)}
	s.Watch(func(ev Event) {
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
		select {
		case e.ch <- struct{}{}:
		default:
		}
	})
	return e
}

// waitFor waits for an event satisfying ok.
func (e *events) waitFor(t *testing.T, what string, timeout time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(timeout)
	for i := 0; ; {
		e.mu.Lock()
		for ; i < len(e.evs); i++ {
			if ok(e.evs[i]) {
				ev := e.evs[i]
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no %s event within %v", what, timeout)
		}
	}
}

var (
	id5 = transport.CbID{Idx: 5, Val: 1}
	id6 = transport.CbID{Idx: 6, Val: 1}
	id7 = transport.CbID{Idx: 7, Val: 1}
)

// Registration across hosts: refusals are typed; an accepted registration
// adds the forwarding callback on the node (its connector notifies), the
// handler gets each message with its sender's metadata and origin, replies
// and sends go through the node, and DelCallback removes the callback on
// the node with the accounting settled. The node is another process on
// another loopback address; its connector runs on the in-memory transport,
// with a generator connector beside it.
func TestRemoteRegistration(t *testing.T) {
	node, addr := startNode(t, helperConfig{
		Listen: "127.0.0.2:0", Transport: "memory", Exports: []string{"5:1", "6:1"}, Local: []string{"6:1"},
		Generate: "5:1", Interval: 5 * time.Millisecond, Request: true,
	})
	gen := node.wait(regexp.MustCompile(`^generator port=(\d+)`), 5*time.Second)
	genPort, _ := strconv.Atoi(gen[1])
	s := newSubscriber(t, SubscriberConfig{})
	evs := watchEvents(s)
	ctx := context.Background()

	if err := addCallback(t, s, ctx, addr, id7, "nope", handlers.Sink()); !errors.Is(err, ErrNotExported) {
		t.Fatalf("non-exported id: got %v, want ErrNotExported", err)
	}
	if err := addCallback(t, s, ctx, addr, id6, "taken", handlers.Sink()); !errors.Is(err, cnactor.ErrDuplicate) {
		t.Fatalf("id with a local callback on the node: got %v, want cnactor.ErrDuplicate", err)
	}
	if err := addCallback(t, s, ctx, "127.0.0.1:1", id5, "nobody", handlers.Sink()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("nobody listening: got %v, want ErrUnreachable", err)
	}

	type got struct {
		m      transport.Message
		from   uint32
		group  uint32
		creds  transport.Credentials
		origin Origin
		replyE error
	}
	ch := make(chan got, 1024)
	h := handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		o, _ := OriginOf(hc)
		g := got{m: *m, from: hc.From(), group: hc.Group(), creds: hc.Creds(), origin: o}
		g.m.Data = append([]byte(nil), m.Data...)
		g.replyE = hc.Reply(append([]byte("re:"), m.Data...))
		if m.Seq == 3 {
			// A new message through the node, to the id's group: the
			// generator, a member, prints it.
			if err := hc.Send(transport.Addr{Group: 5}, &transport.Message{ID: id5, Data: []byte("hello")}); err != nil {
				t.Errorf("send through the node: %v", err)
			}
			if err := hc.Send(transport.Addr{Group: 6}, &transport.Message{ID: id6, Data: []byte("x")}); !errors.Is(err, ErrSendRefused) {
				t.Errorf("send with a foreign id: got %v, want ErrSendRefused", err)
			}
		}
		ch <- g
		return nil
	})
	if err := addCallback(t, s, ctx, addr, id5, "five", h); err != nil {
		t.Fatal(err)
	}
	if err := addCallback(t, s, ctx, addr, id5, "again", h); !errors.Is(err, cnactor.ErrDuplicate) {
		t.Fatalf("second registration of the same node and id: got %v, want cnactor.ErrDuplicate", err)
	}
	added := evs.waitFor(t, "added", testutil.WaitTimeout, func(ev Event) bool { return ev.Kind == EventAdded })
	if added.ID != id5 || added.Resubscribed || added.Node != addr {
		t.Fatalf("added event %+v", added)
	}
	node.wait(regexp.MustCompile(`^event connector added 5:1$`), 5*time.Second) // the node's connector
	node.wait(regexp.MustCompile(`^event subscriber-added 5:1`), 5*time.Second)

	var last uint64
	for i := 0; i < 10; i++ {
		var g got
		select {
		case g = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no delivery after %d", i)
		}
		if g.replyE != nil {
			t.Errorf("reply through the node: %v", g.replyE)
		}
		want := fmt.Sprintf("m%d", g.m.Seq)
		if g.m.ID != id5 || g.m.Ack != 2*g.m.Seq || g.m.Flags != 3 || string(g.m.Data) != want {
			t.Fatalf("message %+v (data %q)", g.m, g.m.Data)
		}
		if g.from != uint32(genPort) || g.group != 0 || g.creds.PID != uint32(node.cmd.Process.Pid) {
			t.Fatalf("metadata from=%d group=%d creds=%+v, want from=%d and the node's pid %d", g.from, g.group, g.creds, genPort, node.cmd.Process.Pid)
		}
		if g.origin.Node != addr || g.origin.Name == "" || g.origin.Instance == "" || g.origin.Seq <= last || g.origin.Received.IsZero() {
			t.Fatalf("origin %+v after seq %d", g.origin, last)
		}
		last = g.origin.Seq
	}
	// The generator's requests got our replies, through the node.
	node.wait(regexp.MustCompile(`^reply seq=\d+ ack=\d+ data=re:m\d+$`), 5*time.Second)
	node.wait(regexp.MustCompile(`^got from=\d+ group=5 data=hello$`), 5*time.Second)

	if err := s.DelCallback(addr, id5); err != nil {
		t.Fatal(err)
	}
	removed := evs.waitFor(t, "removed", testutil.WaitTimeout, func(ev Event) bool { return ev.Kind == EventRemoved })
	st := removed.Stats
	if removed.Reason != nil || removed.Retrying || st.InFlight != 0 || st.Lost != 0 ||
		st.Offered != st.Delivered+st.Dropped || st.Delivered != st.Handled+st.Failed || st.Delivered < 10 {
		t.Fatalf("removed event %+v", removed)
	}
	node.wait(regexp.MustCompile(`^event connector removed 5:1$`), 5*time.Second)
	m := node.wait(regexp.MustCompile(`^event subscriber-removed 5:1 offered=(\d+) sent=(\d+) dropped=(\d+) reason=nil`), 5*time.Second)
	if m[1] != fmt.Sprint(st.Offered) || m[3] != fmt.Sprint(st.Dropped) {
		t.Fatalf("node counts offered=%s dropped=%s, subscriber %+v", m[1], m[3], st)
	}
	if err := s.DelCallback(addr, id5); !errors.Is(err, cnactor.ErrNotFound) {
		t.Fatalf("second DelCallback: %v", err)
	}
	node.stop()
}

// A read-only export refuses replies and sends.
func TestRemoteReadOnly(t *testing.T) {
	node, addr := startNode(t, helperConfig{Listen: "127.0.0.2:0", Transport: "memory", Exports: []string{"5:1"},
		ReadOnly: true, Generate: "5:1", Interval: 5 * time.Millisecond})
	s := newSubscriber(t, SubscriberConfig{})
	errs := make(chan error, 100)
	if err := addCallback(t, s, context.Background(), addr, id5, "ro", handlers.HandlerFunc(func(hc handlers.Context, m *transport.Message) error {
		select {
		case errs <- hc.Reply([]byte("no")):
		default:
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, ErrSendRefused) {
			t.Fatalf("reply through a read-only export: got %v, want ErrSendRefused", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	node.stop()
}

// A subscriber killed: the node sees its connection end, removes its
// subscription and, as it was the last, the forwarding callback, with the
// connector's notification. A subscriber that leaves in order unsubscribes.
// Here the node is in this process and the subscribers are helpers.
func TestRemoteSubscriberKilled(t *testing.T) {
	c, _ := conntest.New(t)
	connEvents := make(chan cnactor.Event, 16)
	c.Watch(func(ev cnactor.Event) {
		if ev.ID == id5 {
			connEvents <- ev
		}
	})
	n, err := NewNode(c, NodeConfig{Host: sharedHost(t), Exports: []Export{{ID: id5}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	nodeEvents := make(chan NodeEvent, 16)
	n.Watch(func(ev NodeEvent) { nodeEvents <- ev })
	expect := func(kind EventKind) NodeEvent {
		t.Helper()
		select {
		case ev := <-nodeEvents:
			if ev.Kind != kind || ev.ID != id5 {
				t.Fatalf("node event %+v, want %v", ev, kind)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %v node event", kind)
		}
		return NodeEvent{}
	}
	expectConn := func(kind string) {
		t.Helper()
		select {
		case ev := <-connEvents:
			if ev.Kind.String() != kind {
				t.Fatalf("connector event %+v, want %s", ev, kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s connector event", kind)
		}
	}

	for _, orderly := range []bool{false, true} {
		sub := startHelper(t, "subscriber", helperConfig{Listen: "127.0.0.3:0", Node: n.Addr(), ID: "5:1"})
		sub.wait(regexp.MustCompile(`^subscribed`), 10*time.Second)
		expectConn("added")
		added := expect(EventAdded)
		if len(n.Stats()) != 1 || n.Stats()[0].Subscription != added.Subscription {
			t.Fatalf("stats %+v", n.Stats())
		}
		start := time.Now()
		if orderly {
			sub.stop()
		} else {
			sub.kill()
		}
		removed := expect(EventRemoved)
		expectConn("removed")
		t.Logf("orderly=%v: subscriber removed after %v: %v", orderly, time.Since(start).Round(time.Millisecond), removed.Reason)
		if orderly != (removed.Reason == nil) || !orderly && !errors.Is(removed.Reason, ErrSubscriberLost) {
			t.Fatalf("orderly=%v: reason %v", orderly, removed.Reason)
		}
		if len(n.Stats()) != 0 {
			t.Fatalf("stats after removal: %+v", n.Stats())
		}
		if _, ok := c.Callback(id5); ok {
			t.Fatal("the forwarding callback is still registered")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A slow subscriber with a small queue on the node: drops are counted on
// the node, reported in the stream before the next message (and those
// after the last one when the subscription ends), and the accounting
// holds: offered = delivered + dropped (+ lost, 0 here).
func TestRemoteSlowSubscriberAccounting(t *testing.T) {
	node, addr := startNode(t, helperConfig{Listen: "127.0.0.2:0", Transport: "memory", Exports: []string{"5:1"},
		Generate: "5:1", Interval: 200 * time.Microsecond})
	s := newSubscriber(t, SubscriberConfig{})
	evs := watchEvents(s)
	var mu sync.Mutex
	var handled, reported uint64
	h := &lossCounter{receive: func() {
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		handled++
		mu.Unlock()
	}, lost: func(n uint64, src handlers.LossSource) {
		if src != handlers.LossQueue {
			t.Errorf("loss from %v", src)
		}
		mu.Lock()
		reported += n
		mu.Unlock()
	}}
	if err := addCallback(t, s, context.Background(), addr, id5, "slow", h, WithWindow(4), WithQueue(8, cnactor.DropOldest)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := s.Callback(addr, id5)
		if st.Dropped > 50 && st.Delivered > 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.DelCallback(addr, id5); err != nil {
		t.Fatal(err)
	}
	m := node.wait(regexp.MustCompile(`^event subscriber-removed 5:1 offered=(\d+) sent=(\d+) dropped=(\d+) reason=nil`), 5*time.Second)
	offered, _ := strconv.ParseUint(m[1], 10, 64)
	dropped, _ := strconv.ParseUint(m[3], 10, 64)
	for _, st := range s.Stats() {
		t.Errorf("still registered: %+v", st)
	}
	st := evs.waitFor(t, "removed", testutil.WaitTimeout, func(ev Event) bool { return ev.Kind == EventRemoved }).Stats
	mu.Lock()
	defer mu.Unlock()
	if handled+dropped != offered || st.Offered != offered || st.Dropped != dropped || st.Delivered != handled ||
		st.Lost != 0 || st.InFlight != 0 {
		t.Fatalf("node: offered %d, dropped %d; handled %d; subscriber %+v", offered, dropped, handled, st)
	}
	// The handler is told every drop: those reported with deliveries in
	// the stream, and the rest from the node's final counters when the
	// subscription ends.
	if reported != dropped {
		t.Fatalf("the handler was told of %d losses, the node dropped %d", reported, dropped)
	}
	t.Logf("offered %d, handled %d, dropped %d, all told to the handler", offered, handled, dropped)
	node.stop()
}

type lossCounter struct {
	receive func()
	lost    func(uint64, handlers.LossSource)
}

func (l *lossCounter) Receive(handlers.Context, *transport.Message) error { l.receive(); return nil }
func (l *lossCounter) Lost(n uint64, src handlers.LossSource)             { l.lost(n, src) }
