// Package remote takes cnactor across hosts on protoactor-go's remote
// (gRPC): a Node exports chosen callback ids of its Connector, and a
// Subscriber on another host registers handlers for them, as
// Connector.AddCallback does locally. It adds no wire protocol of its own:
// its messages are protobuf (package wire, generated from wire.proto;
// regenerate with `go generate ./remote/wire`, see wire/gen.go)
// inside protoactor remote envelopes, addressed to actors, and node and
// subscriber loss is protoactor's endpoint-terminated watch plus heartbeats.
//
// # Registration
//
// Subscriber.AddCallback(ctx, node, id, name, h) sends Subscribe to the
// node's actor ("cnactor-node" at the node's address). A node accepts ids
// it exports only (ErrNotExported otherwise). For the first subscriber of
// an id it registers a forwarding callback on its connector
// (Connector.AddCallback: the id's group is joined, the connector's
// watchers and notification groups see the callback added, exactly as for
// a local handler); later subscribers of the id share it; when the last one
// leaves, the callback is removed (Connector.DelCallback, with its
// notifications). An id with a local callback of its own is refused
// (cnactor.ErrDuplicate). ProcExport exports the proc connector: registering the
// callback subscribes to the kernel's process events as proc.Listen does.
//
// Each message the forwarding callback receives is copied once and offered
// to every subscription of its id; the subscriber's handler receives it
// with the sender's metadata (From, Group, Creds, and the cn_msg's seq,
// ack, flags) and its origin (OriginOf: the node's address, name, instance,
// the message's number in the subscription). Reply and Send go back through
// the origin node's connector (ErrSendRefused for read-only exports or ids
// other than the subscription's). Data flows:
//
//	node: socket ─▶ reader ─▶ forwarder callback ─▶ queue per subscription ─▶ outlet actor ─┐
//	                                                                        (credit window)  │ gRPC
//	subscriber: handler ◀─ inlet actor (one per remote callback) ◀──── Deliveries batches ◀──┘
//	            control actor ◀── Subscribed / Heartbeat / Ended; Credit ──▶ outlet
//	            control actor ── Subscribe / Unsubscribe ──▶ node actor ◀── Reply / Send (handler)
//	                                                         node actor ─▶ connector (sends)
//
// # Delivery semantics
//
//   - Per-subscriber bounded queues. Every subscription has its own queue on
//     the node (WithQueue, default DefaultQueue messages) drained by its
//     outlet actor within a credit window (WithWindow, default
//     DefaultWindow messages in flight); the subscriber acknowledges what its
//     handler has processed. A slow subscriber fills its own queue and
//     nothing else: the forwarder never blocks, other subscribers and local
//     callbacks are unaffected. A full queue drops the newest message (or
//     the oldest, with DropOldest) and counts it.
//   - The same accounting as locally. Every message offered to a
//     subscription is numbered there, dropped ones included, and the count
//     of drops travels with the next message sent, so the subscriber tells
//     queue drops from messages lost in transit (a gap not explained by
//     drops). At any time, per remote callback (RegistrationStats):
//     Offered = Delivered + Dropped + Lost + InFlight, and Delivered =
//     Handled + Failed; after DelCallback, which waits for the node's final
//     counters, InFlight is 0. On the node, per subscription
//     (SubscriptionStats): Offered = Sent + Dropped + Queued. Losses before
//     the forwarder (the node socket's drop counter, the forwarder's
//     mailbox) are reported in the stream too. Handlers learn of every loss
//     in stream order, before the next message, through
//     handlers.LossObserver, with the one taxonomy of loss local callbacks
//     use: handlers.LossSocket and handlers.LossMailbox (the node's socket
//     and its forwarding callback's mailbox), handlers.LossQueue (the
//     subscription's queue on the node) and handlers.LossTransport (sent
//     by the node and never received). Each lost message is told once.
//   - Ordering: one remote callback receives its messages one at a time, in
//     the order the node's callback received them.
//   - Failures: a handler's error or panic fails that message only (counted
//     as Failed, logged); handlers.ErrStop removes the remote callback.
//   - Restarts. A node that vanishes is detected by protoactor (the
//     endpoint of its address terminates when the connection breaks, and the
//     subscriber watches its outlet actor) or by heartbeats (every
//     DefaultHeartbeat both ways; three missed declare the peer lost). Its
//     remote callbacks are removed and notified (EventRemoved with
//     ErrNodeLost or ErrNodeClosed, Retrying set) and the subscriber keeps
//     subscribing them again with backoff, probing the node first; when it
//     is back, they are added again (EventAdded, Resubscribed) and counted
//     in Subscriptions and Outages. What the node received while the
//     subscriber could not hear it is lost; the proc stream counts it
//     exactly from the kernel's per-CPU sequence numbers (ListenProc). A
//     subscriber that vanishes is detected by the node the same way (its
//     connection, its control actor's watch, its acknowledgements stopping):
//     its subscriptions end, and a forwarding callback left without
//     subscribers is removed from the connector with its notifications.
//
// # Security
//
// Nodes listen on loopback (DefaultListen) and subscribers on a loopback
// port (DefaultSubscriberListen) unless configured otherwise; listening on
// every interface needs an explicit advertised address. With TLS (see
// MutualTLS and LoadMutualTLS), both sides accept and dial only TLS, and a
// node whose server configuration requires and verifies client
// certificates refuses subscribers without one (ErrUnauthenticated: the
// subscriber probes the node before subscribing, so the refusal is an
// error, not a timeout). A subscriber may register only for exported ids,
// send only with its subscription's id, and nothing through a read-only
// export.
//
// A protoactor remote connection carries messages one way, so a node dials
// its subscribers back: a subscriber of nodes on other hosts must listen on
// (or advertise) an address they can reach, and their certificates must
// name the addresses they are dialled at.
//
// # Hosts
//
// A Node and a Subscriber each run on a Host: an actor system with
// protoactor's remote listening. They start their own unless given one; a
// process that is both should share one (protoactor-go sets gRPC's global
// logger every time a remote starts, which the race detector reports from
// the second one on). Host.Close works around protoactor's graceful
// shutdown, which races with its own connection readers.
//
// Limits: a Reply to a message whose seq is 0 leaves the node with the
// node connector's next seq (a Connector numbers every message it sends
// with seq 0). DelCallback counts what is still queued for the
// subscription on the node as dropped instead of delivering it, and the
// handler's replies and sends fail from the moment it is called.
package remote
