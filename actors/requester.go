package actors

import (
	"container/heap"
	"context"
	"errors"
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

// Match says which received message answers a request.
type Match uint8

const (
	// MatchSeqAck is the seed's rule: same id, same seq, ack + 1, from the
	// port the request went to (from any sender for a group request).
	MatchSeqAck Match = iota
	// MatchAck is for the kernel's proc connector, whose acks overwrite
	// seq: same id and ack + 1, from the kernel (port 0), whatever the seq.
	MatchAck
)

func (m Match) String() string {
	if m == MatchAck {
		return "ack"
	}
	return "seq-ack"
}

var (
	// ErrTimeout: no reply came before the last attempt's wait ran out.
	ErrTimeout = errors.New("actors: request timed out")
	// ErrPending: the caller chose a seq and ack (or, for MatchAck, an ack)
	// that an exchange in flight already uses.
	ErrPending = errors.New("actors: an exchange with this seq and ack is in flight")
	// ErrRequesterClosed is what pending and new requests fail with after
	// Close, unless RequesterConfig.Closed says otherwise.
	ErrRequesterClosed = fmt.Errorf("actors: requester: %w", transport.ErrClosed)
)

// Request defaults.
const (
	DefaultRequestTimeout = time.Second
	DefaultBackoff        = 2.0
	DefaultMaxWait        = 30 * time.Second
	// DefaultDupWindow is how long a finished exchange is remembered, so
	// that a late or duplicate reply is recognised instead of dispatched.
	DefaultDupWindow = 10 * time.Second
	// DefaultDupCapacity bounds how many finished exchanges are remembered.
	DefaultDupCapacity = 1 << 16
)

// timerResolution: the timer never fires more often than this; a timeout
// is late by at most about this much.
const timerResolution = time.Millisecond

// RequestOptions configure one exchange. The zero value is the default.
type RequestOptions struct {
	// Timeout is how long the first attempt waits for its reply
	// (DefaultRequestTimeout if 0).
	Timeout time.Duration
	// Retries is how many times the request is sent again, with the same seq
	// and ack, when an attempt's wait runs out.
	Retries int
	// Backoff multiplies the wait of each retry (DefaultBackoff if 0; values
	// below 1 are taken as 1). MaxWait caps one attempt's wait
	// (DefaultMaxWait if 0).
	Backoff float64
	MaxWait time.Duration
	// Match is the matching policy.
	Match Match
}

func (o RequestOptions) withDefaults() RequestOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRequestTimeout
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	o.Backoff = max(o.Backoff, 1)
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	o.Retries = max(o.Retries, 0)
	return o
}

// Reply is the answer to a request.
type Reply struct {
	// Received is the reply as it arrived; its Data is the Reply's own copy.
	transport.Received
	// RTT is the time from the first send of the request to the reply's
	// arrival at the socket reader.
	RTT time.Duration
	// Attempts is how many times the request had been sent.
	Attempts int
}

// RequesterConfig configures StartRequester.
type RequesterConfig struct {
	// Sender sends requests (as they are) and numbers them.
	Sender Sender
	Logger *zap.Logger
	// Closed is the error pending and new requests fail with (wrapped) once
	// the requester is closed; ErrRequesterClosed if nil.
	Closed error
	// DupWindow and DupCapacity bound how long and how many finished
	// exchanges are remembered (DefaultDupWindow, DefaultDupCapacity).
	DupWindow   time.Duration
	DupCapacity int
}

// RequesterStats are the requester's counters.
type RequesterStats struct {
	InFlight   uint64 // exchanges waiting for their reply now
	Requests   uint64 // exchanges started
	Replies    uint64 // replies delivered
	Timeouts   uint64 // exchanges that ended with ErrTimeout
	Retries    uint64 // resends after a wait ran out
	Cancelled  uint64 // exchanges ended by their context
	Failed     uint64 // exchanges ended by a send error or Close
	Duplicates uint64 // further replies to an exchange already answered; consumed
	Late       uint64 // replies to an exchange that timed out or was cancelled; consumed
	// RTT is the histogram of the delivered replies' round-trip times.
	RTT RTTHistogram
}

type requesterCounters struct {
	inFlight, requests, replies, timeouts, retries, cancelled, failed, duplicates, late atomic.Uint64

	rtt rttHistogram
}

// matchKey is what a reply is looked up by. For MatchAck, seq is 0.
type matchKey struct {
	id      transport.CbID
	seq     uint32
	ack     uint32 // the reply's: request ack + 1
	ackOnly bool
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

// exchange is one request in flight.
type exchange struct {
	key  matchKey
	from sender
	opts RequestOptions
	// ch carries at most one evRetry (the timer is only re-armed after the
	// caller consumed it) and one evDone, so sends on it never block.
	ch       chan event
	done     atomic.Bool  // set, under Requester.mu, by whoever ends it
	sent     atomic.Int64 // mono time of the first send
	attempts atomic.Int32
	reply    Reply
	err      error
}

// timerEntry is one attempt's deadline in the timer heap.
type timerEntry struct {
	at      int64 // mono time
	ex      *exchange
	attempt int32
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

// recentEntry remembers a finished exchange.
type recentEntry struct {
	from     sender
	expires  int64
	gen      uint64
	answered bool // a reply was delivered: another one is a duplicate, else it is late
}

type recentItem struct {
	key matchKey
	gen uint64
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
	recent    map[matchKey]recentEntry
	recentQ   []recentItem // oldest first, from recentHead
	recentHd  int
	gen       uint64
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
	if cfg.Closed == nil {
		cfg.Closed = ErrRequesterClosed
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
		recent:  map[matchKey]recentEntry{},
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
		return matchKey{id: m.ID, ack: m.Ack + 1, ackOnly: true}
	}
	return matchKey{id: m.ID, seq: m.Seq, ack: m.Ack + 1}
}

// Request sends m to to and waits for its reply. A zero m.Seq is replaced
// by the Sender's next seq and a zero m.Ack by a random one. It fails with
// an error wrapping ErrTimeout when every attempt's wait ran out, ctx's
// error when ctx ended first, the Closed error when the requester closed,
// or the send error.
func (r *Requester) Request(ctx context.Context, m transport.Message, to transport.Addr, o RequestOptions) (*Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	ex := &exchange{opts: o, ch: make(chan event, 2), from: sender{port: to.Port, anyPort: to.Group != 0}}
	if o.Match == MatchAck {
		ex.from = sender{port: 0}
	}
	if m.Seq == 0 {
		m.Seq = r.cfg.Sender.NextSeq()
	}
	if err := r.register(ex, &m); err != nil {
		return nil, err
	}
	wait := o.Timeout
	ex.attempts.Store(1)
	ex.sent.Store(r.now())
	r.arm(ex, wait, 1)
	if err := r.cfg.Sender.Send(ctx, to, &m); err != nil {
		return r.sendFailed(ctx, ex, err)
	}
	for {
		select {
		case ev := <-ex.ch:
			if ev == evDone {
				return ex.result()
			}
			if ex.done.Load() {
				continue // the reply won the race; evDone follows
			}
			wait = min(time.Duration(float64(wait)*o.Backoff), o.MaxWait)
			n := ex.attempts.Add(1)
			r.arm(ex, wait, n)
			if err := r.cfg.Sender.Send(ctx, to, &m); err != nil {
				return r.sendFailed(ctx, ex, err)
			}
		case <-ctx.Done():
			if r.end(ex, &r.c.cancelled, true) {
				return nil, ctx.Err()
			}
			return r.await(ex)
		}
	}
}

func (ex *exchange) result() (*Reply, error) {
	if ex.err != nil {
		return nil, ex.err
	}
	return &ex.reply, nil
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

// register puts ex in the index under a key no other pending exchange has.
func (r *Requester) register(ex *exchange, m *transport.Message) error {
	randomAck := m.Ack == 0
	if randomAck {
		m.Ack = rand.Uint32()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isClosed {
		return fmt.Errorf("request %s: %w", m.ID, r.cfg.Closed)
	}
	for {
		ex.key = keyFor(m, ex.opts.Match)
		if _, busy := r.pending[ex.key]; !busy {
			break
		}
		if !randomAck {
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
	r.active.Store(int64(len(r.pending) + len(r.recent)))
	return nil
}

// arm schedules the end of attempt n's wait. The actor is woken only when
// this deadline is earlier than the one the timer is set for.
func (r *Requester) arm(ex *exchange, wait time.Duration, n int32) {
	at := r.now() + int64(wait)
	r.mu.Lock()
	r.arms = append(r.arms, timerEntry{at: at, ex: ex, attempt: n})
	wake := !r.isClosed && (r.armedAt == 0 || at < r.armedAt)
	if wake {
		r.armedAt = at
	}
	r.mu.Unlock()
	if wake {
		r.root.Send(r.pid, tickMsg{})
	}
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
	r.idRefs[idBucket(ex.key.id)].Add(-1)
	if ex.opts.Match == MatchAck {
		r.ackOnly--
	}
	r.c.inFlight.Add(^uint64(0))
	if remember {
		r.rememberLocked(ex.key, ex.from, answered, now)
	}
	r.active.Store(int64(len(r.pending) + len(r.recent)))
}

func (r *Requester) rememberLocked(k matchKey, from sender, answered bool, now int64) {
	r.pruneLocked(now)
	if len(r.recent) >= r.cfg.DupCapacity {
		r.evictLocked(now, true)
	}
	r.gen++
	if _, again := r.recent[k]; !again {
		r.idRefs[idBucket(k.id)].Add(1)
	}
	r.recent[k] = recentEntry{from: from, expires: now + r.window, gen: r.gen, answered: answered}
	r.recentQ = append(r.recentQ, recentItem{key: k, gen: r.gen})
}

// pruneLocked forgets the finished exchanges whose window has passed.
func (r *Requester) pruneLocked(now int64) {
	for r.recentHd < len(r.recentQ) && r.evictLocked(now, false) {
	}
}

// evictLocked drops the oldest remembered exchange if it expired (or if
// force) and reports whether the queue head was consumed.
func (r *Requester) evictLocked(now int64, force bool) bool {
	for r.recentHd < len(r.recentQ) {
		it := r.recentQ[r.recentHd]
		e, ok := r.recent[it.key]
		if ok && e.gen == it.gen && !force && e.expires > now {
			return false
		}
		r.recentQ[r.recentHd] = recentItem{}
		r.recentHd++
		if ok && e.gen == it.gen {
			delete(r.recent, it.key)
			r.idRefs[idBucket(it.key.id)].Add(-1)
			break
		}
		// A stale item (its key was remembered again later): keep going.
	}
	if r.recentHd > 1024 && r.recentHd*2 >= len(r.recentQ) {
		n := copy(r.recentQ, r.recentQ[r.recentHd:])
		clear(r.recentQ[n:])
		r.recentQ = r.recentQ[:n]
		r.recentHd = 0
	}
	return true
}

// idBuckets spreads callback ids over counters of pending and remembered
// exchanges, so that intercept can pass other ids by without the lock.
const idBuckets = 256

func idBucket(id transport.CbID) uint32 { return (id.Idx*0x9e3779b1 ^ id.Val) % idBuckets }

// intercept takes replies to pending exchanges, and late and duplicate
// replies to finished ones, out of the reader's stream; it returns whether
// it took m. It never blocks. Having taken m, it calls taken before
// anything that lets a caller observe it (waking a waiting request): the
// reader's Intercepted counter must never lag behind what a caller has
// seen.
func (r *Requester) intercept(m *transport.Received, taken func()) bool {
	// Lock-free for the traffic of ids with no exchange pending or
	// remembered, which is most of it.
	if r.active.Load() == 0 || r.idRefs[idBucket(m.ID)].Load() == 0 {
		return false
	}
	now := r.now()
	r.mu.Lock()
	k := matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	ex := r.pending[k]
	if (ex == nil || !ex.from.accepts(m.From)) && m.From == 0 && r.ackOnly > 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: true}
		ex = r.pending[k]
	}
	if ex != nil && ex.from.accepts(m.From) {
		r.removeLocked(ex, true, true, now)
		r.mu.Unlock()
		r.c.replies.Add(1)
		ex.reply = Reply{Received: *m, RTT: time.Duration(now - ex.sent.Load()), Attempts: int(ex.attempts.Load())}
		r.c.rtt.observe(ex.reply.RTT)
		ex.reply.Data = append([]byte(nil), m.Data...)
		taken() // before the caller wakes and may read the reader's counters
		ex.ch <- evDone
		return true
	}
	defer r.mu.Unlock()
	r.pruneLocked(now)
	k = matchKey{id: m.ID, seq: m.Seq, ack: m.Ack}
	e, ok := r.recent[k]
	if (!ok || !e.from.accepts(m.From)) && m.From == 0 {
		k = matchKey{id: m.ID, ack: m.Ack, ackOnly: true}
		e, ok = r.recent[k]
	}
	r.active.Store(int64(len(r.pending) + len(r.recent)))
	if !ok || !e.from.accepts(m.From) {
		return false
	}
	taken()
	if e.answered {
		r.c.duplicates.Add(1)
	} else {
		r.c.late.Add(1)
		e.answered = true
		r.recent[k] = e
	}
	return true
}

// Close fails every pending exchange with the Closed error, makes new
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
		ex.err = fmt.Errorf("request %s: %w", ex.key.id, r.cfg.Closed)
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
		if !e.ex.done.Load() {
			heap.Push(&r.heap, e)
		}
	}
	clear(arms)
	now := r.now()
	var due []timerEntry
	for len(r.heap) > 0 && r.heap[0].at <= now {
		e := heap.Pop(&r.heap).(timerEntry)
		if !e.ex.done.Load() && e.ex.attempts.Load() == e.attempt {
			due = append(due, e)
		}
	}
	// Drop finished exchanges when they make up most of the heap.
	if live := int(r.c.inFlight.Load()); len(r.heap) > 2*live+1024 {
		kept := r.heap[:0]
		for _, e := range r.heap {
			if !e.ex.done.Load() {
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
		if ex.done.Load() {
			continue
		}
		if int(e.attempt) <= ex.opts.Retries {
			r.c.retries.Add(1)
			ex.ch <- evRetry
			continue
		}
		ex.err = fmt.Errorf("%w: %s seq %d ack %d after %d attempt(s)", ErrTimeout, ex.key.id, ex.key.seq, ex.key.ack-1, e.attempt)
		r.removeLocked(ex, true, false, now)
		r.c.timeouts.Add(1)
		ex.ch <- evDone
	}
	r.pruneLocked(now)
	r.active.Store(int64(len(r.pending) + len(r.recent)))
	if len(r.heap) > 0 && !r.isClosed {
		at := max(r.heap[0].at, now+int64(timerResolution))
		if r.armedAt == 0 || at < r.armedAt {
			r.armedAt = at
			r.timer.Reset(time.Duration(at - now))
		}
	}
	r.mu.Unlock()
}
