package actors

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

type requesterCounters struct {
	inFlight, requests, replies, timeouts, retries, cancelled, failed, duplicates, late atomic.Uint64

	rtt rttHistogram
}

// matchKey is what a reply is looked up by. For MatchAck, seq is 0. It
// has no padding (ackOnly is a uint32), so maps hash and compare it as
// plain memory: the requester does a few map operations per reply.
type matchKey struct {
	id      transport.CbID
	seq     uint32
	ack     uint32 // the reply's: request ack + 1
	ackOnly uint32 // 1 for MatchAck
}

// sender says who may answer: one port, or anyone (group requests).
type sender struct {
	port    uint32
	anyPort bool
}

func (s sender) accepts(from uint32) bool { return s.anyPort || from == s.port }

type event uint8

const (
	evRetry event = iota + 1 // the wait ran out and a retry is due
	evDone                   // the exchange ended: reply or err is set
)

// exchange is one request in flight. Exchanges are pooled with their
// channel (two allocations less per request): once Request returns,
// nothing but the timer's entries refers to it, and those carry the gen
// they were made in, so that an entry left from an earlier use is ignored.
type exchange struct {
	key  matchKey
	from sender
	opts RequestOptions
	msg  transport.Message // the request, numbered
	// ch carries at most one evRetry (the timer is only re-armed after the
	// caller consumed it) and one evDone, so sends on it never block.
	ch       chan event
	gen      atomic.Uint64 // advanced each time the exchange is reused: never wraps
	done     atomic.Bool   // set, under Requester.mu, by whoever ends it
	sent     atomic.Int64  // mono time of the first send
	attempts atomic.Int32
	reply    *Reply // set, with done, by whoever delivers the reply
	err      error
}

// replyBox is a Reply with room for a small payload: one allocation.
type replyBox struct {
	Reply
	small [64]byte
}

var exchanges = sync.Pool{New: func() any { return &exchange{ch: make(chan event, 2)} }}

// recycle makes ex ready for its next use and pools it. The caller's
// Request has returned its result, so no event can still be sent on ch;
// a retry it did not consume may be left there.
func recycle(ex *exchange) {
	for len(ex.ch) > 0 {
		<-ex.ch
	}
	ex.gen.Add(1) // before anything else changes: the timer must see an old entry as old
	ch := ex.ch
	ex.key, ex.from, ex.opts, ex.msg, ex.ch, ex.reply, ex.err = matchKey{}, sender{}, RequestOptions{}, transport.Message{}, ch, nil, nil
	ex.done.Store(false)
	ex.sent.Store(0)
	ex.attempts.Store(0)
	exchanges.Put(ex)
}

// timerEntry is one attempt's deadline in the timer heap.
type timerEntry struct {
	at      int64 // mono time
	ex      *exchange
	gen     uint64 // ex's gen when armed
	attempt int32
}

// current says whether e is about ex's present use and attempt and ex is
// still waiting. done is read before gen: recycle advances gen before it
// clears done, so an exchange seen not done is seen in its new gen if it
// was reused.
func (e *timerEntry) current() bool {
	return !e.ex.done.Load() && e.ex.gen.Load() == e.gen && e.ex.attempts.Load() == e.attempt
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return e
}

// Requester runs request/reply exchanges with the seed's seq/ack protocol.
//
// Callers (Request) register an exchange in a lock-protected index keyed
// for matching and send the request from their own goroutine. The socket
// reader offers every message to intercept, which answers with one atomic
// load while nothing is pending or remembered, and otherwise looks the
// message up in the index: a match ends the exchange with a copy of the
// reply; anything else goes on to normal dispatch. The requester actor owns
// the timers: a heap of attempt deadlines behind a single time.Timer that
// posts a tick to the actor; on a tick it hands retries back to their
// callers (who resend the same seq and ack) and fails exhausted exchanges
// with ErrTimeout. Finished exchanges are remembered for DupWindow so that
// late and duplicate replies are counted and consumed, not dispatched.
type Requester struct {
	cfg    RequesterConfig
	log    *zap.Logger
	root   *actor.RootContext
	pid    *actor.PID
	base   time.Time
	timer  *time.Timer
	closed atomic.Bool // for the timer callback; isClosed is the truth
	c      requesterCounters
	window int64

	// active is len(pending)+len(recent): intercept's fast path.
	active atomic.Int64
	idRefs [idBuckets]atomic.Int32 // pending + remembered exchanges per id bucket

	mu        sync.Mutex
	isClosed  bool
	pending   map[matchKey]*exchange
	ackOnly   int // exchanges in pending with MatchAck
	recent    recentSet
	arms      []timerEntry // deadlines not yet in the heap
	armedAt   int64        // when the timer fires; 0 if not armed
	spareArms []timerEntry

	// Owned by the actor.
	heap timerHeap
}

type tickMsg struct{}

// StartRequester spawns the requester actor under parent.
func StartRequester(parent spawn.Parent, cfg RequesterConfig) *Requester {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.DupWindow <= 0 {
		cfg.DupWindow = DefaultDupWindow
	}
	if cfg.DupCapacity <= 0 {
		cfg.DupCapacity = DefaultDupCapacity
	}
	r := &Requester{
		cfg:     cfg,
		log:     cfg.Logger.Named("requester"),
		root:    parent.Root(),
		base:    time.Now(),
		window:  int64(cfg.DupWindow),
		pending: map[matchKey]*exchange{},
	}
	r.timer = time.AfterFunc(time.Hour, func() {
		if !r.closed.Load() {
			r.root.Send(r.pid, tickMsg{})
		}
	})
	r.timer.Stop()
	r.pid = parent.Ctx.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor { return (*requesterActor)(r) }), "requester")
	return r
}

func (r *Requester) now() int64 { return int64(time.Since(r.base)) }

// Stats returns the requester's counters.
func (r *Requester) Stats() RequesterStats {
	return RequesterStats{
		InFlight: r.c.inFlight.Load(), Requests: r.c.requests.Load(), Replies: r.c.replies.Load(),
		Timeouts: r.c.timeouts.Load(), Retries: r.c.retries.Load(), Cancelled: r.c.cancelled.Load(),
		Failed: r.c.failed.Load(), Duplicates: r.c.duplicates.Load(), Late: r.c.late.Load(),
		RTT: r.c.rtt.snapshot(),
	}
}

func keyFor(m *transport.Message, match Match) matchKey {
	if match == MatchAck {
		return matchKey{id: m.ID, ack: m.Ack + 1, ackOnly: 1}
	}
	return matchKey{id: m.ID, seq: m.Seq, ack: m.Ack + 1}
}

// Request sends m to to and waits for its reply. A zero m.Seq is replaced
// by the Sender's next seq and a zero m.Ack by a random one. It fails with
// an error wrapping ErrTimeout when every attempt's wait ran out, ctx's
// error when ctx ended first, transport.ErrClosed when the requester closed,
// or the send error.
func (r *Requester) Request(ctx context.Context, to transport.Addr, req transport.Message, o RequestOptions) (*Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	ex := exchanges.Get().(*exchange)
	ex.opts, ex.from, ex.msg = o, sender{port: to.Port, anyPort: to.Group != 0}, req
	if o.Match == MatchAck {
		ex.from = sender{port: 0}
	}
	rep, err := r.runExchange(ctx, to, ex)
	recycle(ex)
	return rep, err
}

// runExchange runs the request ex holds to its end.
func (r *Requester) runExchange(ctx context.Context, to transport.Addr, ex *exchange) (*Reply, error) {
	o := ex.opts
	// The request as sent lives in the exchange: a copy of its own would
	// escape to the heap through Sender.Send.
	m := &ex.msg
	if m.Seq == 0 {
		m.Seq = r.cfg.Sender.NextSeq()
	}
	wait := o.Timeout
	ex.attempts.Store(1)
	now := r.now()
	ex.sent.Store(now)
	if err := r.register(ex, m, now+int64(wait)); err != nil {
		return nil, err
	}
	if err := r.cfg.Sender.Send(ctx, to, m); err != nil {
		return r.sendFailed(ctx, ex, err)
	}
	// A context that can never end (Background) needs no select: a plain
	// receive is the cheaper wait, on the path every round trip takes.
	done := ctx.Done()
	for {
		var ev event
		if done == nil {
			ev = <-ex.ch
		} else {
			select {
			case ev = <-ex.ch:
			case <-done:
				if r.end(ex, &r.c.cancelled, true) {
					return nil, ctx.Err()
				}
				return r.await(ex)
			}
		}
		if ev == evDone {
			return ex.result()
		}
		if ex.done.Load() {
			continue // the reply won the race; evDone follows
		}
		wait = min(time.Duration(float64(wait)*o.Backoff), o.MaxWait)
		n := ex.attempts.Add(1)
		// Counted here, not where the timer found the wait over: the
		// exchange may end meanwhile (a reply, a failed resend whose next
		// deadline passed while it was being sent), and then nothing is
		// resent.
		r.c.retries.Add(1)
		r.arm(ex, wait, n)
		if err := r.cfg.Sender.Send(ctx, to, m); err != nil {
			return r.sendFailed(ctx, ex, err)
		}
	}
}

func (ex *exchange) result() (*Reply, error) {
	if ex.err != nil {
		return nil, ex.err
	}
	return ex.reply, nil
}

// await waits for the evDone of an exchange someone else ended.
func (r *Requester) await(ex *exchange) (*Reply, error) {
	for ev := range ex.ch {
		if ev == evDone {
			break
		}
	}
	return ex.result()
}

func (r *Requester) sendFailed(ctx context.Context, ex *exchange, err error) (*Reply, error) {
	if ctx.Err() != nil && r.end(ex, &r.c.cancelled, true) {
		return nil, err // wraps ctx's error
	}
	if r.end(ex, &r.c.failed, false) {
		return nil, err
	}
	return r.await(ex)
}

// register puts ex in the index under a key no other pending exchange has
// and arms its first attempt's deadline, at, under the same lock.
func (r *Requester) register(ex *exchange, m *transport.Message, at int64) error {
	randomAck := m.Ack == 0
	if randomAck {
		m.Ack = rand.Uint32()
	}
	r.mu.Lock()
	if r.isClosed {
		r.mu.Unlock()
		return fmt.Errorf("request %s: %w", m.ID, transport.ErrClosed)
	}
	for {
		ex.key = keyFor(m, ex.opts.Match)
		if _, busy := r.pending[ex.key]; !busy {
			break
		}
		if !randomAck {
			r.mu.Unlock()
			return fmt.Errorf("request %s seq %d ack %d: %w", m.ID, m.Seq, m.Ack, ErrPending)
		}
		m.Ack = rand.Uint32()
	}
	r.pending[ex.key] = ex
	r.idRefs[idBucket(ex.key.id)].Add(1)
	if ex.opts.Match == MatchAck {
		r.ackOnly++
	}
	r.c.requests.Add(1)
	r.c.inFlight.Add(1)
	r.active.Store(int64(len(r.pending) + r.recent.len()))
	wake := r.armLocked(ex, at, 1)
	r.mu.Unlock()
	if wake {
		r.root.Send(r.pid, tickMsg{})
	}
	return nil
}

// armsCompact is how many new deadlines wake the actor to sort them out
// even when none is due earlier than the timer: each holds its exchange,
// answered or not, until the actor has seen it.
const armsCompact = 1024

// arm schedules the end of attempt n's wait. The actor is woken when this
// deadline is earlier than the one the timer is set for, or when
// armsCompact deadlines have piled up: with a constant timeout every new
// deadline is later than the timer's, and without it the exchanges of a
// whole timeout's worth of requests (rate x timeout, millions with long
// timeouts) would be kept alive until it fires.
func (r *Requester) arm(ex *exchange, wait time.Duration, n int32) {
	at := r.now() + int64(wait)
	r.mu.Lock()
	wake := r.armLocked(ex, at, n)
	r.mu.Unlock()
	if wake {
		r.root.Send(r.pid, tickMsg{})
	}
}

// armLocked queues the deadline and says whether the actor must be woken.
func (r *Requester) armLocked(ex *exchange, at int64, n int32) bool {
	r.arms = append(r.arms, timerEntry{at: at, ex: ex, gen: ex.gen.Load(), attempt: n})
	wake := !r.isClosed && (r.armedAt == 0 || at < r.armedAt || len(r.arms) == armsCompact)
	if wake && (r.armedAt == 0 || at < r.armedAt) {
		r.armedAt = at
	}
	return wake
}

// end ends ex with no reply, if nobody ended it yet, counting it in c.
// remember keeps its key, so that a reply arriving later counts as late.
func (r *Requester) end(ex *exchange, c *atomic.Uint64, remember bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ex.done.Load() {
		return false
	}
	r.removeLocked(ex, remember, false, r.now())
	c.Add(1)
	return true
}

// removeLocked ends ex: it leaves the index and, if remember, is kept in
// the recent set.
func (r *Requester) removeLocked(ex *exchange, remember, answered bool, now int64) {
	ex.done.Store(true)
	delete(r.pending, ex.key)
	if ex.opts.Match == MatchAck {
		r.ackOnly--
	}
	r.c.inFlight.Add(^uint64(0))
	if remember {
		r.rememberLocked(ex.key, ex.from, answered, now)
	}
	// Only now, once the key is remembered: intercept's lock-free check
	// must never see its bucket empty in between.
	r.idRefs[idBucket(ex.key.id)].Add(-1)
	r.active.Store(int64(len(r.pending) + r.recent.len()))
}

// Close fails every pending exchange with transport.ErrClosed, makes new
// requests fail with it, and stops the actor.
func (r *Requester) Close() {
	r.mu.Lock()
	if r.isClosed {
		r.mu.Unlock()
		return
	}
	r.isClosed = true
	r.closed.Store(true)
	now := r.now()
	n := 0
	for _, ex := range r.pending {
		ex.err = fmt.Errorf("request %s: %w", ex.key.id, transport.ErrClosed)
		r.removeLocked(ex, false, false, now)
		r.c.failed.Add(1)
		ex.ch <- evDone
		n++
	}
	r.mu.Unlock()
	r.timer.Stop()
	r.root.StopFuture(r.pid).Wait()
	if n > 0 {
		r.log.Debug("pending requests failed at close", zap.Int("requests", n))
	}
}

type requesterActor Requester

func (a *requesterActor) Receive(c actor.Context) {
	r := (*Requester)(a)
	switch c.Message().(type) {
	case tickMsg:
		r.tick()
	case *actor.Stopping:
		r.timer.Stop()
	}
}

// tick moves new deadlines into the heap, handles the ones that passed and
// sets the timer for the next.
func (r *Requester) tick() {
	r.mu.Lock()
	arms := r.arms
	r.arms, r.spareArms = r.spareArms[:0], nil
	r.armedAt = 0
	r.mu.Unlock()
	for _, e := range arms {
		if e.current() {
			heap.Push(&r.heap, e)
		}
	}
	clear(arms)
	now := r.now()
	var due []timerEntry
	for len(r.heap) > 0 && r.heap[0].at <= now {
		e := heap.Pop(&r.heap).(timerEntry)
		if e.current() {
			due = append(due, e)
		}
	}
	// Drop finished exchanges when they make up most of the heap.
	if live := int(r.c.inFlight.Load()); len(r.heap) > 2*live+1024 {
		kept := r.heap[:0]
		for _, e := range r.heap {
			if e.current() {
				kept = append(kept, e)
			}
		}
		clear(r.heap[len(kept):])
		r.heap = kept
		heap.Init(&r.heap)
	}
	r.mu.Lock()
	r.spareArms = arms[:0]
	for _, e := range due {
		ex := e.ex
		if ex.done.Load() || ex.gen.Load() != e.gen {
			continue // ended meanwhile, maybe in use again (see current)
		}
		if int(e.attempt) <= ex.opts.Retries {
			ex.ch <- evRetry // counted when the caller resends
			continue
		}
		ex.err = fmt.Errorf("%w: %s seq %d ack %d after %d attempt(s)", ErrTimeout, ex.key.id, ex.key.seq, ex.key.ack-1, e.attempt)
		r.removeLocked(ex, true, false, now)
		r.c.timeouts.Add(1)
		ex.ch <- evDone
	}
	r.pruneLocked(now)
	r.active.Store(int64(len(r.pending) + r.recent.len()))
	if len(r.heap) > 0 && !r.isClosed {
		at := max(r.heap[0].at, now+int64(timerResolution))
		if r.armedAt == 0 || at < r.armedAt {
			r.armedAt = at
			r.timer.Reset(time.Duration(at - now))
		}
	}
	r.mu.Unlock()
}
