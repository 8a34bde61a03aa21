package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor"
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
	endpoint // its actor is the node actor
	c        *cnactor.Connector
	cfg      NodeConfig
	log      *zap.Logger
	name     string
	instance string
	boot     int64
	exports  map[transport.CbID]*Export
	sends    sync.WaitGroup // sends on the subscribers' behalf

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
		view: map[uint64]*subscription{},
	}
	for i := range cfg.Exports {
		e := cfg.Exports[i]
		if _, dup := n.exports[e.ID]; dup {
			return nil, fmt.Errorf("remote: %s exported twice", e.ID)
		}
		n.exports[e.ID] = &e
	}
	own := HostConfig{Listen: cfg.Listen, Advertise: cfg.Advertise, TLS: cfg.TLS, Logger: log}
	if err := n.open(cfg.Host, own, roleNode, nodeActorName, func() actor.Actor { return newNodeActor(n) }); err != nil {
		return nil, err
	}
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
	slices.SortFunc(ids, compareCbID)
	return ids
}

// compareCbID orders callback ids by index, then value.
func compareCbID(a, b transport.CbID) int {
	return cmp.Or(cmp.Compare(a.Idx, b.Idx), cmp.Compare(a.Val, b.Val))
}

// Exports lists the exported ids.
func (n *Node) Exports() []transport.CbID { return n.exportIDs() }

// NodeEvent reports a subscription starting or ending on the node. The
// connector's own callback events (Connector.Watch) fire as well, when the
// first subscriber of an id registers the forwarding callback and when the
// last one leaves and it is removed.
type NodeEvent struct {
	// Kind is EventAdded when a subscriber registered for an exported id,
	// EventRemoved when its subscription ended.
	Kind EventKind
	SubscriptionStats
	// Reason, for EventRemoved: nil when the subscriber unsubscribed
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
	subs := slices.Collect(maps.Values(n.view))
	n.mu.Unlock()
	out := make([]SubscriptionStats, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.stats(s.q.counters()))
	}
	slices.SortFunc(out, func(a, b SubscriptionStats) int {
		return cmp.Or(compareCbID(a.ID, b.ID), cmp.Compare(a.Subscription, b.Subscription))
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
	n.stop()
	n.sends.Wait() // their results go through the host
	n.release(ctx)
	n.log.Info("node closed")
	return ctx.Err()
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
