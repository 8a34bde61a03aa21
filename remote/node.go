package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/watch"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Export is a callback id a node offers to remote subscribers.
type Export struct {
	ID transport.CbID
	// Name is the name of the local callback that forwards to the
	// subscribers (default "remote IDX:VAL").
	Name string
	// Options configure the local callback: sender policy, mailbox,
	// supervision, as for Connector.AddCallback. The default mailbox holds
	// DefaultForwarderMailbox messages.
	Options []cnactor.CallbackOption
	// ReadOnly refuses replies and sends through the node.
	ReadOnly bool
	// Start runs right after the local callback is registered (the proc
	// export subscribes with the kernel); if it fails, the callback is
	// removed again and the subscriber refused.
	Start func(ctx context.Context, c *cnactor.Connector) error
	// Stop runs after the local callback is removed.
	Stop func(ctx context.Context, c *cnactor.Connector) error

	// annotator, for proc exports, builds the function that attaches what
	// /proc says about the process to each event.
	annotator func() func(m *transport.Message) *wire.Process
}

func (e *Export) name() string {
	if e.Name != "" {
		return e.Name
	}
	return "remote " + e.ID.String()
}

// Node defaults and limits.
const (
	// DefaultForwarderMailbox is the mailbox of a forwarding callback: it
	// only copies each message into the subscribers' queues.
	DefaultForwarderMailbox = 1 << 14
	// DefaultMaxWindow and DefaultMaxQueue cap what subscribers may ask
	// for.
	DefaultMaxWindow = 1 << 14
	DefaultMaxQueue  = 1 << 18
	// DefaultHeartbeat is how often nodes and subscribers tell each other
	// they are alive; three missed in a row mean the other side is lost.
	DefaultHeartbeat = time.Second
	// missedHeartbeats is how many intervals of silence declare a peer
	// lost.
	missedHeartbeats = 3
	// tickInterval drives heartbeats and liveness checks.
	tickInterval = 100 * time.Millisecond
	// maxBatchItems and maxBatchBytes bound one Deliveries message.
	maxBatchItems = 256
	maxBatchBytes = 256 << 10
	// nodeActorName is the node actor's well-known name at its address.
	nodeActorName = "cnactor-node"
	// hookTimeout bounds an export's Start and Stop.
	hookTimeout = 5 * time.Second
)

// NodeConfig configures a node.
type NodeConfig struct {
	// Host, when set, is the host the node runs on (shared with a
	// Subscriber, say); it stays the caller's, and Listen, Advertise and
	// TLS are not used. Otherwise the node starts a host of its own.
	Host *Host
	// Listen is the address the node accepts subscribers on (default
	// DefaultListen, loopback only). Listening on all interfaces needs
	// Advertise.
	Listen string
	// Advertise is the host:port subscribers dial, when it is not Listen.
	Advertise string
	// Exports are the callback ids subscribers may register for; anything
	// else is refused with ErrNotExported.
	Exports []Export
	// TLS, when set, makes the node accept and dial only TLS connections;
	// with MutualTLS, subscribers must present a certificate its CAs
	// signed.
	TLS *TLS
	// Name is the node's name in the subscribers' events (default the host
	// name).
	Name string
	// Logger receives the node's logs, protoactor's included (default:
	// none).
	Logger *zap.Logger
	// MaxWindow and MaxQueue cap the credit window and queue a subscriber
	// may ask for (defaults DefaultMaxWindow, DefaultMaxQueue).
	MaxWindow, MaxQueue int
}

// Node exports callback ids of a connector to remote subscribers. Its
// methods are safe for concurrent use.
type Node struct {
	c        *cnactor.Connector
	cfg      NodeConfig
	host     *Host
	ownHost  bool
	log      *zap.Logger
	root     *actor.RootContext
	pid      *actor.PID
	name     string
	instance string
	boot     int64
	exports  map[transport.CbID]*Export

	tickStop chan struct{}
	tickDone chan struct{}
	sends    sync.WaitGroup

	mu     sync.Mutex
	closed bool
	view   map[uint64]*subscription // for Stats

	watchers watch.List[NodeEvent]
}

// NewNode starts a node that exports cfg.Exports of c. The connector stays
// the caller's: close the node before it.
func NewNode(c *cnactor.Connector, cfg NodeConfig) (*Node, error) {
	if c == nil {
		return nil, errors.New("remote: nil connector")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxWindow <= 0 {
		cfg.MaxWindow = DefaultMaxWindow
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	n := &Node{
		c: c, cfg: cfg, log: log.Named("remote-node"), name: cfg.Name, instance: randomID(),
		boot: bootUnixNano(), exports: map[transport.CbID]*Export{},
		tickStop: make(chan struct{}), tickDone: make(chan struct{}),
		view: map[uint64]*subscription{},
	}
	for i := range cfg.Exports {
		e := cfg.Exports[i]
		if _, dup := n.exports[e.ID]; dup {
			return nil, fmt.Errorf("remote: %s exported twice", e.ID)
		}
		n.exports[e.ID] = &e
	}
	h := cfg.Host
	if h == nil {
		var err error
		if h, err = NewHost(HostConfig{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.TLS, Logger: log}); err != nil {
			return nil, err
		}
		n.ownHost = true
	}
	if err := h.claim(true); err != nil {
		return nil, err
	}
	n.host, n.root = h, h.system.Root
	pid, err := n.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newNodeActor(n) }), nodeActorName)
	if err != nil {
		h.release(true)
		if n.ownHost {
			h.Close(context.Background())
		}
		return nil, fmt.Errorf("remote: node actor: %w", err)
	}
	n.pid = pid
	go n.tick()
	n.log.Info("node listening", zap.String("addr", n.Addr()), zap.Stringers("exports", n.exportIDs()))
	return n, nil
}

// Addr is the address subscribers dial.
func (n *Node) Addr() string { return n.host.Addr() }

// Name is the node's name as subscribers see it.
func (n *Node) Name() string { return n.name }

func (n *Node) exportIDs() []transport.CbID {
	ids := make([]transport.CbID, 0, len(n.exports))
	for id := range n.exports {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		return ids[i].Idx < ids[j].Idx || ids[i].Idx == ids[j].Idx && ids[i].Val < ids[j].Val
	})
	return ids
}

// Exports lists the exported ids.
func (n *Node) Exports() []transport.CbID { return n.exportIDs() }

func (n *Node) tick() {
	defer close(n.tickDone)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.tickStop:
			return
		case <-t.C:
			n.root.Send(n.pid, tickMsg)
		}
	}
}

// NodeEventKind says what happened to a subscription.
type NodeEventKind uint8

const (
	// SubscriberAdded: a subscriber registered for an exported id.
	SubscriberAdded NodeEventKind = iota
	// SubscriberRemoved: a subscription ended.
	SubscriberRemoved
)

func (k NodeEventKind) String() string {
	if k == SubscriberRemoved {
		return "subscriber-removed"
	}
	return "subscriber-added"
}

// NodeEvent reports a subscription starting or ending on the node. The
// connector's own callback events (Connector.Watch) fire as well, when the
// first subscriber of an id registers the forwarding callback and when the
// last one leaves and it is removed.
type NodeEvent struct {
	Kind NodeEventKind
	SubscriptionStats
	// Reason, for SubscriberRemoved: nil when the subscriber unsubscribed
	// (or subscribed again, replacing it), ErrSubscriberLost when its
	// connection broke or its heartbeats stopped, ErrNodeClosed when the
	// node closed.
	Reason error
}

// Watch calls fn for every subscription added or removed, from the node's
// actor (keep it short). The returned function stops the watch.
func (n *Node) Watch(fn func(NodeEvent)) (stop func()) { return n.watchers.Add(fn) }

func (n *Node) emit(ev NodeEvent) { n.watchers.Emit(ev) }

// SubscriptionStats are one subscription's counters on the node: Offered =
// Sent + Dropped + Queued.
type SubscriptionStats struct {
	Subscription uint64
	ID           transport.CbID
	Name         string
	// Subscriber is the address of the subscriber, Instance its instance.
	Subscriber, Instance string
	Window, Queue        int
	Offered              uint64 // messages the forwarder gave this subscription
	Sent                 uint64 // sent to the subscriber
	Dropped              uint64 // dropped by the full queue (or left in it at the end)
	Queued               uint64
	Acked                uint64 // acknowledged by the subscriber
	SocketLost           uint64 // node socket drops reported to it
	MailboxLost          uint64 // forwarder mailbox drops reported to it
}

// Stats returns the counters of the current subscriptions, by id then
// subscription.
func (n *Node) Stats() []SubscriptionStats {
	n.mu.Lock()
	subs := make([]*subscription, 0, len(n.view))
	for _, s := range n.view {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	out := make([]SubscriptionStats, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.stats(s.q.counters()))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ID != b.ID {
			return a.ID.Idx < b.ID.Idx || a.ID.Idx == b.ID.Idx && a.ID.Val < b.ID.Val
		}
		return a.Subscription < b.Subscription
	})
	return out
}

// Close ends every subscription (subscribers are told, with the final
// counters, and will subscribe again if the node comes back), removes the
// forwarding callbacks from the connector, and stops the node's actors and
// listener, within ctx.
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	done := &closeNode{done: make(chan []*actor.PID, 1)}
	n.root.Send(n.pid, done)
	var outlets []*actor.PID
	select {
	case outlets = <-done.done:
	case <-ctx.Done():
	}
	for _, o := range outlets {
		n.root.PoisonFuture(o).Wait()
	}
	n.root.StopFuture(n.pid).Wait()
	close(n.tickStop)
	<-n.tickDone
	n.sends.Wait()
	n.host.release(true)
	if n.ownHost {
		n.host.Close(ctx)
	}
	n.log.Info("node closed")
	return ctx.Err()
}

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
	tick      struct{}
	flush     struct{}
	endSub    struct{ ended *wire.Ended } // nil: do not tell the subscriber
	silent    struct{ sub uint64 }
	closeNode struct{ done chan []*actor.PID }
)

var (
	tickMsg  = &tick{}
	flushMsg = &flush{}
)

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
	a.n.emit(NodeEvent{Kind: SubscriberAdded, SubscriptionStats: s.stats(s.q.counters())})
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
	a.n.emit(NodeEvent{Kind: SubscriberRemoved, SubscriptionStats: s.stats(final), Reason: why})
}

// send sends a message from the node's connector on a subscription's
// behalf, in a goroutine (a unicast send may wait for a full peer), and
// answers the sender with a SendResult.
func (a *nodeActor) send(ctx actor.Context, m *wire.SendRequest) {
	from := ctx.Sender()
	if from == nil {
		return
	}
	res := &wire.SendResult{Request: m.Request}
	s := a.subs[m.Subscription]
	id := transport.CbID{Idx: m.Idx, Val: m.Val}
	switch {
	case s == nil:
		res.Code, res.Error = wire.Code_CODE_UNKNOWN_SUBSCRIPTION, "no subscription "+subHex(m.Subscription)
	case from.Address != s.ctl.Address:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, "not the subscription's subscriber"
	case s.exp.ReadOnly:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, s.cbid.String()+" is exported read-only"
	case id != s.cbid:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, "a subscription for "+s.cbid.String()+" cannot send with id "+id.String()
	}
	if res.Code != wire.Code_CODE_OK {
		ctx.Send(from, res)
		return
	}
	a.n.sends.Add(1)
	go func() {
		defer a.n.sends.Done()
		msg := transport.Message{ID: id, Seq: m.Seq, Ack: m.Ack, Flags: uint16(m.Flags), Data: m.Data}
		sctx, cancel := context.WithTimeout(context.Background(), 2*transport.DefaultSendTimeout)
		err := a.n.c.Send(sctx, transport.Addr{Port: m.Port, Group: m.Group}, &msg)
		cancel()
		res.Seq = msg.Seq
		if err != nil {
			res.Code, res.Error = wire.Code_CODE_SEND_FAILED, err.Error()
		}
		a.n.root.Send(from, res)
	}()
}

// forwarder is the local callback of an exported id: it copies each
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
// credit window, heartbeats it, and notices when it falls silent.
type outletActor struct {
	n         *Node
	s         *subscription
	sent      uint64 // deliveries sent
	received  uint64 // acknowledged by the subscriber
	lastHeard time.Time
	lastBeat  time.Time
	silent    bool
	done      bool
	buf       []entry
}

func (o *outletActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		o.lastHeard = time.Now()
	case *flush:
		o.s.scheduled.Store(false)
		o.drain(ctx)
	case *wire.Credit:
		if m.Subscription != o.s.id {
			return
		}
		o.lastHeard = time.Now()
		if m.Received > o.received {
			o.received = m.Received
			o.s.acked.Store(m.Received)
			o.drain(ctx)
		}
	case *tick:
		if o.done {
			return
		}
		now := time.Now()
		if now.Sub(o.lastBeat) >= o.s.hb {
			o.lastBeat = now
			ctx.Send(o.s.ctl, &wire.Heartbeat{Subscription: o.s.id, Counters: o.s.q.counters()})
		}
		if !o.silent && now.Sub(o.lastHeard) > missedHeartbeats*o.s.hb+tickInterval {
			o.silent = true
			ctx.Send(o.n.pid, &silent{sub: o.s.id})
		}
	case *endSub:
		o.done = true
		o.drain(ctx) // the queue is closed: nothing more is taken
		if m.ended != nil {
			ctx.Send(o.s.ctl, m.ended)
		}
		ctx.Stop(ctx.Self())
	}
}

// drain sends what is queued, as far as the credit window allows, in
// batches.
func (o *outletActor) drain(ctx actor.Context) {
	for {
		room := int64(o.s.window) - int64(o.sent-o.received)
		if room <= 0 {
			return
		}
		o.buf = o.s.q.take(o.buf[:0], int(min(room, maxBatchItems)), maxBatchBytes)
		if len(o.buf) == 0 {
			return
		}
		d := &wire.Deliveries{Subscription: o.s.id, Items: make([]*wire.Delivery, len(o.buf))}
		for i, e := range o.buf {
			it := e.it
			d.Items[i] = &wire.Delivery{
				Seq: e.seq, Dropped: e.dropped, SocketLost: e.socketLost, MailboxLost: e.mailboxLost,
				From: it.from, Group: it.group, Pid: it.creds.PID, Uid: it.creds.UID, Gid: it.creds.GID,
				CnSeq: it.seq, Ack: it.ack, Flags: uint32(it.flags), Data: it.data, Process: it.process, Stamp: it.stamp,
			}
		}
		clear(o.buf)
		o.sent += uint64(len(d.Items))
		ctx.Send(o.s.inlet, d)
	}
}

// Small helpers.

func outletName(sub uint64) string { return "cnactor-outlet-" + subHex(sub) }

func subHex(sub uint64) string { return strconv.FormatUint(sub, 16) }

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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

// bootUnixNano is the wall-clock time of the boot, from which the kernel's
// CLOCK_MONOTONIC timestamps (proc events) count.
func bootUnixNano() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Now().UnixNano() - ts.Nano()
}
