package remote

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/remote/wire"
	"go.uber.org/zap"
)

// Messages to the subscriber's actors.
type (
	addReg struct{ r *registration }
	delReg struct {
		r    *registration
		done chan struct{}
	}
	probed struct {
		r       *registration
		attempt int
		err     error
	}
	subscribeExpired struct {
		r       *registration
		request uint64
	}
	unsubscribeExpired struct{ r *registration }
	terminated         struct{ *actor.Terminated }
	finish             struct{ done chan struct{} }
	notice             struct{ ev Event }
)

// ctlActor drives every registration's subscription: probing, subscribing,
// watching the node, heartbeats, resubscribing, ending.
type ctlActor struct {
	s         *Subscriber
	regs      map[*registration]*ctlState
	byRequest map[uint64]*registration
	bySub     map[uint64]*registration
	byOutlet  map[string]*registration
}

// ctlState is a registration's subscription state, owned by the control
// actor.
type ctlState struct {
	state     regState
	attempt   int
	request   uint64
	sub       uint64
	outlet    *actor.PID
	lastHeard time.Time
	// what the last acknowledgement said, and when
	credited   uint64
	lastCredit time.Time
	backoff    time.Duration
	retryAt    time.Time
	ever       bool
	done       chan struct{} // DelCallback waiting
}

func newCtlActor(s *Subscriber) *ctlActor {
	return &ctlActor{s: s, regs: map[*registration]*ctlState{}, byRequest: map[uint64]*registration{},
		bySub: map[uint64]*registration{}, byOutlet: map[string]*registration{}}
}

func (a *ctlActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *addReg:
		st := &ctlState{backoff: minBackoff}
		a.regs[m.r] = st
		a.attempt(ctx, m.r, st)
	case *probed:
		a.probed(ctx, m)
	case *wire.Subscribed:
		a.subscribed(ctx, m)
	case *wire.Refused:
		r := a.byRequest[m.Request]
		delete(a.byRequest, m.Request)
		if st := a.regs[r]; st != nil && st.state == stSubscribing && st.request == m.Request {
			a.failed(ctx, r, st, codeError(m.Code, m.Reason), true)
		}
	case *subscribeExpired:
		if st := a.regs[m.r]; st != nil && st.state == stSubscribing && st.request == m.request {
			delete(a.byRequest, m.request)
			a.failed(ctx, m.r, st, fmt.Errorf("remote: subscribing to %s: no answer in time: %w", m.r.key.node, cnactor.ErrTimeout), false)
		}
	case *wire.Heartbeat:
		if r := a.bySub[m.Subscription]; r != nil {
			a.regs[r].lastHeard = time.Now()
			r.counters(m.Subscription, m.Counters, false)
		}
	case *wire.Ended:
		a.ended(ctx, m)
	case *actor.Terminated:
		// A system message overtakes the user messages queued before it,
		// such as the Ended the outlet sent before it stopped: queue it
		// behind them.
		ctx.Send(ctx.Self(), &terminated{m})
	case *terminated:
		r := a.byOutlet[m.Who.Id]
		if st := a.regs[r]; st != nil && st.outlet != nil && st.outlet.Id == m.Who.Id {
			switch st.state {
			case stRemoving:
				a.finish(ctx, r, st)
			case stActive:
				a.lost(ctx, r, st, fmt.Errorf("%w: %s: %s", ErrNodeLost, r.key.node, m.Why))
			}
		}
	case *wire.SendResult:
		a.s.pendMu.Lock()
		ch := a.s.pending[m.Request]
		delete(a.s.pending, m.Request)
		a.s.pendMu.Unlock()
		if ch != nil {
			ch <- m
		}
	case *tick:
		a.tick(ctx)
	case *delReg:
		st := a.regs[m.r]
		if st == nil {
			close(m.done)
			return
		}
		st.done = m.done
		if st.state == stActive {
			st.state = stRemoving
			m.r.setState(stRemoving)
			ctx.Request(m.r.node, &wire.Unsubscribe{Subscription: st.sub})
			time.AfterFunc(unsubscribeTimeout, func() { a.s.root.Send(ctx.Self(), &unsubscribeExpired{r: m.r}) })
			return
		}
		a.finish(ctx, m.r, st)
	case *unsubscribeExpired:
		if st := a.regs[m.r]; st != nil && st.state == stRemoving {
			m.r.log.Warn("no final counters from the node in time")
			a.finish(ctx, m.r, st)
		}
	}
}

// attempt starts one try to subscribe: a probe of the node, then Subscribe.
func (a *ctlActor) attempt(ctx actor.Context, r *registration, st *ctlState) {
	st.state = stSubscribing
	r.setState(stSubscribing)
	st.attempt++
	attempt, self, t := st.attempt, ctx.Self(), a.s.host.tls
	go func() {
		err := probe(r.ctx, r.key.node, t)
		a.s.root.Send(self, &probed{r: r, attempt: attempt, err: err})
	}()
}

func (a *ctlActor) probed(ctx actor.Context, m *probed) {
	st := a.regs[m.r]
	if st == nil || st.state != stSubscribing || st.attempt != m.attempt {
		return
	}
	if m.err != nil {
		a.failed(ctx, m.r, st, m.err, false)
		return
	}
	r := m.r
	st.request = a.s.reqs.Add(1)
	a.byRequest[st.request] = r
	ctx.Request(r.node, &wire.Subscribe{
		Request: st.request, Idx: r.key.id.Idx, Val: r.key.id.Val, Name: r.name,
		Subscriber: a.s.cfg.Name, Inlet: r.inlet.Id,
		Window: uint32(max(r.rc.window, 0)), Queue: uint32(max(r.rc.queue, 0)), DropOldest: r.rc.dropOldest,
		HeartbeatMs: uint32(a.s.hb / time.Millisecond),
	})
	req, self := st.request, ctx.Self()
	time.AfterFunc(subscribeTimeout, func() { a.s.root.Send(self, &subscribeExpired{r: r, request: req}) })
}

func (a *ctlActor) subscribed(ctx actor.Context, m *wire.Subscribed) {
	r := a.byRequest[m.Request]
	delete(a.byRequest, m.Request)
	st := a.regs[r]
	if st == nil || st.state != stSubscribing || st.request != m.Request {
		// An answer we stopped waiting for: give the subscription back.
		if ctx.Sender() != nil {
			ctx.Request(ctx.Sender(), &wire.Unsubscribe{Subscription: m.Subscription})
		}
		return
	}
	st.state, st.sub = stActive, m.Subscription
	st.credited, st.lastCredit = 0, time.Time{}
	st.outlet = actor.NewPID(r.key.node, m.Outlet)
	st.lastHeard = time.Now()
	st.backoff = minBackoff
	ctx.Watch(st.outlet)
	a.bySub[st.sub] = r
	a.byOutlet[st.outlet.Id] = r
	r.info.Store(&nodeInfo{name: m.Node, instance: m.Instance, boot: m.BootUnixNano, sub: m.Subscription})
	live := make(chan struct{})
	r.live.Store(&live)
	r.statMu.Lock()
	r.state = stActive
	r.subs++
	r.record(m.Subscription)
	r.statMu.Unlock()
	resub := st.ever
	st.ever = true
	r.log.Info("subscribed", zap.String("node_name", m.Node), zap.String("subscription", subHex(m.Subscription)),
		zap.Bool("resubscribed", resub))
	if r.added != nil {
		r.added <- nil
		r.added = nil
	}
	a.event(r, Event{Kind: EventAdded, NodeName: m.Node, Subscription: m.Subscription, Resubscribed: resub})
}

// failed handles an attempt that failed: the first one fails AddCallback;
// later ones retry, unless the node refused (refusal), which ends the
// registration.
func (a *ctlActor) failed(ctx actor.Context, r *registration, st *ctlState, err error, refusal bool) {
	if r.added != nil {
		r.added <- err
		r.added = nil
		a.drop(ctx, r, st)
		return
	}
	if refusal {
		r.log.Warn("resubscription refused; remote callback removed", zap.Error(err))
		a.drop(ctx, r, st)
		r.setState(stEnded)
		a.event(r, Event{Kind: EventRemoved, Reason: err})
		go a.s.retire(r) // waits for the inlet actor: not on this actor
		return
	}
	r.log.Debug("subscription attempt failed", zap.Error(err))
	a.wait(r, st)
}

// wait schedules the next attempt.
func (a *ctlActor) wait(r *registration, st *ctlState) {
	st.state = stWaiting
	r.setState(stWaiting)
	st.retryAt = time.Now().Add(st.backoff)
	st.backoff = min(2*st.backoff, maxBackoff)
}

// lost handles a node that vanished, closed, or ended the subscription.
func (a *ctlActor) lost(ctx actor.Context, r *registration, st *ctlState, reason error) {
	a.unsubscribed(ctx, r, st)
	r.statMu.Lock()
	r.outages++
	r.statMu.Unlock()
	r.log.Warn("node lost; subscribing again when it is back", zap.Error(reason))
	a.wait(r, st)
	st.retryAt = time.Now() // the first retry is immediate
	a.event(r, Event{Kind: EventRemoved, Reason: reason, Retrying: true})
}

// unsubscribed forgets the current subscription; its record keeps what
// arrived, and whatever did not is lost.
func (a *ctlActor) unsubscribed(ctx actor.Context, r *registration, st *ctlState) {
	if live := r.live.Swap(nil); live != nil {
		close(*live)
	}
	// No Unwatch: the outlet's Terminated is ignored from now on, and
	// unwatching a node that vanished would make protoactor dial it again
	// (and sleep 2s when that fails, holding up whatever is sent to it).
	if st.outlet != nil {
		delete(a.byOutlet, st.outlet.Id)
		st.outlet = nil
	}
	if st.sub != 0 {
		if r := a.bySub[st.sub]; r != nil {
			r.statMu.Lock()
			r.record(st.sub).over = true
			r.statMu.Unlock()
		}
		delete(a.bySub, st.sub)
		st.sub = 0
	}
}

// drop forgets a registration.
func (a *ctlActor) drop(ctx actor.Context, r *registration, st *ctlState) {
	a.unsubscribed(ctx, r, st)
	if st.request != 0 {
		delete(a.byRequest, st.request)
	}
	st.state = stEnded
	delete(a.regs, r)
}

func (a *ctlActor) ended(ctx actor.Context, m *wire.Ended) {
	r := a.bySub[m.Subscription]
	if r == nil {
		return
	}
	r.counters(m.Subscription, m.Counters, true)
	st := a.regs[r]
	if st == nil || st.sub != m.Subscription {
		delete(a.bySub, m.Subscription)
		return
	}
	switch st.state {
	case stRemoving:
		a.finish(ctx, r, st)
	case stActive:
		reason := codeError(m.Code, m.Reason)
		if m.Code == wire.Code_CODE_CLOSED {
			reason = fmt.Errorf("%w: %s", ErrNodeClosed, r.key.node)
		}
		a.lost(ctx, r, st, reason)
	}
}

// finish ends a registration being removed: once the inlet has handled
// everything that arrived before, DelCallback is told.
func (a *ctlActor) finish(ctx actor.Context, r *registration, st *ctlState) {
	a.drop(ctx, r, st)
	r.setState(stEnded)
	done := st.done
	if done == nil {
		done = make(chan struct{})
	}
	ctx.Send(r.inlet, &finish{done: done})
}

func (a *ctlActor) tick(ctx actor.Context) {
	now := time.Now()
	for r, st := range a.regs {
		switch st.state {
		case stActive:
			r.creditMu.Lock()
			received := uint64(0)
			if r.creditSub == st.sub {
				received = r.credits
			}
			r.creditMu.Unlock()
			// The acknowledgement doubles as this side's heartbeat.
			if received != st.credited || now.Sub(st.lastCredit) >= a.s.hb/2 {
				st.credited, st.lastCredit = received, now
				ctx.Send(st.outlet, &wire.Credit{Subscription: st.sub, Received: received})
			}
			if silence := now.Sub(st.lastHeard); silence > missedHeartbeats*a.s.hb+tickInterval {
				a.lost(ctx, r, st, fmt.Errorf("%w: %s: no heartbeat for %v", ErrNodeLost, r.key.node, silence.Round(time.Millisecond)))
			}
		case stWaiting:
			if !now.Before(st.retryAt) {
				a.attempt(ctx, r, st)
			}
		}
	}
}

// event emits ev for r to the watchers, and to the handler in stream order
// if it is an EventObserver.
func (a *ctlActor) event(r *registration, ev Event) {
	ev.Node, ev.ID, ev.Name = r.key.node, r.key.id, r.name
	ev.Stats = r.stats()
	a.s.emit(ev)
	if _, ok := r.h.(EventObserver); ok {
		a.s.root.Send(r.inlet, &notice{ev: ev})
	}
}
