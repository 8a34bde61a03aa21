package actors

import (
	"sync/atomic"
	"time"
)

// counters are one callback's. The reader's and the handler's are on
// separate cache lines: two cores adding to one line per message would
// pass it back and forth on every add (measured: the largest cost of the
// plain Handler path before).
type counters struct {
	// Written by the reader.
	received   atomic.Uint64 // routed to the callback and admitted by its policy
	dropped    atomic.Uint64 // mailbox overflow, shedding, or left queued at stop
	rejected   atomic.Uint64 // refused by the sender policy
	shed       atomic.Uint64 // dropped while shedding (part of dropped)
	sheddings  atomic.Uint64 // times a stall ran past the stall timeout
	stalls     atomic.Uint64 // times a full mailbox held the reader
	stallNanos atomic.Int64  // how long, in all
	_          [64]byte
	// Written by the handler actor.
	handled atomic.Uint64
	failed  atomic.Uint64
	_       [64]byte
}

// CallbackStats is a snapshot of one callback's counters. At any time
// Received = Handled + Failed + Dropped + Queued.
type CallbackStats struct {
	Received uint64 // messages routed to the callback
	Handled  uint64 // processed without error
	Failed   uint64 // the handler returned an error or panicked
	Dropped  uint64 // discarded by the overflow policy (Shed included) or at stop
	Queued   uint64 // in the mailbox or being handled right now
	Rejected uint64 // refused by the sender policy (not in Received)
	// Flow control (Backpressure): how often and for how long the full
	// mailbox held the socket-reader, how often a hold ran past the stall
	// timeout, and how many messages were shed while it drained.
	Stalls    uint64
	Stalled   time.Duration
	Sheddings uint64
	Shed      uint64
}
