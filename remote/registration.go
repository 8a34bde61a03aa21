package remote

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// RegistrationStats are a remote callback's counters on the subscriber,
// over every subscription it had (one, plus one per resubscription).
// Offered = Delivered + Dropped + Lost + InFlight, where Offered counts the
// messages the node's forwarding callback offered to the subscription as
// far as the subscriber knows (deliveries, heartbeats, final counters).
// After DelCallback, InFlight is 0. Messages the node never received (it
// was down, or its socket overflowed: NodeSocketLost) are not in Offered.
type RegistrationStats struct {
	Node string
	ID   transport.CbID
	Name string
	// State is "subscribing", "subscribed", "reconnecting", "removing" or
	// "removed".
	State         string
	Subscription  uint64 // the current one, 0 when none
	Subscriptions uint64 // accepted subscriptions so far
	Outages       uint64 // times the node was lost or closed
	Offered       uint64
	Delivered     uint64 // Handled + Failed
	Handled       uint64
	Failed        uint64
	Dropped       uint64 // by the subscription's full queue on the node
	Lost          uint64 // sent by the node and never received
	InFlight      uint64
	// Upstream losses on the node, reported in the stream.
	NodeSocketLost, NodeMailboxLost uint64
}

type registration struct {
	s      *Subscriber
	key    regKey
	name   string
	h      handlers.Handler
	rc     regConfig
	node   *actor.PID // the node actor
	inlet  *actor.PID
	log    *zap.Logger
	ctx    context.Context // done once removed
	cancel context.CancelFunc
	added  chan error // the first outcome, for AddCallback

	removing atomic.Bool
	gone     chan struct{} // closed once removed

	info atomic.Pointer[nodeInfo] // of the current or last subscription
	// live is closed when the current subscription ends: replies and sends
	// waiting for the node give up.
	live atomic.Pointer[chan struct{}]

	// credit is what the inlet has received of its current subscription;
	// the control actor acknowledges it on every tick.
	creditMu           sync.Mutex
	creditSub, credits uint64

	statMu  sync.Mutex
	state   regState
	records []*subRecord
	handled uint64
	failed  uint64
	outages uint64
	subs    uint64
}

type nodeInfo struct {
	name, instance string
	boot           int64
	sub            uint64
}

type regState uint8

const (
	stSubscribing regState = iota
	stActive
	stWaiting
	stRemoving
	stEnded
)

func (s regState) String() string {
	return [...]string{"subscribing", "subscribed", "reconnecting", "removing", "removed"}[s]
}

// subRecord counts one subscription.
type subRecord struct {
	id        uint64
	offered   uint64 // highest known: last seq, heartbeat, final counters
	seen      uint64 // last seq delivered
	delivered uint64
	dropped   uint64 // reported with deliveries
	final     uint64 // dropped in all, from the final counters
	transport uint64 // gaps not explained by drops
	socket    uint64
	mailbox   uint64
	over      bool // ended or lost: whatever did not arrive is lost
	tailTold  bool // the handler has been told what was lost after the last delivery
}

func (rec *subRecord) drops() uint64 { return max(rec.dropped, rec.final) }

func (r *registration) setState(st regState) {
	r.statMu.Lock()
	r.state = st
	r.statMu.Unlock()
}

func (r *registration) record(sub uint64) *subRecord {
	for i := len(r.records) - 1; i >= 0; i-- {
		if r.records[i].id == sub {
			return r.records[i]
		}
	}
	rec := &subRecord{id: sub}
	r.records = append(r.records, rec)
	return rec
}

func (r *registration) stats() RegistrationStats {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	st := RegistrationStats{
		Node: r.key.node, ID: r.key.id, Name: r.name, State: r.state.String(),
		Subscriptions: r.subs, Outages: r.outages, Handled: r.handled, Failed: r.failed,
	}
	if info := r.info.Load(); info != nil && r.state == stActive {
		st.Subscription = info.sub
	}
	for _, rec := range r.records {
		st.Offered += rec.offered
		st.Delivered += rec.delivered
		st.Dropped += rec.drops()
		st.NodeSocketLost += rec.socket
		st.NodeMailboxLost += rec.mailbox
		rest := rec.offered - min(rec.offered, rec.delivered+rec.drops())
		if rec.over {
			st.Lost += rest
		} else {
			lost := min(rest, rec.transport)
			st.Lost += lost
			st.InFlight += rest - lost
		}
	}
	return st
}

// counters records what the node says of a subscription.
func (r *registration) counters(sub uint64, c *wire.Counters, final bool) {
	if c == nil {
		return
	}
	r.statMu.Lock()
	defer r.statMu.Unlock()
	rec := r.record(sub)
	rec.offered = max(rec.offered, c.Offered)
	if final {
		rec.final = c.Dropped
		rec.over = true
	}
}
