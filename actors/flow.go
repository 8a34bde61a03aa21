package actors

import (
	"time"

	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Flow control from the handler mailboxes to the socket.
//
// A reader that takes datagrams faster than a handler consumes them and
// then discards them spends the CPU the handler needed on input it throws
// away (receive livelock). Under Backpressure the reader instead stops
// taking from the socket while a mailbox is full: the kernel's receive
// queue holds the burst, a unicast sender blocks until there is room (no
// loss at all), and a multicast sender's excess is dropped by the kernel,
// which counts it (SO_MEMINFO) without our CPU spent copying it first.
//
// The socket is shared, so waiting for one callback holds every other one
// (head-of-line blocking). A wait is therefore bounded by the callback's
// stall timeout: past it the callback sheds, its messages are dropped and
// counted (with the in-order loss notice) while the others flow, until its
// mailbox has drained to half, when it rejoins flow control.
//
//	socket ──► reader ──put──► mailbox (full?) ──► handler
//	  ▲                            │
//	  └── not read while waiting ◄─┘  (at most the stall timeout, then shed)

// admitPicked queues msgs[i] for each i in picked, the messages of one
// batch for h in order, under one lock while there is room; the rest go
// through admit.
func (r *Reader) admitPicked(h *HandlerRef, msgs []transport.Received, picked []int32) {
	if !h.shedding {
		n := h.mb.putPicked(msgs, picked)
		h.counters.received.Add(uint64(n))
		picked = picked[n:]
	}
	for _, i := range picked {
		r.admit(h, &msgs[i])
	}
}

// admit queues msg for h, waiting for room under Backpressure.
func (r *Reader) admit(h *HandlerRef, msg *transport.Received) {
	h.counters.received.Add(1)
	if h.shedding {
		if !h.mb.drained() {
			h.mb.shed()
			return
		}
		h.shedding = false
		h.log.Info("callback drained; back under flow control")
	}
	if h.mb.put(msg) != putFull {
		return
	}
	if r.hold(h, msg) {
		return
	}
	h.shedding = true
	h.counters.sheddings.Add(1)
	h.mb.shed()
	if ok, n := r.limit.allow(warnShedding); ok {
		h.log.Warn("callback held the reader past its stall timeout; shedding its messages until it drains",
			zap.Duration("stall_timeout", h.spec.StallTimeout), zap.Int("suppressed", n))
	}
}

// hold waits until h has room for msg and queues it, or gives up after
// h's stall timeout (or when the reader is stopping). The handlers fed so
// far are woken first: they work while the reader waits.
func (r *Reader) hold(h *HandlerRef, msg *transport.Received) (queued bool) {
	r.wakeFed()
	h.wake()
	start := time.Now()
	deadline := start.Add(h.spec.StallTimeout)
	h.counters.stalls.Add(1) // counted as it begins: a hold is visible while it lasts
	defer func() { h.counters.stallNanos.Add(int64(time.Since(start))) }()
	for {
		if space := h.mb.awaitSpace(); space != nil {
			wait := time.Until(deadline)
			if wait <= 0 || r.stopping.Load() {
				return false
			}
			r.timer.Reset(wait)
			select { // (Go 1.23 timers: Stop leaves no stale tick)
			case <-space:
				r.timer.Stop()
			case <-r.timer.C:
			case <-r.stopCh:
				r.timer.Stop()
				return false
			case <-h.detached:
				r.timer.Stop()
				return false
			}
			continue
		}
		switch h.mb.put(msg) {
		case putQueued, putDropped:
			return true
		}
	}
}
