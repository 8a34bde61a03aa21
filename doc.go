// Package cnactor is the kernel connector (NETLINK_CONNECTOR) in userspace,
// on actors. A Connector owns one connector socket and mirrors the kernel's
// connector core: callbacks are registered per id {idx, val} with
// AddCallback and removed with DelCallback at runtime, each registered id
// joins netlink group idx, replies follow the seq/ack protocol (Request),
// and peers may subscribe to notifications of registrations and removals
// (Watch, and the control messages at the core's own id).
//
// Data flows from the socket through the socket-reader actor, which decodes
// each datagram, checks the sender against the callback's policy and hands
// the message to the handler actor of its id; that actor calls the
// handlers.Handler. Replies and sends go back out through the same socket:
//
//	kernel / peers ──► socket ──► reader actor ──┬─► handler actor (id A) ──► Handler
//	                     ▲                       ├─► handler actor (id B) ──► Handler
//	                     │                       └─► requester (replies to Request)
//	                     └──────── Send, Reply, Request ◄──────────────────────┘
//
// Everything lost on the way is counted in Stats: kernel drops (the
// socket's own drop counter), malformed datagrams, unknown ids, refused
// senders and mailbox overflow. While a handler's mailbox is full the
// reader stops reading (Backpressure, the default), so the kernel queue
// absorbs bursts and a unicast sender waits; past the callback's stall
// timeout that one callback sheds its own messages while the others flow.
//
// Every quantity a peer or a file controls is bounded: callbacks
// (WithMaxCallbacks), notification subscriptions (dispatch.Subscriptions),
// batch and receive-buffer sizes (MaxBatchSize, MaxReadBuffer), mailboxes
// and how long a full one may hold the socket. Past a bound the input is
// refused or shed, counted in Stats and logged at most once per second per
// kind, and the connector keeps serving; the README's Limits section lists
// every bound, its default and what happens past it.
//
// # Layers
//
// Below this package, from the wire up (none of them imports it):
// transport (codec and sockets; transport/memory for tests, transport/faulty
// for fault injection), dispatch (routing table, sender policies,
// notifications), handlers (the Handler interface, the registry and the
// built-ins), actors (the reader, handler and requester actors on
// protoactor-go) and supervisor (OTP-style supervision).
//
// Above it, built on a Connector: config (configuration files, Apply and
// Reload by difference), metrics (Prometheus collector and health
// handler), proc (the kernel's process events: Monitor and the process
// table) and remote (callbacks served to other hosts). A program that
// imports only this package links no YAML parser.
package cnactor
