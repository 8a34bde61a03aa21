package remote

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
)

// message once and offers it to every subscription of the id.
type forwarder struct {
	n        *Node
	exp      *Export
	subs     atomic.Pointer[[]*subscription] // copy on write, by the node actor
	annotate func(m *transport.Message) *wire.Process
}

var _ handlers.LossObserver = (*forwarder)(nil)

func (f *forwarder) list() []*subscription {
	if p := f.subs.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *forwarder) add(s *subscription) {
	next := append(append([]*subscription(nil), f.list()...), s)
	f.subs.Store(&next)
}

func (f *forwarder) remove(s *subscription) {
	var next []*subscription
	for _, x := range f.list() {
		if x != s {
			next = append(next, x)
		}
	}
	f.subs.Store(&next)
}

// Receive offers m to every subscription; it never blocks.
func (f *forwarder) Receive(ctx handlers.Context, m *transport.Message) error {
	subs := f.list()
	if len(subs) == 0 {
		return nil
	}
	it := &item{
		from: ctx.From(), group: ctx.Group(), creds: ctx.Creds(),
		seq: m.Seq, ack: m.Ack, flags: m.Flags, data: bytes.Clone(m.Data), stamp: time.Now().UnixNano(),
	}
	if f.annotate != nil {
		it.process = f.annotate(m)
	}
	for _, s := range subs {
		if s.q.offer(it) && s.scheduled.CompareAndSwap(false, true) {
			f.n.root.Send(s.outlet, flushMsg)
		}
	}
	return nil
}

// Lost passes the node's own losses on to every subscription, in order.
func (f *forwarder) Lost(n uint64, source handlers.LossSource) {
	for _, s := range f.list() {
		s.q.lost(n, source == handlers.LossMailbox)
	}
}

// outletActor sends one subscription's queue to its subscriber within the
