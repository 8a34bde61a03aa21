// Package actors is cnactor's runtime on protoactor-go: the socket-reader
// actor, one handler actor per callback id, and their mailboxes.
//
// Data flows like this:
//
//	receive loop ──Batch──▶ reader actor ──copy into slot──▶ mailbox (id A) ──run──▶ Handler.Receive × n
//	 (ReceiveEach)           decode, sender policy,           (ring of slots)          or BatchHandler.ReceiveBatch
//	      ▲                  route by id (lock-free)  ╲
//	      │                                            ▶ mailbox (id B) ...
//	      └──── not read while a mailbox is full (Backpressure, bounded by the stall timeout)
//
// A goroutine fills one of two reusable transport.Batch values from the
// socket (transport.ReceiveEach, which waits right after a batch that
// emptied the queue, without a receive to find it empty) and hands it to
// the reader actor (whose mailbox runs it at once, on that goroutine,
// when the actor is idle), which routes every message
// through the dispatch table's current snapshot: unknown ids are counted
// (and go to the fallback handler if there is one), senders the callback's
// policy refuses are counted and logged (rate-limited), and the rest are
// copied, a run of consecutive messages for one callback under one lock,
// into the slots of the handler actor's mailbox.
//
// A handler actor's mailbox is a bounded ring of our own (protoactor's
// Bounded mailbox spins its sender when full, BoundedDropping drops
// silently). The handler takes a run of up to a few hundred messages at a
// time and reads them in place: one protoactor invocation and two locks per
// run, no allocation and no pooled envelope per message. Handlers are woken
// once they have a run's worth queued, after a few batches, or before the
// reader waits for the socket, rather than once per batch; a wake from the
// receive loop runs the handler right there, on the loop's goroutine, once
// the batch is routed (a lone message before a wait goes to the handler's
// own goroutine). A handler that keeps the loop for 5 ms does not
// stall it: the loop moves to a new goroutine, counted in
// ReaderStats.LoopMoves (reader_inline.go).
//
// When a ring is full, the callback's overflow policy decides. Backpressure
// (the default) is flow control: the reader stops taking datagrams from the
// socket until the handler makes room, so the kernel's receive queue
// absorbs the burst, a unicast sender waits (nothing is lost) and a
// multicast sender's excess is dropped by the kernel and counted from
// SO_MEMINFO, without the CPU spent copying it first (a reader that reads
// and discards is receive livelock). The socket is shared, so a wait holds
// every callback: it is bounded by the callback's stall timeout, after
// which the callback sheds its own messages (counted, with the in-order
// loss notice) until its ring has drained to half. DropNewest and DropOldest
// never hold the reader. For every callback
// Received = Handled + Failed + Dropped + Queued holds at all times, and
// CallbackStats says how often and how long it held the reader and how much
// it shed.
//
// Removing a callback runs the other way: once its route has left the
// table, Reader.Detach ends any wait on the handler's mailbox and returns
// when every batch read before it is routed, so that nothing reaches the
// handler afterwards; HandlerRef.Drain and Stop then finish it. At Close,
// Reader.Stop drains what is queued on the socket before the reader stops.
//
// Handler actors fail and are restarted by their supervisors; the reader
// does not. A panic while routing or waking handlers can only be a bug,
// and a restart would reset nothing the reader keeps, so the reader
// recovers it itself: it is counted (ReaderStats.RoutePanics, and the
// messages of that batch no handler got in RouteLost), logged,
// rate-limited, every handler fed is woken, and the next batch is routed.
//
// # Who calls what
//
// The cnactor Connector wires this package: StartReader, StartRequester and
// SpawnHandler take a spawn.Parent, which only the cnactor module can make,
// because these actors live on the Connector's actor system. Users meet the
// package's values through the Connector: CallbackStats, ReaderStats and
// RequesterStats in Connector.Stats, Overflow and RequestOptions through its
// options, ErrStopTimeout from Close.
package actors
