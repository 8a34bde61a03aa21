package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/conntest"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// localNode is a node in this process, on the shared host, over an
// in-memory connector, with a peer endpoint that sends to it.
type localNode struct {
	net   *memory.Network
	c     *cnactor.Connector
	n     *Node
	peer  *memory.Conn
	added chan NodeEvent
}

func newLocalNode(t *testing.T, exports ...Export) *localNode {
	t.Helper()
	c, net := conntest.New(t)
	n, err := NewNode(c, NodeConfig{Host: sharedHost(t), Exports: exports})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	ln := &localNode{net: net, c: c, n: n, peer: peer, added: make(chan NodeEvent, 16)}
	stop := n.Watch(func(ev NodeEvent) {
		if ev.Kind == EventAdded {
			ln.added <- ev
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		defer cancel()
		stop()
		n.Close(ctx)
		c.Close(ctx)
		peer.Close()
	})
	return ln
}

// subscribed waits until the node offers its messages to a new
// subscription: the subscriber's AddCallback returns on the node's answer,
// which the node sends before it adds the subscription to the forwarder.
func (ln *localNode) subscribed(t *testing.T) {
	t.Helper()
	select {
	case <-ln.added:
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("the node never added the subscription")
	}
}

// recv takes one value from ch, failing the test after WaitTimeout.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("nothing arrived")
		panic("unreachable")
	}
}

func (ln *localNode) send(t *testing.T, id transport.CbID, seq uint32) {
	t.Helper()
	m := &transport.Message{ID: id, Seq: seq, Ack: 10 * seq, Data: []byte{byte(seq)}}
	if err := ln.peer.Send(context.Background(), transport.Addr{Port: ln.c.Port()}, m); err != nil {
		t.Fatal(err)
	}
}

// A remote handler's errors and panics fail their message only; the
// handler goes on, its Context carries the subscriber's cancellation and
// the callback's identity, and handlers.ErrStop removes the remote
// callback.
func TestRemoteHandlerFailures(t *testing.T) {
	id := transport.CbID{Idx: 0x5350, Val: 1}
	ln := newLocalNode(t, Export{ID: id})
	s := newSubscriber(t, SubscriberConfig{})
	evs := watchEvents(s)
	type seen struct {
		id      transport.CbID
		name    string
		logger  bool
		live    bool
		noValue bool
	}
	got := make(chan seen, 8)
	h := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		cb, name := ctx.Callback()
		_, hasDeadline := ctx.Deadline()
		got <- seen{cb, name, ctx.Logger() != nil, ctx.Err() == nil && !hasDeadline && ctx.Done() != nil, ctx.Value(id) == nil}
		switch m.Seq {
		case 1:
			return errors.New("handler error")
		case 2:
			panic("handler panic")
		case 4:
			return handlers.ErrStop
		}
		return nil
	})
	addr := ln.n.Addr()
	if err := s.AddCallback(context.Background(), addr, id, "failing", h); err != nil {
		t.Fatal(err)
	}
	ln.subscribed(t)
	for seq := uint32(1); seq <= 3; seq++ {
		ln.send(t, id, seq)
	}
	testutil.WaitFor(t, "three deliveries", func() bool {
		st, ok := s.Callback(addr, id)
		return ok && st.Handled+st.Failed == 3
	})
	st, _ := s.Callback(addr, id)
	if st.Failed != 2 || st.Handled != 1 || st.Delivered != 3 {
		t.Fatalf("stats %+v, want 2 failed (error, panic) and 1 handled", st)
	}
	for range 3 {
		if sn := recv(t, got); sn.id != id || sn.name != "failing" || !sn.logger || !sn.live || !sn.noValue {
			t.Fatalf("context said %+v", sn)
		}
	}
	ln.send(t, id, 4)
	evs.waitFor(t, "removed after ErrStop", testutil.WaitTimeout, func(ev Event) bool {
		return ev.Kind == EventRemoved && ev.ID == id
	})
	testutil.WaitFor(t, "the node to drop the forwarding callback", func() bool {
		_, ok := ln.c.Callback(id)
		return !ok
	})
	if _, listed := s.Callback(addr, id); listed {
		t.Fatal("a remote callback removed by handlers.ErrStop is still listed")
	}
	// Gone for good: the id registers again.
	if err := s.AddCallback(context.Background(), addr, id, "again", handlers.Sink()); err != nil {
		t.Fatalf("AddCallback after a removal by handlers.ErrStop: %v", err)
	}
}

// Replies and sends go through the node; an id other than the
// subscription's is refused; once the node is gone a reply fails instead
// of waiting for an answer that cannot come.
func TestRemoteSendThrough(t *testing.T) {
	id := transport.CbID{Idx: 0x5351, Val: 1}
	ln := newLocalNode(t, Export{ID: id})
	s := newSubscriber(t, SubscriberConfig{})
	addr := ln.n.Addr()
	gate := make(chan struct{})
	results := make(chan [3]error, 2)
	h := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		if m.Seq == 2 {
			<-gate
		}
		var r [3]error
		r[0] = ctx.Reply([]byte("re"))
		r[1] = ctx.Send(transport.Addr{Port: ctx.From()}, &transport.Message{ID: id, Data: []byte("new")})
		r[2] = ctx.Send(transport.Addr{Port: ctx.From()}, &transport.Message{ID: transport.CbID{Idx: 0x5351, Val: 2}})
		results <- r
		return nil
	})
	if err := s.AddCallback(context.Background(), addr, id, "sender", h); err != nil {
		t.Fatal(err)
	}
	ln.subscribed(t)
	ln.send(t, id, 1)
	r := recv(t, results)
	if r[0] != nil || r[1] != nil || !errors.Is(r[2], ErrSendRefused) {
		t.Fatalf("reply %v, send %v, send with another id %v", r[0], r[1], r[2])
	}
	b := transport.NewBatch(4)
	var msgs []transport.Received
	for len(msgs) < 2 {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
		err := ln.peer.ReceiveBatch(ctx, b)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b.Messages...)
	}
	if m := msgs[0]; m.From != ln.c.Port() || m.Seq != 1 || m.Ack != 11 || string(m.Data) != "re" {
		t.Fatalf("reply %+v", m)
	}
	if m := msgs[1]; m.Seq == 0 || string(m.Data) != "new" {
		t.Fatalf("send %+v: want the node connector's seq", m)
	}

	// The next message waits in the handler while the node goes away.
	ln.send(t, id, 2)
	testutil.WaitFor(t, "the second delivery", func() bool {
		st, _ := s.Callback(addr, id)
		return st.Delivered == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if err := ln.n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(gate)
	r = recv(t, results)
	for i, err := range r[:2] {
		if !errors.Is(err, ErrSendRefused) && !errors.Is(err, ErrNodeLost) && !errors.Is(err, ErrNodeClosed) {
			t.Fatalf("send %d through a closed node = %v", i, err)
		}
	}
}

// forkEvent is the payload of a proc fork event (40 bytes after cn_msg).
func forkEvent(cpu, child uint32) []byte {
	b := make([]byte, 40)
	binary.NativeEndian.PutUint32(b[0:], uint32(proc.WhatFork))
	binary.NativeEndian.PutUint32(b[4:], cpu)
	binary.NativeEndian.PutUint64(b[8:], 1e9)
	binary.NativeEndian.PutUint32(b[16:], 1)
	binary.NativeEndian.PutUint32(b[20:], 1)
	binary.NativeEndian.PutUint32(b[24:], child)
	binary.NativeEndian.PutUint32(b[28:], child)
	return b
}

// A fleet proc stream from a node exporting the proc connector: events
// the node's kernel multicasts arrive labelled with the host; a gap in a
// CPU's sequence numbers becomes a Lost event; options apply; Close ends
// the stream.
func TestRemoteProcStream(t *testing.T) {
	ln := newLocalNode(t, ProcExport())
	nodes, err := ParseProcNodes(" web1=" + ln.n.Addr() + " ,")
	if err != nil || len(nodes) != 1 || nodes[0].Host != "web1" {
		t.Fatalf("ParseProcNodes = %+v, %v", nodes, err)
	}
	for _, bad := range []string{"", " , ", "a=1.2.3.4:1,a=1.2.3.5:1", "a=x]y"} {
		if _, err := ParseProcNodes(bad); err == nil {
			t.Errorf("ParseProcNodes(%q) accepted", bad)
		}
	}
	if n, err := ParseProcNodes("10.0.0.1"); err != nil || n[0].Addr != net.JoinHostPort("10.0.0.1", strconv.Itoa(DefaultPort)) || n[0].Host != n[0].Addr {
		t.Fatalf("default port: %+v %v", n, err)
	}
	s := newSubscriber(t, SubscriberConfig{})
	var events atomic.Int64
	var mu sync.Mutex
	var hosts []string
	ps, err := ListenProc(context.Background(), s, nodes, WithProcEvents(proc.WhatFork), WithProcBuffer(16),
		WithProcRemote(WithWindow(64)))
	if err != nil {
		t.Fatal(err)
	}
	ln.subscribed(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ps.Events() {
			if ev.Event != nil {
				events.Add(1)
				mu.Lock()
				hosts = append(hosts, ev.Host)
				mu.Unlock()
			}
		}
	}()
	kernel := ln.net.Kernel()
	for i, seq := range []uint32{1, 2, 5} { // 3 and 4 missing
		m := &transport.Message{ID: proc.ID(), Seq: seq, Data: forkEvent(0, 100+uint32(i))}
		if err := kernel.Send(context.Background(), transport.Addr{Group: proc.ID().Idx}, m); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "three forks and the gap", func() bool {
		st := ps.Stats()
		return st[0].Events == 3 && st[0].Lost == 2
	})
	if err := ps.Close(); err != nil {
		t.Fatal(err)
	}
	recv(t, done)
	mu.Lock()
	defer mu.Unlock()
	for _, h := range hosts {
		if h != "web1" {
			t.Fatalf("event labelled %q", h)
		}
	}
	if events.Load() != 4 { // three forks and one Lost
		t.Fatalf("%d events on the stream, want 3 forks and a Lost", events.Load())
	}
}

// A node that shuts down and comes back without the export: the
// subscriber, which kept subscribing again, is refused and gives the
// remote callback up for good; one that comes back with it gets it back.
func TestRemoteResubscription(t *testing.T) {
	kept := transport.CbID{Idx: 0x5363, Val: 1}
	dropped := transport.CbID{Idx: 0x5363, Val: 2}
	first := newLocalNode(t, Export{ID: kept}, Export{ID: dropped})
	addr := first.n.Addr()
	s := newSubscriber(t, SubscriberConfig{})
	evs := watchEvents(s)
	for _, id := range []transport.CbID{kept, dropped} {
		if err := s.AddCallback(context.Background(), addr, id, id.String(), handlers.Sink()); err != nil {
			t.Fatal(err)
		}
		first.subscribed(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()
	if err := first.n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []transport.CbID{kept, dropped} {
		ev := evs.waitFor(t, "removed with the node", testutil.WaitTimeout, func(ev Event) bool {
			return ev.Kind == EventRemoved && ev.ID == id
		})
		if !ev.Retrying || !errors.Is(ev.Reason, ErrNodeClosed) {
			t.Fatalf("%v removed: %+v", id, ev)
		}
	}
	// The same host, so the same address: a new node exporting one of the two.
	second := newLocalNode(t, Export{ID: kept})
	if second.n.Addr() != addr {
		t.Fatalf("new node at %s, not %s", second.n.Addr(), addr)
	}
	back := evs.waitFor(t, "kept resubscribed", testutil.WaitTimeout, func(ev Event) bool {
		return ev.Kind == EventAdded && ev.ID == kept && ev.Resubscribed
	})
	if back.Node != addr {
		t.Fatalf("resubscribed %+v", back)
	}
	refused := evs.waitFor(t, "dropped refused", testutil.WaitTimeout, func(ev Event) bool {
		return ev.Kind == EventRemoved && ev.ID == dropped && !ev.Retrying
	})
	if !errors.Is(refused.Reason, ErrNotExported) {
		t.Fatalf("refusal %+v", refused)
	}
	second.subscribed(t)
	second.send(t, kept, 1)
	testutil.WaitFor(t, "a delivery after the resubscription", func() bool {
		st, _ := s.Callback(addr, kept)
		return st.Handled >= 1
	})
	// Refused for good: the remote callback is gone, and the id can be
	// registered again (here the node refuses it again, as not exported).
	testutil.WaitFor(t, "the refused callback unlisted", func() bool { _, listed := s.Callback(addr, dropped); return !listed })
	if err := s.AddCallback(context.Background(), addr, dropped, "again", handlers.Sink()); !errors.Is(err, ErrNotExported) {
		t.Fatalf("adding the refused id again: %v, want the node's refusal", err)
	}
}

// Heartbeats lost while the connection stays up: the node's actor is held
// (an export's Start hook that waits), so its subscriptions' heartbeats
// stop; the subscriber declares the node lost (ErrNodeLost, retrying)
// after three silent intervals, and subscribes again once the node
// answers.
func TestRemoteHeartbeatLoss(t *testing.T) {
	live := transport.CbID{Idx: 0x5364, Val: 1}
	slow := transport.CbID{Idx: 0x5364, Val: 2}
	hold := make(chan struct{})
	ln := newLocalNode(t, Export{ID: live}, Export{ID: slow, Start: func(ctx context.Context, _ *cnactor.Connector) error {
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil
	}})
	addr := ln.n.Addr()
	s := newSubscriber(t, SubscriberConfig{Heartbeat: 50 * time.Millisecond})
	evs := watchEvents(s)
	if err := s.AddCallback(context.Background(), addr, live, "live", handlers.Sink()); err != nil {
		t.Fatal(err)
	}
	ln.subscribed(t)
	added := make(chan error, 1)
	go func() { added <- s.AddCallback(context.Background(), addr, slow, "slow", handlers.Sink()) }()
	lost := evs.waitFor(t, "the node declared lost", testutil.WaitTimeout, func(ev Event) bool {
		return ev.Kind == EventRemoved && ev.ID == live
	})
	if !lost.Retrying || !errors.Is(lost.Reason, ErrNodeLost) {
		t.Fatalf("removed %+v, want ErrNodeLost and retrying", lost)
	}
	close(hold)
	if err := recv(t, added); err != nil {
		t.Fatalf("the held registration: %v", err)
	}
	evs.waitFor(t, "resubscribed", testutil.WaitTimeout, func(ev Event) bool {
		return ev.Kind == EventAdded && ev.ID == live && ev.Resubscribed
	})
}

// A reply the node never answers (its actor is held) gives up after the
// send timeout with cnactor.ErrTimeout, instead of holding the handler forever.
// Heartbeats are slow here, so that the node is not declared lost first.
func TestRemoteSendThroughTimeout(t *testing.T) {
	live := transport.CbID{Idx: 0x5365, Val: 1}
	slow := transport.CbID{Idx: 0x5365, Val: 2}
	hold, held := make(chan struct{}), make(chan struct{})
	ln := newLocalNode(t, Export{ID: live}, Export{ID: slow, Start: func(ctx context.Context, _ *cnactor.Connector) error {
		close(held)
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil
	}})
	addr := ln.n.Addr()
	s := newSubscriber(t, SubscriberConfig{Heartbeat: time.Minute})
	replies := make(chan error, 1)
	h := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		replies <- ctx.Reply([]byte("late"))
		return nil
	})
	if err := s.AddCallback(context.Background(), addr, live, "live", h); err != nil {
		t.Fatal(err)
	}
	ln.subscribed(t)
	added := make(chan error, 1)
	go func() { added <- s.AddCallback(context.Background(), addr, slow, "slow", handlers.Sink()) }()
	recv(t, held)
	ln.send(t, live, 1) // delivered by the outlet, which the held node actor does not stop
	if err := recv(t, replies); !errors.Is(err, cnactor.ErrTimeout) {
		t.Fatalf("reply through a held node = %v, want cnactor.ErrTimeout", err)
	}
	// The registration that holds the node started its wait first: it
	// has timed out as well.
	if err := recv(t, added); !errors.Is(err, cnactor.ErrTimeout) {
		t.Fatalf("subscribing to a held node = %v, want cnactor.ErrTimeout", err)
	}
	close(hold)
}
