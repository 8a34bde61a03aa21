package remote

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// subscription is one subscriber's registration for one id on the node.
type subscription struct {
	id         uint64
	cbid       transport.CbID
	name       string
	instance   string
	ctl        *actor.PID // the subscriber's control actor
	inlet      *actor.PID // where deliveries go
	outlet     *actor.PID
	exp        *Export
	q          *subQueue
	window     uint64
	queueLimit int
	hb         time.Duration
	scheduled  atomic.Bool   // a flush is on its way to the outlet
	acked      atomic.Uint64 // for Stats
}

func (s *subscription) stats(c *wire.Counters) SubscriptionStats {
	return SubscriptionStats{
		Subscription: s.id, ID: s.cbid, Name: s.name, Subscriber: s.ctl.Address, Instance: s.instance,
		Window: int(s.window), Queue: s.queueLimit,
		Offered: c.Offered, Sent: c.Sent, Dropped: c.Dropped, Queued: c.Queued, Acked: s.acked.Load(),
		SocketLost: c.SocketLost, MailboxLost: c.MailboxLost,
	}
}

// Messages between the node's goroutines and actors.
type (
	flush     struct{}
	endSub    struct{ ended *wire.Ended } // nil: do not tell the subscriber
	silent    struct{ sub uint64 }
	closeNode struct{ done chan []*actor.PID }
)

var flushMsg = &flush{}

// nodeActor serialises registration: subscriptions, the forwarding
// callbacks, watches of subscribers, sends on their behalf.
type nodeActor struct {
	n       *Node
	subs    map[uint64]*subscription
	byCtl   map[string]map[uint64]*subscription
	fwds    map[transport.CbID]*forwarder
	closing bool
}

func newNodeActor(n *Node) *nodeActor {
	return &nodeActor{n: n, subs: map[uint64]*subscription{}, byCtl: map[string]map[uint64]*subscription{},
		fwds: map[transport.CbID]*forwarder{}}
}

func pidKey(p *actor.PID) string { return p.Address + "/" + p.Id }

func (a *nodeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *wire.Subscribe:
		a.subscribe(ctx, m)
	case *wire.Unsubscribe:
		if s := a.subs[m.Subscription]; s != nil && ctx.Sender() != nil && pidKey(ctx.Sender()) == pidKey(s.ctl) {
			a.end(ctx, s, wire.Code_CODE_UNSUBSCRIBED, "", true)
		}
	case *wire.SendRequest:
		a.send(ctx, m)
	case *actor.Terminated:
		// Queued behind the user messages that arrived before it (an
		// Unsubscribe), which a system message would overtake.
		ctx.Send(ctx.Self(), &terminated{m})
	case *terminated:
		for _, s := range a.byCtl[pidKey(m.Who)] {
			a.end(ctx, s, wire.Code_CODE_SUBSCRIBER_LOST, "subscriber terminated: "+m.Why.String(), false)
		}
	case *silent:
		if s := a.subs[m.sub]; s != nil {
			a.end(ctx, s, wire.Code_CODE_SUBSCRIBER_LOST, "no credit or heartbeat from the subscriber", true)
		}
	case *tick:
		for _, s := range a.subs {
			ctx.Send(s.outlet, tickMsg)
		}
	case *closeNode:
		a.closing = true
		outlets := make([]*actor.PID, 0, len(a.subs))
		for _, s := range a.subs {
			outlets = append(outlets, s.outlet)
			a.end(ctx, s, wire.Code_CODE_CLOSED, "node closing", true)
		}
		m.done <- outlets
	}
}

func (a *nodeActor) refuse(ctx actor.Context, to *actor.PID, req uint64, code wire.Code, reason string) {
	a.n.log.Info("subscription refused", zap.String("subscriber", to.Address), zap.Stringer("code", code), zap.String("reason", reason))
	ctx.Send(to, &wire.Refused{Request: req, Code: code, Reason: reason})
}

func (a *nodeActor) subscribe(ctx actor.Context, m *wire.Subscribe) {
	ctl := ctx.Sender()
	if ctl == nil || m.Inlet == "" {
		return
	}
	id := transport.CbID{Idx: m.Idx, Val: m.Val}
	if a.closing {
		a.refuse(ctx, ctl, m.Request, wire.Code_CODE_CLOSED, "node closing")
		return
	}
	exp := a.n.exports[id]
	if exp == nil {
		a.refuse(ctx, ctl, m.Request, wire.Code_CODE_NOT_EXPORTED, id.String()+" is not exported by "+a.n.name)
		return
	}
	// A subscriber asking again (its answer was lost, or it thought this
	// node gone) replaces its previous subscription.
	for _, old := range a.byCtl[pidKey(ctl)] {
		if old.cbid == id {
			a.end(ctx, old, wire.Code_CODE_UNSUBSCRIBED, "replaced by a new subscription", true)
		}
	}
	fwd := a.fwds[id]
	if fwd == nil {
		var code wire.Code
		var err error
		if fwd, code, err = a.register(exp); err != nil {
			a.refuse(ctx, ctl, m.Request, code, err.Error())
			return
		}
		a.fwds[id] = fwd
	}
	s := &subscription{
		id: randomSubID(), cbid: id, name: m.Name, instance: m.Subscriber, ctl: ctl,
		inlet: actor.NewPID(ctl.Address, m.Inlet), exp: exp,
		window:     uint64(clamp(int(m.Window), 1, a.n.cfg.MaxWindow, DefaultWindow)),
		queueLimit: clamp(int(m.Queue), 1, a.n.cfg.MaxQueue, DefaultQueue),
		hb:         time.Duration(clamp(int(m.HeartbeatMs), 50, 60000, int(DefaultHeartbeat/time.Millisecond))) * time.Millisecond,
	}
	s.q = newSubQueue(s.queueLimit, m.DropOldest)
	outlet, err := a.n.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &outletActor{n: a.n, s: s} }), outletName(s.id))
	if err != nil {
		a.refuse(ctx, ctl, m.Request, wire.Code_CODE_INTERNAL, err.Error())
		a.unregisterIfUnused(fwd)
		return
	}
	s.outlet = outlet
	a.subs[s.id] = s
	if a.byCtl[pidKey(ctl)] == nil {
		a.byCtl[pidKey(ctl)] = map[uint64]*subscription{}
		ctx.Watch(ctl)
	}
	a.byCtl[pidKey(ctl)][s.id] = s
	a.n.mu.Lock()
	a.n.view[s.id] = s
	a.n.mu.Unlock()
	// The answer leaves before any delivery can.
	ctx.Request(ctl, &wire.Subscribed{
		Request: m.Request, Subscription: s.id, Outlet: outlet.Id, Node: a.n.name, Instance: a.n.instance,
		Window: uint32(s.window), Queue: uint32(s.queueLimit), HeartbeatMs: uint32(s.hb / time.Millisecond),
		BootUnixNano: a.n.boot,
	})
	fwd.add(s)
	a.n.log.Info("subscriber added", zap.Stringer("id", id), zap.String("subscriber", ctl.Address),
		zap.String("subscription", subHex(s.id)))
	a.n.emit(NodeEvent{Kind: EventAdded, SubscriptionStats: s.stats(s.q.counters())})
}

// register adds the forwarding callback for an export and runs its Start.
func (a *nodeActor) register(exp *Export) (*forwarder, wire.Code, error) {
	fwd := &forwarder{n: a.n, exp: exp}
	if exp.annotator != nil {
		fwd.annotate = exp.annotator()
	}
	opts := append([]cnactor.CallbackOption{cnactor.WithMailbox(DefaultForwarderMailbox, cnactor.DropNewest)}, exp.Options...)
	if err := a.n.c.AddCallback(exp.ID, exp.name(), fwd, opts...); err != nil {
		if errors.Is(err, cnactor.ErrDuplicate) {
			return nil, wire.Code_CODE_DUPLICATE, err
		}
		if errors.Is(err, cnactor.ErrClosed) {
			return nil, wire.Code_CODE_CLOSED, err
		}
		return nil, wire.Code_CODE_INTERNAL, err
	}
	if exp.Start != nil {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		err := exp.Start(ctx, a.n.c)
		cancel()
		if err != nil {
			if derr := a.n.c.DelCallback(exp.ID); derr != nil {
				err = errors.Join(err, derr)
			}
			return nil, wire.Code_CODE_INTERNAL, fmt.Errorf("starting export %s: %w", exp.ID, err)
		}
	}
	return fwd, wire.Code_CODE_OK, nil
}

// unregisterIfUnused removes a forwarding callback that has no subscriber
// left; the connector notifies its watchers and subscribed groups.
func (a *nodeActor) unregisterIfUnused(fwd *forwarder) {
	if len(fwd.list()) > 0 || a.fwds[fwd.exp.ID] != fwd {
		return
	}
	delete(a.fwds, fwd.exp.ID)
	if err := a.n.c.DelCallback(fwd.exp.ID); err != nil && !errors.Is(err, cnactor.ErrClosed) {
		a.n.log.Warn("removing forwarding callback", zap.Stringer("id", fwd.exp.ID), zap.Error(err))
	}
	if fwd.exp.Stop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		if err := fwd.exp.Stop(ctx, a.n.c); err != nil && !errors.Is(err, cnactor.ErrClosed) {
			a.n.log.Warn("stopping export", zap.Stringer("id", fwd.exp.ID), zap.Error(err))
		}
		cancel()
	}
}

// end ends a subscription: its queue closes (what is left counts as
// dropped), the outlet sends what it already had, then Ended with the final
// counters (when tell is set), and stops.
func (a *nodeActor) end(ctx actor.Context, s *subscription, code wire.Code, reason string, tell bool) {
	if a.subs[s.id] != s {
		return
	}
	delete(a.subs, s.id)
	if m := a.byCtl[pidKey(s.ctl)]; m != nil {
		delete(m, s.id)
		if len(m) == 0 {
			delete(a.byCtl, pidKey(s.ctl))
			if tell { // not for a subscriber that vanished: protoactor would dial it again
				ctx.Unwatch(s.ctl)
			}
		}
	}
	a.n.mu.Lock()
	delete(a.n.view, s.id)
	a.n.mu.Unlock()
	fwd := a.fwds[s.cbid]
	if fwd != nil {
		fwd.remove(s)
	}
	final := s.q.close()
	var ended *wire.Ended
	if tell {
		ended = &wire.Ended{Subscription: s.id, Code: code, Reason: reason, Counters: final}
	}
	ctx.Send(s.outlet, &endSub{ended: ended})
	if fwd != nil {
		a.unregisterIfUnused(fwd)
	}
	var why error
	switch code {
	case wire.Code_CODE_UNSUBSCRIBED:
	case wire.Code_CODE_SUBSCRIBER_LOST:
		why = fmt.Errorf("%w: %s", ErrSubscriberLost, reason)
	default:
		why = codeError(code, reason)
	}
	a.n.log.Info("subscriber removed", zap.Stringer("id", s.cbid), zap.String("subscriber", s.ctl.Address),
		zap.String("subscription", subHex(s.id)), zap.Stringer("code", code), zap.String("reason", reason))
	a.n.emit(NodeEvent{Kind: EventRemoved, SubscriptionStats: s.stats(final), Reason: why})
}

// send sends a message from the node's connector on a subscription's
// behalf, in a goroutine (a unicast send may wait for a full peer), and
// Small helpers.

func outletName(sub uint64) string { return "cnactor-outlet-" + subHex(sub) }

func subHex(sub uint64) string { return strconv.FormatUint(sub, 16) }

func randomSubID() uint64 {
	for {
		var b [8]byte
		rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// clamp returns def for 0, else v bounded by lo and hi.
func clamp(v, lo, hi, def int) int {
	if v == 0 {
		v = def
	}
	return max(lo, min(v, hi))
}
