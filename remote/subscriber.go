package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
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
)

// Subscriber defaults.
const (
	// DefaultWindow is how many deliveries may be in flight to a remote
	// handler before the node waits for its acknowledgement.
	DefaultWindow = 1024
	// DefaultQueue is the capacity of a subscription's queue on the node.
	DefaultQueue = 4096
	// subscribeTimeout bounds one attempt to subscribe.
	subscribeTimeout = 2 * time.Second
	// unsubscribeTimeout bounds how long DelCallback waits for the node's
	// final counters.
	unsubscribeTimeout = 3 * time.Second
	// sendWait bounds a reply or send through the node: the node's own
	// send timeout plus the round trip.
	sendWait = 3 * transport.DefaultSendTimeout
	// Resubscription backoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Second
	// ctlActorName is the subscriber's control actor.
	ctlActorName = "cnactor-subscriber"
)

// SubscriberConfig configures a subscriber.
type SubscriberConfig struct {
	// Host, when set, is the host the subscriber runs on (shared with a
	// Node, say); it stays the caller's, and Listen, Advertise and TLS are
	// not used (the subscriber probes nodes with the host's TLS).
	// Otherwise the subscriber starts a host of its own.
	Host *Host
	// Listen is where the subscriber accepts the connections its nodes
	// dial back (default DefaultSubscriberListen: loopback, any port).
	// Subscribing to nodes on other hosts needs an address they reach.
	Listen string
	// Advertise is the host:port nodes dial, when it is not Listen.
	Advertise string
	// TLS, when set, makes the subscriber dial and accept only TLS; see
	// MutualTLS.
	TLS *TLS
	// Logger receives the subscriber's logs, protoactor's included.
	Logger *zap.Logger
	// Heartbeat is the interval at which the subscriber and its nodes tell
	// each other they are alive (default DefaultHeartbeat); three missed
	// in a row declare the other side lost.
	Heartbeat time.Duration
	// Name identifies the subscriber in the nodes' events (default the host
	// name and a random instance id).
	Name string
}

// Subscriber registers handlers for callback ids of remote nodes. Its
// methods are safe for concurrent use.
type Subscriber struct {
	cfg      SubscriberConfig
	host     *Host
	ownHost  bool
	tls      *TLS
	log      *zap.Logger
	instance string
	root     *actor.RootContext
	ctl      *actor.PID
	hb       time.Duration

	mu     sync.Mutex
	regs   map[regKey]*registration
	closed bool
	nextIn atomic.Uint64

	reqs    atomic.Uint64
	pendMu  sync.Mutex
	pending map[uint64]chan *wire.SendResult

	watchers watch.List[Event]

	tickStop, tickDone chan struct{}
}

type regKey struct {
	node string
	id   transport.CbID
}

// NewSubscriber starts a subscriber: an actor system with protoactor's
// remote listening on cfg.Listen.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultSubscriberListen
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Subscriber{
		cfg: cfg, log: log.Named("remote-subscriber"), instance: randomID(), hb: cfg.Heartbeat,
		regs: map[regKey]*registration{}, pending: map[uint64]chan *wire.SendResult{},
		tickStop: make(chan struct{}), tickDone: make(chan struct{}),
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		s.cfg.Name = host + "/" + s.instance
	}
	h := cfg.Host
	if h == nil {
		var err error
		if h, err = NewHost(HostConfig{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.TLS, Logger: log}); err != nil {
			return nil, err
		}
		s.ownHost = true
	}
	if err := h.claim(false); err != nil {
		return nil, err
	}
	s.host, s.root, s.tls = h, h.system.Root, h.tls
	var err error
	s.ctl, err = s.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newCtlActor(s) }), ctlActorName)
	if err != nil {
		h.release(false)
		if s.ownHost {
			h.Close(context.Background())
		}
		return nil, fmt.Errorf("remote: subscriber actor: %w", err)
	}
	go s.tick()
	return s, nil
}

// Addr is the address nodes dial this subscriber at.
func (s *Subscriber) Addr() string { return s.host.Addr() }

func (s *Subscriber) tick() {
	defer close(s.tickDone)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-s.tickStop:
			return
		case <-t.C:
			s.root.Send(s.ctl, tickMsg)
		}
	}
}

// An Option configures one remote callback.
type Option interface{ apply(*regConfig) }

type regConfig struct {
	window     int
	queue      int
	dropOldest bool
}

type optionFunc func(*regConfig)

func (f optionFunc) apply(c *regConfig) { f(c) }

// WithWindow sets how many deliveries may be in flight unacknowledged
// (default DefaultWindow; the node may cap it).
func WithWindow(n int) Option { return optionFunc(func(c *regConfig) { c.window = n }) }

// WithQueue sets the capacity of the subscription's queue on the node and
// what a full one drops (default DefaultQueue, DropNewest; the node may cap
// it). Drops are counted and reported before the next delivered message.
func WithQueue(n int, overflow cnactor.Overflow) Option {
	return optionFunc(func(c *regConfig) { c.queue, c.dropOldest = n, overflow == cnactor.DropOldest })
}

// AddCallback registers h, under name, for the callback id of the node at
// address node (host:port), as Connector.AddCallback does locally: the node
// registers a forwarding callback for the id (its connector's watchers and
// notification groups see it added) and h receives every message that
// callback receives, with the sender's metadata and the origin (see
// OriginOf), one at a time, in order. AddCallback returns once the node
// accepted, or with the reason it did not: ErrNotExported, ErrDuplicate,
// ErrUnauthenticated, ErrTLS, ErrUnreachable, ErrTimeout (errors.Is).
// Afterwards the subscription is kept: a node that vanishes is reported
// (EventRemoved, Retrying) and subscribed again when it returns.
func (s *Subscriber) AddCallback(ctx context.Context, node string, id transport.CbID, name string, h handlers.Handler, opts ...Option) error {
	if h == nil {
		return errors.New("remote: nil handler")
	}
	if _, _, err := net.SplitHostPort(node); err != nil {
		return fmt.Errorf("remote: node address %q: %w", node, err)
	}
	rc := regConfig{window: DefaultWindow, queue: DefaultQueue}
	for _, o := range opts {
		o.apply(&rc)
	}
	key := regKey{node: node, id: id}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.regs[key] != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s at %s", ErrDuplicate, id, node)
	}
	r := &registration{
		s: s, key: key, name: name, h: h, rc: rc, node: actor.NewPID(node, nodeActorName),
		log:   s.log.With(zap.String("node", node), zap.Stringer("id", id), zap.String("name", name)),
		added: make(chan error, 1), gone: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	s.regs[key] = r
	s.mu.Unlock()
	inlet, err := s.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newInletActor(r) }),
		"cnactor-inlet-"+s.instance+"-"+strconv.FormatUint(s.nextIn.Add(1), 10))
	if err != nil {
		s.forget(r)
		return fmt.Errorf("remote: inlet actor: %w", err)
	}
	r.inlet = inlet
	added := r.added // the control actor clears the field once it answered
	s.root.Send(s.ctl, &addReg{r: r})
	select {
	case err := <-added:
		if err != nil {
			s.root.StopFuture(inlet).Wait()
			r.cancel()
			s.forget(r)
		}
		return err
	case <-ctx.Done():
		s.remove(r, nil)
		return ctx.Err()
	}
}

func (s *Subscriber) forget(r *registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.regs[r.key] == r {
		delete(s.regs, r.key)
	}
}

// DelCallback removes the remote callback for id at node, as
// Connector.DelCallback: the subscription ends on the node (which removes
// its forwarding callback when it was the last one), the handler finishes
// what already arrived, and an EventRemoved reports the final counters.
// Messages still queued on the node are counted as dropped.
func (s *Subscriber) DelCallback(node string, id transport.CbID) error {
	s.mu.Lock()
	r := s.regs[regKey{node: node, id: id}]
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%w: %s at %s", ErrNotFound, id, node)
	}
	return s.remove(r, nil)
}

// remove ends a registration for good and waits for it.
func (s *Subscriber) remove(r *registration, ctx context.Context) error {
	if !r.removing.CompareAndSwap(false, true) {
		<-r.gone
		return nil
	}
	defer close(r.gone)
	// Replies and sends waiting for the node give up; the node refuses
	// them once it ends the subscription anyway.
	r.cancel()
	done := make(chan struct{})
	s.root.Send(s.ctl, &delReg{r: r, done: done})
	wait := time.NewTimer(unsubscribeTimeout + time.Second)
	defer wait.Stop()
	var cdone <-chan struct{}
	if ctx != nil {
		cdone = ctx.Done()
	}
	select {
	case <-done:
	case <-wait.C:
		r.log.Warn("remote callback did not finish in time")
	case <-cdone:
	}
	s.root.StopFuture(r.inlet).Wait()
	r.cancel()
	s.forget(r)
	st := r.stats()
	s.emit(Event{Kind: EventRemoved, Node: r.key.node, ID: r.key.id, Name: r.name, Stats: st})
	return nil
}

// retire ends a registration the control actor has already dropped (a
// refused resubscription): its context is cancelled, its inlet stopped,
// and it is no longer listed, so that its id can be added again.
func (s *Subscriber) retire(r *registration) {
	if !r.removing.CompareAndSwap(false, true) {
		return // a DelCallback or Close is ending it
	}
	defer close(r.gone)
	r.cancel()
	s.root.StopFuture(r.inlet).Wait()
	s.forget(r)
}

// Close removes every remote callback (see DelCallback) and stops the
// subscriber, within ctx.
func (s *Subscriber) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	regs := make([]*registration, 0, len(s.regs))
	for _, r := range s.regs {
		regs = append(regs, r)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Go(func() { s.remove(r, ctx) })
	}
	wg.Wait()
	close(s.tickStop)
	<-s.tickDone
	s.root.StopFuture(s.ctl).Wait()
	s.host.release(false)
	if s.ownHost {
		s.host.Close(ctx)
	}
	return ctx.Err()
}

// EventKind says what happened to a remote callback.
type EventKind uint8

const (
	// EventAdded: the node accepted the subscription (again, after a loss,
	// when Resubscribed is set).
	EventAdded EventKind = iota
	// EventRemoved: the callback is no longer subscribed on the node.
	EventRemoved
)

func (k EventKind) String() string {
	if k == EventRemoved {
		return "removed"
	}
	return "added"
}

// Event reports a remote callback subscribed or unsubscribed.
type Event struct {
	Kind EventKind
	Node string // the node's address
	ID   transport.CbID
	Name string
	// NodeName and Subscription, for EventAdded, are the node's name and
	// the subscription's number there.
	NodeName     string
	Subscription uint64
	// Resubscribed, for EventAdded: the callback had been removed by a
	// loss and is back.
	Resubscribed bool
	// Reason, for EventRemoved: nil after DelCallback or Close; ErrNodeLost
	// when the node's connection broke or its heartbeats stopped;
	// ErrNodeClosed when it shut down; a refusal (ErrNotExported, ...)
	// when it no longer accepts the subscription.
	Reason error
	// Retrying, for EventRemoved: the subscriber keeps subscribing again
	// until the node accepts, DelCallback or Close.
	Retrying bool
	// Stats are the callback's counters at the time.
	Stats RegistrationStats
}

// Watch calls fn for every remote callback added or removed, in order per
// callback, from the subscriber's control actor or from DelCallback (keep
// it short). The returned function stops the watch.
func (s *Subscriber) Watch(fn func(Event)) (stop func()) { return s.watchers.Add(fn) }

func (s *Subscriber) emit(ev Event) { s.watchers.Emit(ev) }

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

// Stats returns the counters of every remote callback, by node then id.
func (s *Subscriber) Stats() []RegistrationStats {
	s.mu.Lock()
	regs := make([]*registration, 0, len(s.regs))
	for _, r := range s.regs {
		regs = append(regs, r)
	}
	s.mu.Unlock()
	out := make([]RegistrationStats, 0, len(regs))
	for _, r := range regs {
		out = append(out, r.stats())
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.ID.Idx < b.ID.Idx || a.ID.Idx == b.ID.Idx && a.ID.Val < b.ID.Val
	})
	return out
}

// Callback returns the counters of the remote callback for id at node.
func (s *Subscriber) Callback(node string, id transport.CbID) (RegistrationStats, bool) {
	s.mu.Lock()
	r := s.regs[regKey{node: node, id: id}]
	s.mu.Unlock()
	if r == nil {
		return RegistrationStats{}, false
	}
	return r.stats(), true
}

// registration is one remote callback: what the user asked for, kept
// across subscriptions.
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
			a.failed(ctx, m.r, st, fmt.Errorf("%w: subscribing to %s", ErrTimeout, m.r.key.node), false)
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
	attempt, self, t := st.attempt, ctx.Self(), a.s.tls
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

// LossSource says where messages for a remote callback were lost.
type LossSource uint8

const (
	// LossNodeSocket: the node's socket receive queue overflowed (its drop
	// counter); the messages may have been for any id.
	LossNodeSocket LossSource = iota
	// LossNodeMailbox: the node's forwarding callback's mailbox was full.
	LossNodeMailbox
	// LossQueue: this subscription's queue on the node was full.
	LossQueue
	// LossTransport: sent by the node and never received (the connection
	// broke).
	LossTransport
)

func (s LossSource) String() string {
	return [...]string{"node-socket", "node-mailbox", "queue", "transport"}[s]
}

// LossObserver is implemented by remote handlers that want to know, in
// stream order, that messages were lost before the next one they receive.
// A handler that is only a handlers.LossObserver is told too: node socket
// and transport losses as LossSocket, node mailbox and queue drops as
// LossMailbox.
type LossObserver interface {
	RemoteLost(n uint64, source LossSource)
}

// EventObserver is implemented by remote handlers that want their own
// callback's events in stream order: an EventRemoved after the last message
// from the lost node, an EventAdded before the first one after it is back.
type EventObserver interface {
	RemoteEvent(ev Event)
}

// Origin is where a remotely delivered message comes from.
type Origin struct {
	Node         string // the node's address
	Name         string // the node's name (its host name unless configured)
	Instance     string // the node process's instance
	Subscription uint64
	Seq          uint64    // the message's number in the subscription
	Received     time.Time // when the node's callback received it (node clock)
}

// Context is the handlers.Context of a remote handler: Reply and Send go
// through the origin node's connector.
type Context interface {
	handlers.Context
	Origin() Origin
}

// OriginOf returns the origin of the message a remote handler is handling.
func OriginOf(ctx handlers.Context) (Origin, bool) {
	rc, ok := ctx.(*remoteContext)
	if !ok {
		return Origin{}, false
	}
	return rc.Origin(), true
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
		a.lost(d.SocketLost, LossNodeSocket)
		a.lost(d.MailboxLost, LossNodeMailbox)
		a.lost(d.Dropped, LossQueue)
		a.lost(lostInTransit, LossTransport)
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
	a.lost(queue, LossQueue)
	a.lost(transit, LossTransport)
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

func (a *inletActor) lost(n uint64, src LossSource) {
	if n == 0 {
		return
	}
	switch o := a.r.h.(type) {
	case LossObserver:
		a.guard("RemoteLost", func() { o.RemoteLost(n, src) })
	case handlers.LossObserver:
		ls := handlers.LossSocket
		if src == LossNodeMailbox || src == LossQueue {
			ls = handlers.LossMailbox
		}
		a.guard("Lost", func() { o.Lost(n, ls) })
	}
}

// remoteContext is the Context of the message an inlet is handling.
type remoteContext struct {
	r   *registration
	d   *wire.Delivery
	sub uint64
}

var _ Context = (*remoteContext)(nil)

func (c *remoteContext) Deadline() (time.Time, bool) { return c.r.ctx.Deadline() }
func (c *remoteContext) Done() <-chan struct{}       { return c.r.ctx.Done() }
func (c *remoteContext) Err() error                  { return c.r.ctx.Err() }
func (c *remoteContext) Value(key any) any           { return c.r.ctx.Value(key) }
func (c *remoteContext) Logger() *zap.Logger         { return c.r.log }
func (c *remoteContext) Callback() (transport.CbID, string) {
	return c.r.key.id, c.r.name
}
func (c *remoteContext) From() uint32  { return c.d.From }
func (c *remoteContext) Group() uint32 { return c.d.Group }
func (c *remoteContext) Creds() transport.Credentials {
	return transport.Credentials{PID: c.d.Pid, UID: c.d.Uid, GID: c.d.Gid}
}

func (c *remoteContext) Origin() Origin {
	o := Origin{Node: c.r.key.node, Subscription: c.sub}
	if info := c.r.info.Load(); info != nil {
		o.Name, o.Instance = info.name, info.instance
	}
	if c.d != nil {
		o.Seq = c.d.Seq
		o.Received = time.Unix(0, c.d.Stamp)
	}
	return o
}

// Reply answers the message through the origin node, as the connector
// protocol wants: same id, same seq, ack + 1, to the sender's port.
func (c *remoteContext) Reply(data []byte) error {
	_, err := c.r.s.sendThrough(c.r, &wire.SendRequest{
		Subscription: c.sub, Port: c.d.From, Idx: c.r.key.id.Idx, Val: c.r.key.id.Val,
		Seq: c.d.CnSeq, Ack: c.d.Ack + 1, Data: data, Reply: true,
	})
	return err
}

// Send sends m from the origin node's connector socket, with the callback's
// id; a zero m.Seq goes out as the node connector's next one (m is not modified).
func (c *remoteContext) Send(to transport.Addr, m *transport.Message) error {
	_, err := c.r.s.sendThrough(c.r, &wire.SendRequest{
		Subscription: c.sub, Port: to.Port, Group: to.Group, Idx: m.ID.Idx, Val: m.ID.Val,
		Seq: m.Seq, Ack: m.Ack, Flags: uint32(m.Flags), Data: m.Data,
	})
	return err
}

// sendThrough asks the node to send for a registration and waits for the
// result.
func (s *Subscriber) sendThrough(r *registration, req *wire.SendRequest) (uint32, error) {
	live := r.live.Load()
	if req.Subscription == 0 || live == nil {
		return 0, fmt.Errorf("%w: not subscribed", ErrSendRefused)
	}
	ch := make(chan *wire.SendResult, 1)
	req.Request = s.reqs.Add(1)
	s.pendMu.Lock()
	s.pending[req.Request] = ch
	s.pendMu.Unlock()
	s.root.RequestWithCustomSender(r.node, req, s.ctl)
	t := time.NewTimer(sendWait)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Code != wire.Code_CODE_OK {
			return res.Seq, codeError(res.Code, res.Error)
		}
		return res.Seq, nil
	case <-t.C:
	case <-r.ctx.Done():
	case <-*live:
	}
	s.pendMu.Lock()
	delete(s.pending, req.Request)
	s.pendMu.Unlock()
	select {
	case <-r.ctx.Done():
		return 0, ErrClosed
	case <-*live:
		return 0, fmt.Errorf("%w: %s: the subscription ended before the node answered", ErrNodeLost, r.key.node)
	default:
	}
	return 0, fmt.Errorf("%w: send through %s", ErrTimeout, r.key.node)
}
