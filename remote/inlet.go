package remote

import (
	"errors"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// EventObserver is implemented by remote handlers that want their own
// callback's events in stream order: an EventRemoved after the last message
// from the lost node, an EventAdded before the first one after it is back.
type EventObserver interface {
	RemoteEvent(ev Event)
}

// inletActor runs a remote handler on what its subscriptions deliver.
type inletActor struct {
	r        *registration
	sub      uint64
	lastSeq  uint64
	received uint64
	credited uint64
	rc       remoteContext
	msg      transport.Message
}

func newInletActor(r *registration) *inletActor {
	a := &inletActor{r: r}
	a.rc.r = r
	return a
}

func (a *inletActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *wire.Deliveries:
		a.deliveries(ctx, m)
	case *notice:
		if o, ok := a.r.h.(EventObserver); ok {
			a.guard("RemoteEvent", func() { o.RemoteEvent(m.ev) })
		}
	case *finish:
		a.tellTail(a.sub)
		if s, ok := a.r.h.(handlers.Stopper); ok {
			a.guard("OnStop", s.OnStop)
		}
		close(m.done)
	}
}

func (a *inletActor) guard(hook string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			a.r.log.Error("remote handler "+hook+" panicked; ignored", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
		}
	}()
	f()
}

func (a *inletActor) deliveries(ctx actor.Context, m *wire.Deliveries) {
	r := a.r
	if m.Subscription != a.sub {
		if a.sub != 0 {
			a.tellTail(a.sub) // the previous subscription has ended
		}
		a.sub, a.lastSeq, a.received, a.credited = m.Subscription, 0, 0, 0
	}
	a.rc.sub = a.sub
	for _, d := range m.Items {
		var gap uint64
		if d.Seq > a.lastSeq+1 {
			gap = d.Seq - a.lastSeq - 1
		}
		lostInTransit := gap - min(gap, d.Dropped)
		a.lastSeq = max(a.lastSeq, d.Seq)
		r.statMu.Lock()
		rec := r.record(a.sub)
		rec.seen = a.lastSeq
		rec.offered = max(rec.offered, d.Seq)
		rec.dropped += d.Dropped
		rec.transport += lostInTransit
		rec.socket += d.SocketLost
		rec.mailbox += d.MailboxLost
		rec.delivered++
		r.statMu.Unlock()
		a.lost(d.SocketLost, handlers.LossSocket)
		a.lost(d.MailboxLost, handlers.LossMailbox)
		a.lost(d.Dropped, handlers.LossQueue)
		a.lost(lostInTransit, handlers.LossTransport)
		a.msg = transport.Message{ID: r.key.id, Seq: d.CnSeq, Ack: d.Ack, Flags: uint16(d.Flags), Data: d.Data}
		a.rc.d = d
		err := a.handle()
		a.rc.d = nil
		r.statMu.Lock()
		if err != nil {
			r.failed++
		} else {
			r.handled++
		}
		r.statMu.Unlock()
		a.received++
		if errors.Is(err, handlers.ErrStop) {
			go r.s.remove(r, nil)
		}
	}
	r.creditMu.Lock()
	r.creditSub, r.credits = a.sub, a.received
	r.creditMu.Unlock()
	if a.received-a.credited >= uint64(max(r.rc.window/4, 1)) && r.live.Load() != nil {
		a.credited = a.received
		ctx.Send(actor.NewPID(r.key.node, outletName(a.sub)), &wire.Credit{Subscription: a.sub, Received: a.received})
	}
}

// tellTail tells the handler what subscription sub lost after its last
// delivery, once the subscription is over: drops the node counted in its
// final counters beyond those reported with deliveries, and messages it
// offered that never arrived. Without it a handler's count of lost
// messages would stop at the last gap a delivery revealed, while the
// subscription's stats (and the node) say more.
func (a *inletActor) tellTail(sub uint64) {
	if sub == 0 {
		return
	}
	r := a.r
	r.statMu.Lock()
	var rec *subRecord
	for _, x := range r.records {
		if x.id == sub {
			rec = x
		}
	}
	if rec == nil || !rec.over || rec.tailTold {
		r.statMu.Unlock()
		return
	}
	rec.tailTold = true
	queue := rec.drops() - rec.dropped
	rest := rec.offered - min(rec.offered, rec.delivered+rec.drops())
	transit := rest - min(rest, rec.transport)
	r.statMu.Unlock()
	a.lost(queue, handlers.LossQueue)
	a.lost(transit, handlers.LossTransport)
}

// handle calls the handler; a panic is a failure of this message only.
func (a *inletActor) handle() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &handlers.PanicError{Value: p, Stack: debug.Stack()}
			a.r.log.Warn("remote handler panicked; message dropped", zap.Uint32("seq", a.msg.Seq), zap.Any("panic", p),
				zap.ByteString("stack", debug.Stack()))
		}
	}()
	err = a.r.h.Receive(&a.rc, &a.msg)
	if err != nil && !errors.Is(err, handlers.ErrStop) {
		a.r.log.Warn("remote handler failed; message dropped", zap.Uint32("seq", a.msg.Seq), zap.Error(err))
	}
	return err
}

// lost tells a handlers.LossObserver that n messages were lost at src
// (the node's socket or forwarding mailbox, the subscription's queue, the
// transport) before the next one it receives.
func (a *inletActor) lost(n uint64, src handlers.LossSource) {
	if o, ok := a.r.h.(handlers.LossObserver); ok && n > 0 {
		a.guard("Lost", func() { o.Lost(n, src) })
	}
}
