package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
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
	endpoint // its actor is the control actor
	cfg      SubscriberConfig
	log      *zap.Logger
	instance string
	hb       time.Duration

	mu     sync.Mutex
	regs   map[regKey]*registration
	closed bool
	nextIn atomic.Uint64

	reqs    atomic.Uint64
	pendMu  sync.Mutex
	pending map[uint64]chan *wire.SendResult

	watchers watch.List[Event]
}

type regKey struct {
	node string
	id   transport.CbID
}

// NewSubscriber starts a subscriber on cfg.Host, or on a host of its own
// listening on cfg.Listen.
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
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		s.cfg.Name = host + "/" + s.instance
	}
	own := HostConfig{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.TLS, Logger: log}
	if err := s.open(cfg.Host, own, roleSubscriber, ctlActorName, func() actor.Actor { return newCtlActor(s) }); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the address nodes dial this subscriber at.
func (s *Subscriber) Addr() string { return s.host.Addr() }

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
// accepted, or with the reason it did not: ErrNotExported,
// cnactor.ErrDuplicate, ErrUnauthenticated, ErrTLS, ErrUnreachable,
// cnactor.ErrTimeout, cnactor.ErrClosed (errors.Is).
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
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("remote: add callback %s at %s: %w", id, node, cnactor.ErrClosed)
	}
	r := &registration{
		s: s, key: key, name: name, h: h, rc: rc, node: actor.NewPID(node, nodeActorName),
		log:   s.log.With(zap.String("node", node), zap.Stringer("id", id), zap.String("name", name)),
		added: make(chan error, 1), gone: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	// The inlet exists before r is listed: Close and DelCallback stop the
	// inlet of whatever they find listed.
	inlet, err := s.root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newInletActor(r) }),
		"cnactor-inlet-"+s.instance+"-"+strconv.FormatUint(s.nextIn.Add(1), 10))
	if err != nil {
		r.cancel()
		return fmt.Errorf("remote: inlet actor: %w", err)
	}
	r.inlet = inlet
	s.mu.Lock()
	switch {
	case s.closed:
		err = fmt.Errorf("remote: add callback %s at %s: %w", id, node, cnactor.ErrClosed)
	case s.regs[key] != nil:
		err = fmt.Errorf("remote: add callback %q: %w: %s at %s", name, cnactor.ErrDuplicate, id, node)
	default:
		s.regs[key] = r
	}
	s.mu.Unlock()
	if err != nil {
		s.root.StopFuture(inlet).Wait()
		r.cancel()
		return err
	}
	added := r.added // the control actor clears the field once it answered
	s.root.Send(s.pid, &addReg{r: r})
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
// Messages still queued on the node are counted as dropped. A callback that
// is not registered is cnactor.ErrNotFound.
func (s *Subscriber) DelCallback(node string, id transport.CbID) error {
	s.mu.Lock()
	r := s.regs[regKey{node: node, id: id}]
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("remote: del callback: %w: %s at %s", cnactor.ErrNotFound, id, node)
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
	s.root.Send(s.pid, &delReg{r: r, done: done})
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
	regs := slices.Collect(maps.Values(s.regs))
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Go(func() { s.remove(r, ctx) })
	}
	wg.Wait()
	s.stop()
	s.release(ctx)
	return ctx.Err()
}

// EventKind says what happened to a subscription: of a remote callback on
// the subscriber (Event), of a subscriber on the node (NodeEvent).
type EventKind uint8

const (
	// EventAdded: the node accepted the subscription (again, after a loss,
	// when Resubscribed is set).
	EventAdded EventKind = iota
	// EventRemoved: the subscription ended; on the subscriber, the
	// callback is no longer subscribed on the node.
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

// Stats returns the counters of every remote callback, by node then id.
func (s *Subscriber) Stats() []RegistrationStats {
	s.mu.Lock()
	regs := slices.Collect(maps.Values(s.regs))
	s.mu.Unlock()
	out := make([]RegistrationStats, 0, len(regs))
	for _, r := range regs {
		out = append(out, r.stats())
	}
	slices.SortFunc(out, func(a, b RegistrationStats) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), compareCbID(a.ID, b.ID))
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
