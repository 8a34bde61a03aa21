// Package actors is cnactor's runtime on protoactor-go: the socket-reader
// actor, one handler actor per callback id, and their mailboxes.
//
// Data flows like this:
//
//	receive loop ──Batch──▶ reader actor ──envelope──▶ handler actor (id A) ──▶ Handler.Receive
//	 (ReceiveBatch)          decode, sender policy,  ╲
//	                         route by id (lock-free)   ▶ handler actor (id B) ...
//
// A goroutine fills one of two reusable transport.Batch values from the
// socket and hands it to the reader actor, which routes every message
// through the dispatch table's current snapshot: unknown ids are counted
// (and go to the fallback handler if there is one), senders the callback's
// policy refuses are counted and logged (rate-limited), and the rest are
// copied into pooled envelopes and posted to the handler actor's mailbox.
//
// A handler actor's mailbox is a bounded ring of our own: protoactor's
// Bounded mailbox blocks its sender, which would stall the reader behind a
// slow handler. When the ring is full the overflow policy of the callback
// drops the newest or the oldest message and counts it, so that for every
// callback Received = Handled + Failed + Dropped + Queued holds at all times.
package actors
