// Package cnactor is the kernel connector (NETLINK_CONNECTOR) in userspace,
// on actors. A Connector owns one connector socket and mirrors the kernel's
// connector core: callbacks are registered per id {idx, val} with
// AddCallback and removed with DelCallback at runtime, each registered id
// joins netlink group idx, replies follow the seq/ack protocol, and peers may
// subscribe to notifications of registrations and removals.
//
// Data flows from the socket through the socket-reader actor, which decodes
// each datagram, checks the sender against the callback's policy and hands
// the message to the handler actor of its id; that actor calls the
// handlers.Handler. Replies and sends go back out through the same socket.
// Everything lost on the way is counted in Stats: kernel drops (the socket's
// own drop counter), malformed datagrams, unknown ids, refused senders and
// mailbox overflow.
//
// Every quantity a peer or a file controls is bounded: callbacks
// (WithMaxCallbacks), notification subscriptions (dispatch.Subscriptions),
// batch and receive-buffer sizes (MaxBatchSize, MaxReadBuffer), mailboxes
// and how long a full one may hold the socket. Past a bound the input is
// refused or shed, counted in Stats and logged at most once per second per
// kind, and the connector keeps serving; the README's Limits section lists
// every bound, its default and what happens past it.
//
// Beside the API, this package reads configuration files (LoadConfig,
// Apply, and Reload by difference), and exposes the counters to Prometheus
// (NewCollector, HealthHandler).
//
// The packages below it, from the wire up: transport (codec and sockets,
// plus transport/memory for tests), dispatch (routing table, sender
// policies, notifications), actors (the runtime on protoactor-go, and
// actors/remote for handlers on other hosts), supervisor (OTP-style
// supervision) and handlers (the Handler interface, the registry, the
// built-ins, and handlers/proc for process events).
package cnactor
