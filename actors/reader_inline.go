package actors

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Handlers run on the receive loop's goroutine.
//
// Waking a handler's own goroutine costs more than the run it starts when
// the run is short: the Go scheduler wakes a thread on another CPU for it,
// and on a machine whose other CPUs the senders need, that thread takes
// their time (measured on 2 CPUs with the sender in another process, 1
// handler, alternating: 0.77-0.88x the raw recvmmsg loop's rate with a
// wake per run, 0.82-1.04x with the run on the loop; CPU per message
// 1.18-1.28x against 1.02-1.26x; benchmarks/README.md). So the handlers
// that routing a batch on the loop makes ready are run right there, once
// the batch is routed and before the next receive, each until its mailbox
// is empty (at most its capacity, since only the loop fills it
// meanwhile), with the messages still in the CPU's caches:
//
//	receive ──▶ route ──▶ (ready: A, B) ──▶ run A, run B ──▶ receive ...
//	                 └──▶ wake C's own goroutine (C ran too long here lately)
//
// A handler may block: a slow disk, a request to a peer whose reply only
// this loop would read, a bug. Every run here is guarded, and one that has
// taken inlineMax hands the loop over to a new goroutine, which goes on
// receiving at once (leader/follower): the old goroutine finishes the run
// and ends, and that handler runs on its own goroutine for inlineBackoff
// before it is tried here again. ReaderStats.LoopMoves counts the handovers.
// Only the receive loop runs handlers like this; a wake from anywhere else
// (a hold under flow control, a control message) goes to the handler's own
// goroutine.

const (
	// inlineMax bounds how long a handler run on the receive loop may
	// keep the loop from receiving before the loop moves. Not much less:
	// a thread that shares its CPU is often descheduled for a millisecond
	// or two (measured: at 1 ms the live benchmark moved the loop about
	// once in 10,000 runs of a counting handler, which then ran on its
	// own goroutine for the rest of its one-second slot).
	inlineMax = 5 * time.Millisecond
	// inlineBackoff is how long a handler that kept the loop for
	// inlineMax then runs on its own goroutine only.
	inlineBackoff = time.Second
)

// lead runs the receive loop on the calling goroutine until the loop ends
// (ended) or another goroutine takes it over while this one runs a handler
// that blocks (then this one returns false, after that handler's run).
func (r *Reader) lead() (ended bool) {
	// A context that is never done costs the receive nothing; stopIntake
	// wakes a waiting receive with a read deadline instead.
	ctx := context.Background()
	for {
		r.stopMu.Lock()
		draining := r.stopping.Load()
		r.stopMu.Unlock()
		if draining {
			r.giveBackFilling()
			r.drain()
			return true
		}
		if r.filling == nil {
			r.filling = <-r.free
		}
		// No idle here (a failed receive calls it below): a receive
		// loop calls it before it waits (transport.ReceiveEach), and
		// calling it after handlers ran here would wake the handlers
		// left asleep on their own goroutines before their run is due.
		err := transport.ReceiveEach(ctx, r.cfg.Conn, r.filling, r.deliver, r.idle)
		if len(r.ready) > 0 && !r.runReady() {
			return false
		}
		switch {
		case err == nil, r.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded):
			continue // stopping: drain from now on
		case errors.Is(err, transport.ErrClosed):
			r.idle() // whatever the ended loop left asleep
			r.giveBackFilling()
			return true
		}
		r.idle()
		r.receiveFailed(err)
	}
}

// giveBackFilling returns the batch the loop holds to the free list.
func (r *Reader) giveBackFilling() {
	if r.filling != nil {
		r.free <- r.filling
		r.filling = nil
	}
}

// wakeHandler makes h run what is queued: on the receive loop's goroutine
// once the batch is routed, if the loop is routing it and h has not kept
// the loop too long lately; otherwise on h's own goroutine.
func (r *Reader) wakeHandler(h *HandlerRef) {
	if r.mb.looping && h.mayRunInline() {
		r.ready = append(r.ready, h)
		return
	}
	h.wake()
}

// wakeBeforeWait is wakeHandler for the batch that emptied the socket: a
// handler with a single message waiting is woken on its own goroutine.
// Run here, the loop would then go back into the receive, which costs a
// recvmmsg that finds the queue empty before the wait (the Go poller
// forgets readiness between two waits), and at the rates where messages
// come one at a time that is on the path of the next one: request/reply
// p50 6.0-6.4 us with the hand-off, 6.7-7.1 us run here (three
// alternating runs each).
func (r *Reader) wakeBeforeWait(h *HandlerRef) {
	if h.mb.UserMessageCount() > 1 {
		r.wakeHandler(h)
		return
	}
	h.wake()
}

// runReady runs the handlers routing left ready, one after another, on
// this goroutine. It returns false if the loop moved to another goroutine
// meanwhile: this one must then leave the loop's state alone.
func (r *Reader) runReady() bool {
	run := r.ready
	r.ready = nil
	for i, h := range run {
		if h.mb.claim() && !r.runGuarded(h, run[i+1:]) {
			return false
		}
		// Not claimed: running on its own goroutine, which will find
		// these messages too.
	}
	clear(run)
	r.ready = run[:0]
	return true
}

// runGuarded runs h's mailbox, claimed, under the guard, and reports
// whether this goroutine still has the loop. A panic out of the run (a
// handler's own are recovered by its mailbox and go to its supervisor: this
// is a bug in cnactor) is counted with the routing panics, logged, and
// recovered, so that the loop goes on.
func (r *Reader) runGuarded(h *HandlerRef, rest []*HandlerRef) (kept bool) {
	seq := r.guard.arm(h, rest)
	defer func() {
		if p := recover(); p != nil {
			kept = r.guard.disarm(seq)
			r.c.routePanics.Add(1)
			if ok, n := r.limit.allow(warnRoutePanic); ok {
				h.log.Error("running a handler on the receive loop panicked", zap.Any("panic", p),
					zap.Int("suppressed", n), zap.Stack("stack"))
			}
			// process did not leave the mailbox idle: nothing could
			// run it again. Its own goroutine takes what is queued
			// (where the same bug would crash the process, loudly).
			h.mb.status.Store(idle)
			wakeRecovering(h)
		}
	}()
	h.mb.process()
	return r.guard.disarm(seq)
}

// loopGuard watches the handler run on the receive loop. state is the
// run's sequence number, plus one while the run is going on and the loop
// has not moved; the guard's other fields are written by the loop before
// it arms, and read by the timer's goroutine once it has won the loop.
type loopGuard struct {
	state atomic.Uint64
	armed atomic.Int64 // when the run began (sinceEpoch)
	seq   uint64       // the loop's: the last run's number (even)
	timer *time.Timer
	h     *HandlerRef   // the handler being run
	rest  []*HandlerRef // the ones ready after it, for the new loop to wake
}

// arm starts watching a run of h and returns its number for disarm.
func (g *loopGuard) arm(h *HandlerRef, rest []*HandlerRef) uint64 {
	g.seq += 2
	seq := g.seq // once armed, the fields are the next loop's
	g.h, g.rest = h, rest
	g.armed.Store(sinceEpoch())
	g.state.Store(seq | 1)
	g.timer.Reset(inlineMax)
	return seq
}

// disarm ends the watch on run seq; false means the loop has moved.
func (g *loopGuard) disarm(seq uint64) bool {
	if !g.state.CompareAndSwap(seq|1, seq) {
		return false
	}
	g.timer.Stop()
	return true
}

// moveLoop runs on the guard's timer: the run being watched has kept the
// loop for inlineMax, so this goroutine takes the loop over. A tick that a
// run ending just then could not stop finds the next run younger than
// inlineMax, and waits for the rest of it instead.
func (r *Reader) moveLoop() {
	g := &r.guard
	s := g.state.Load()
	if s&1 == 0 {
		return // the run ended in time
	}
	if left := inlineMax - time.Duration(sinceEpoch()-g.armed.Load()); left > 0 {
		g.timer.Reset(left)
		return
	}
	if !g.state.CompareAndSwap(s, s&^1) {
		return // that run ended meanwhile
	}
	r.c.loopMoves.Add(1)
	g.h.inlineAfter.Store(sinceEpoch() + int64(inlineBackoff))
	if ok, n := r.limit.allow(warnLoopMoved); ok {
		r.log.Info(warnNames[warnLoopMoved], zap.Stringer("id", g.h.spec.ID), zap.String("name", g.h.spec.Name),
			zap.Duration("after", inlineMax),
			zap.Duration("own_goroutine_for", inlineBackoff), zap.Int("suppressed", n))
	}
	for _, h := range g.rest {
		h.wake()
	}
	g.h, g.rest = nil, nil
	if r.lead() {
		close(r.loopDone)
	}
}

// mayRunInline says whether h may run on the receive loop: not within
// inlineBackoff of keeping the loop for inlineMax.
func (h *HandlerRef) mayRunInline() bool {
	t := h.inlineAfter.Load()
	if t == 0 {
		return true
	}
	if sinceEpoch() < t {
		return false
	}
	h.inlineAfter.CompareAndSwap(t, 0)
	return true
}

// epoch makes sinceEpoch monotonic: a stepped wall clock neither lengthens
// nor ends a back-off.
var epoch = time.Now()

// sinceEpoch is the monotonic time in nanoseconds since the package began.
func sinceEpoch() int64 { return int64(time.Since(epoch)) }
