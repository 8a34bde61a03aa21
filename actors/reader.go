package actors

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// ReaderConfig configures the socket-reader.
type ReaderConfig struct {
	Conn      transport.Conn
	Table     *dispatch.Table
	Logger    *zap.Logger
	BatchSize int // datagrams per receive; transport.DefaultBatchSize if 0
	// Requester, if set, is offered each admitted message before routing
	// and takes the replies to its pending exchanges.
	Requester *Requester
}

// ReaderStats are the socket-reader's counters.
type ReaderStats struct {
	Datagrams     uint64 // datagrams read from the socket
	Bytes         uint64
	Messages      uint64 // cn_msgs decoded
	Malformed     uint64 // datagrams rejected by the decoder
	KernelDrops   uint64 // datagrams the kernel dropped: the receive queue was full
	Overflows     uint64 // receive-queue overflow episodes reported
	Unknown       uint64 // messages for ids with no callback
	Rejected      uint64 // messages refused by a sender policy
	Intercepted   uint64 // messages consumed by the interceptor (replies)
	ReceiveErrors uint64 // failed receive calls
	// RoutePanics counts batches whose routing panicked (a bug in
	// cnactor); RouteLost the messages of those batches not handed to a
	// handler (at most: the handler being fed when it panicked may have
	// got part of its share).
	RoutePanics uint64
	RouteLost   uint64
	// LoopMoves counts the times a handler run on the receive loop's
	// goroutine kept it for inlineMax (5 ms) and the loop moved to a new
	// goroutine (reader_inline.go).
	LoopMoves uint64
}

type readerCounters struct {
	datagrams, bytes, messages, malformed, kernelDrops, overflows,
	unknown, rejected, intercepted, receiveErrors, routePanics, routeLost, loopMoves atomic.Uint64
}

// Reader is the socket-reader: a receive loop feeding a protoactor actor
// that routes every message to its handler actor.
type Reader struct {
	cfg      ReaderConfig
	log      *zap.Logger
	root     *actor.RootContext
	pid      *actor.PID
	mb       *readerMailbox
	free     chan *transport.Batch
	stopping atomic.Bool
	stopMu   sync.Mutex // orders stopIntake's deadline against the loop's
	// batch numbers route calls; fed lists the handlers the current one
	// queued messages for; asleep lists those fed but not yet woken. All
	// belong to the reader actor.
	batch  uint64
	at     int // the message of the batch being picked; len once all are
	fed    []*HandlerRef
	asleep []*HandlerRef
	// sleepers is len(asleep), for the loop: it wakes them before waiting.
	sleepers atomic.Int32
	stopAt   atomic.Int64 // when stopIntake began (sinceEpoch)
	loopDone chan struct{}
	// actorDone is closed once the reader actor has stopped: a barrier
	// sent to it then would never be answered.
	actorDone chan struct{}
	stopOnce  sync.Once
	c         readerCounters
	taken     func() // counts an intercepted message; made once, not per call
	// filling is the batch the receive loop holds (nil while none).
	filling *transport.Batch
	// stopCh is closed by stopIntake: a flow-control wait gives up.
	stopCh chan struct{}
	timer  *time.Timer // the flow-control wait's, reused
	limit  *logLimiter
	// ready lists the handlers routing on the loop left to run on it
	// (the loop's own); guard watches such a run (reader_inline.go).
	ready []*HandlerRef
	guard loopGuard
}

// readerThroughput is how many batches the reader routes before yielding.
const readerThroughput = 64

// barrier is processed by the reader actor after every batch sent before it.
type barrier struct{ done chan struct{} }

// wakeSleepers makes the reader actor wake every handler it fed and left
// asleep.
type wakeSleepers struct{}

// deliver routes b and returns the batch to fill next, or nil when the
// loop has handlers to run (reader_inline.go) or is stopping (it then
// drains without waiting); the loop holds the batch to fill next in
// r.filling.
func (r *Reader) deliver(b *transport.Batch) *transport.Batch {
	// What Send to r.pid comes to, without the lookups. A batch routed at
	// once on this goroutine (the actor was idle) is filled again without
	// passing through r.free: two channel operations less per batch.
	if !r.mb.postBatch(b, true) {
		// Queued behind the actor's control messages: given back to
		// r.free once routed.
		if r.stopping.Load() {
			r.filling = nil
			return nil
		}
		r.filling = <-r.free
	}
	if len(r.ready) > 0 || r.stopping.Load() {
		return nil
	}
	return r.filling
}

// idle runs before the receive loop waits for the socket: handlers left
// asleep are woken then, never after the wait. A handler's messages wait
// for at most the batches it takes to fill its run, or until the socket is
// empty.
func (r *Reader) idle() {
	if r.sleepers.Load() != 0 {
		r.root.Send(r.pid, wakeSleepers{})
	}
}

// StartReader spawns the reader actor under parent and starts the receive
// loop.
func StartReader(parent spawn.Parent, cfg ReaderConfig) (*Reader, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	r := &Reader{
		cfg:       cfg,
		log:       cfg.Logger.Named("reader"),
		root:      parent.Root(),
		free:      make(chan *transport.Batch, 2),
		loopDone:  make(chan struct{}),
		actorDone: make(chan struct{}),
		stopCh:    make(chan struct{}),
		timer:     time.NewTimer(time.Hour),
	}
	r.mb = &readerMailbox{batch: r.routeBatch, done: r.giveBack}
	r.limit = newLogLimiter(r.log)
	r.timer.Stop()
	r.guard.timer = time.AfterFunc(time.Hour, r.moveLoop)
	r.guard.timer.Stop()
	// Two batches: the loop fills one while the actor routes the other.
	r.free <- transport.NewBatch(cfg.BatchSize)
	r.free <- transport.NewBatch(cfg.BatchSize)
	// The synchronized dispatcher runs the actor in the goroutine that
	// posts to it: the receive loop routes each batch itself, one actor at
	// a time as ever, without a goroutine handoff per batch; the mailbox
	// (reader_mailbox.go) routes a batch that finds the actor idle
	// without queueing it.
	props := actor.PropsFromProducer(func() actor.Actor { return (*readerActor)(r) },
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(readerThroughput)),
		actor.WithMailbox(func() actor.Mailbox { return r.mb }))
	pid, err := parent.Ctx.SpawnNamed(props, "reader")
	if err != nil {
		return nil, err
	}
	r.pid = pid
	r.taken = func() { r.c.intercepted.Add(1) }
	go r.loop()
	return r, nil
}

// The final drain at Close ends when a receive empties the queue, or after
// drainMax at the latest under traffic that keeps coming.
const drainMax = time.Second

func (r *Reader) loop() {
	if r.lead() {
		close(r.loopDone)
	}
}

// receiveFailed counts and logs (rate-limited) a failed receive, and
// pauses: a persistent error must not spin.
func (r *Reader) receiveFailed(err error) {
	r.c.receiveErrors.Add(1)
	if ok, n := r.limit.allow(warnReceive); ok {
		r.log.Warn("receive failed", zap.Error(err), zap.Int("suppressed", n))
	}
	time.Sleep(10 * time.Millisecond)
}

// drain routes what is queued on the socket without waiting: the queue is
// empty when a non-blocking receive finds nothing, or returns a batch with
// room to spare, whatever the scheduler does meanwhile. Traffic arriving
// after stopIntake need not hold Close up beyond drainMax.
func (r *Reader) drain() {
	for b := range r.free {
		if time.Duration(sinceEpoch()-r.stopAt.Load()) > drainMax {
			// Traffic kept coming: what is still queued is left to the
			// socket's close. Said, not silent.
			r.log.Warn("stop: drain limit reached; datagrams still arriving are left unread", zap.Duration("limit", drainMax))
			r.free <- b
			return
		}
		got, err := r.cfg.Conn.TryReceiveBatch(b)
		if err != nil {
			r.free <- b
			if errors.Is(err, transport.ErrClosed) {
				return
			}
			r.receiveFailed(err)
			continue
		}
		if !got {
			r.free <- b
			return
		}
		emptied := b.Lost == 0 && b.Datagrams < b.Cap()
		r.root.Send(r.pid, b)
		if emptied {
			return
		}
	}
}

// Detach takes h, whose route has just left the table, out of the
// reader's hands: a wait on h's full mailbox ends at once (what it holds is
// shed, counted), and Detach returns once every batch received before the
// call is routed, so that nothing reaches h afterwards and h can be
// stopped without losing a message uncounted.
func (r *Reader) Detach(h *HandlerRef) {
	h.detachOnce()
	r.barrier(context.Background())
}

// barrier returns once every batch received before the call is routed.
func (r *Reader) barrier(ctx context.Context) error {
	b := &barrier{done: make(chan struct{})}
	r.root.Send(r.pid, b)
	select {
	case <-b.done:
		return nil
	case <-r.actorDone: // stopped: nothing is routed any more
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops reading and then the reader actor. The receive loop first
// drains what is queued on the socket, without waiting for more, until a
// receive empties the queue or a second has passed; if ctx ends first,
// Stop closes the Conn to end the loop and returns the Close error. The
// actor stops once every batch read is routed. Stop may be called again.
func (r *Reader) Stop(ctx context.Context) error {
	var err error
	if !r.stopIntake(ctx) {
		err = r.cfg.Conn.Close()
		r.waitIntake()
	}
	r.stopActor()
	return err
}

// stopIntake stops reading: the loop drains what is queued on the socket
// without waiting, until a receive empties the queue (finds nothing, or
// returns a batch with room to spare) or drainMax has passed, and then
// returns; stopIntake waits for that or for ctx. If the loop did not
// finish by itself, the caller closes the Conn to end it and calls
// waitIntake.
func (r *Reader) stopIntake(ctx context.Context) (drained bool) {
	r.stopMu.Lock()
	r.stopAt.Store(sinceEpoch())
	if !r.stopping.Swap(true) {
		close(r.stopCh)
	}
	r.cfg.Conn.SetReadDeadline(time.Unix(1, 0)) // wakes a blocked receive
	r.stopMu.Unlock()
	select {
	case <-r.loopDone:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitIntake waits for the receive loop to end (after stopIntake and, if
// needed, closing the Conn).
func (r *Reader) waitIntake() { <-r.loopDone }

// stopActor stops the reader actor once every received batch is routed.
func (r *Reader) stopActor() {
	r.stopOnce.Do(func() {
		r.barrier(context.Background())
		r.root.StopFuture(r.pid).Wait()
		close(r.actorDone)
		r.limit.close()
	})
}

// Stats returns the reader's counters.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		Datagrams: r.c.datagrams.Load(), Bytes: r.c.bytes.Load(), Messages: r.c.messages.Load(),
		Malformed: r.c.malformed.Load(), KernelDrops: r.c.kernelDrops.Load(), Overflows: r.c.overflows.Load(),
		Unknown: r.c.unknown.Load(), Rejected: r.c.rejected.Load(), Intercepted: r.c.intercepted.Load(),
		ReceiveErrors: r.c.receiveErrors.Load(), RoutePanics: r.c.routePanics.Load(), RouteLost: r.c.routeLost.Load(),
		LoopMoves: r.c.loopMoves.Load(),
	}
}

type readerActor Reader

// Receive handles the reader actor's control messages; its mailbox
// hands batches to routeBatch, and only a batch that came wrapped in an
// envelope arrives here.
func (a *readerActor) Receive(c actor.Context) {
	r := (*Reader)(a)
	switch m := c.Message().(type) {
	case *transport.Batch:
		r.routeBatch(m)
		r.giveBack(m)
	case *barrier:
		r.wakeAsleepRecovering()
		close(m.done)
	case wakeSleepers:
		r.wakeAsleepRecovering()
	}
}

// routeBatch is the reader actor's handling of a batch. A panic while
// routing (only a bug can cause one: routes are the connector's, policies
// are data) is recovered here rather than escalated: a restart would reset
// nothing of the Reader, and once the supervisor's budget is spent it
// would stop the actor, leaving the receive loop waiting for a batch that
// never comes back.
func (r *Reader) routeBatch(b *transport.Batch) {
	defer func() {
		if p := recover(); p != nil {
			r.routeFailed(b, p)
		}
	}()
	r.route(b)
}

// giveBack returns a routed batch to the receive loop.
func (r *Reader) giveBack(b *transport.Batch) { r.free <- b }

// routeFailed counts and logs a batch whose routing panicked, and resets
// what routing keeps per batch: the messages picked for a handler and
// not yet handed over are lost (counted), and every handler fed or left
// asleep is woken.
func (r *Reader) routeFailed(b *transport.Batch, p any) {
	lost := len(b.Messages) - min(r.at, len(b.Messages))
	for _, h := range r.fed {
		lost += len(h.picked)
		h.picked = h.picked[:0]
	}
	r.recoverRouting(p, lost)
}

// wakeAsleepRecovering is wakeAsleep for the actor's control messages: a
// wake that panics (a bug) is handled as a routing panic, not escalated,
// and the barrier waiting on it is still answered.
func (r *Reader) wakeAsleepRecovering() {
	defer func() {
		if p := recover(); p != nil {
			r.recoverRouting(p, 0)
		}
	}()
	r.wakeAsleep(r.wakeHandler)
}

// recoverRouting counts and logs a routing panic and wakes every handler
// fed or left asleep; lost messages were counted by the caller.
func (r *Reader) recoverRouting(p any, lost int) {
	r.c.routePanics.Add(1)
	r.c.routeLost.Add(uint64(lost))
	if ok, n := r.limit.allow(warnRoutePanic); ok {
		r.log.Error(warnNames[warnRoutePanic], zap.Any("panic", p), zap.Int("lost", lost),
			zap.Int("suppressed", n), zap.Stack("stack"))
	}
	// Every handler fed or left asleep is woken, each on its own: a wake
	// that panics too (the same bug, likely) must neither leave the others
	// asleep nor escape from here.
	for _, hs := range [2][]*HandlerRef{r.fed, r.asleep} {
		for _, h := range hs {
			h.asleepSince = 0
			wakeRecovering(h)
		}
	}
	clear(r.fed)
	r.fed = r.fed[:0]
	clear(r.asleep)
	r.asleep = r.asleep[:0]
	r.sleepers.Store(0)
}

func wakeRecovering(h *HandlerRef) {
	defer func() { _ = recover() }() // routeFailed has logged the failure
	h.wake()
}

// route delivers every message of b; it never blocks on a handler.
func (r *Reader) route(b *transport.Batch) {
	r.batch++
	r.at = 0
	r.c.datagrams.Add(uint64(b.Datagrams))
	r.c.bytes.Add(uint64(b.Bytes))
	r.c.messages.Add(uint64(len(b.Messages)))
	snap := r.cfg.Table.Snapshot()
	if b.Lost > 0 {
		r.c.kernelDrops.Add(b.Lost)
		r.c.overflows.Add(1)
		if ok, n := r.limit.allow(warnOverflow); ok {
			r.log.Warn("receive queue overflowed; datagrams lost", zap.Uint64("lost", b.Lost), zap.Int("suppressed", n))
		}
		// Handlers that watch for loss hear of it before the messages
		// received after it, and are woken as if fed: by the batch that
		// empties the socket at the latest, so the notice is heard even
		// if no message follows. The others have nothing new queued and
		// are not woken: waking every callback's goroutine per loss
		// report cost a wake per registered callback, many of them idle,
		// while the socket overflows, when the CPU is shortest.
		snap.Each(func(rt *dispatch.Route) {
			if h := rt.Target.(*HandlerRef); h.notifyLoss(b.Lost) && h.batch != r.batch {
				h.batch = r.batch
				r.fed = append(r.fed, h)
			}
		})
	}
	for i := range b.Malformed {
		m := &b.Malformed[i]
		r.c.malformed.Add(1)
		if ok, n := r.limit.allow(warnMalformed); ok {
			r.log.Warn("malformed datagram rejected", zap.Uint32("from", m.From), zap.Int("len", len(m.Data)),
				zap.Error(m.Err), zap.Int("suppressed", n))
		}
	}
	// Each handler's messages are picked out of the batch first and then
	// admitted together: one lock and one counter update per handler per
	// batch, also when ids alternate. Consecutive messages for one id
	// are the common case: the last lookup is kept for the batch (the
	// snapshot does not change in it).
	var lastID transport.CbID
	var lastRoute *dispatch.Route
	for i := range b.Messages {
		r.at = i
		msg := &b.Messages[i]
		if r.cfg.Requester != nil && r.cfg.Requester.intercept(msg, r.taken) {
			continue
		}
		route := lastRoute
		if route == nil || msg.ID != lastID {
			route = snap.Lookup(msg.ID)
			lastID, lastRoute = msg.ID, route
		}
		if route == nil {
			r.c.unknown.Add(1)
			if route = snap.Fallback(); route == nil {
				continue
			}
		}
		h := route.Target.(*HandlerRef)
		if !route.Policy.Allows(msg.From, msg.Creds) {
			r.c.rejected.Add(1)
			h.reject()
			if ok, n := r.limit.allow(warnRefused); ok {
				r.log.Warn("sender refused by policy", zap.Stringer("id", msg.ID), zap.Uint32("from", msg.From),
					zap.Uint32("uid", msg.Creds.UID), zap.Stringer("policy", route.Policy), zap.Int("suppressed", n))
			}
			continue
		}
		if h.batch != r.batch {
			h.batch = r.batch
			r.fed = append(r.fed, h)
		}
		h.picked = append(h.picked, int32(i))
	}
	r.at = len(b.Messages)
	for _, h := range r.fed {
		r.admitPicked(h, b.Messages, h.picked)
		h.picked = h.picked[:0]
	}
	// A handler is woken (or run on the loop: reader_inline.go) once it
	// has a run's worth queued, or its oldest message has waited
	// sleepBatches batches; otherwise when the socket is empty (receive).
	// Under sustained load that is one wake-up per few hundred messages,
	// not per batch: fewer futex wakes and idle spinning on the CPU the
	// sender and the reader need.
	if b.Datagrams < b.Cap() || !r.mb.looping {
		// The receive emptied the socket: the reader is about to wait,
		// so everyone fed is woken now (no extra receive to find out).
		// So is everyone a batch routed off the loop fed (it was queued
		// behind a control message): the loop may have found the queue
		// empty and be waiting already, its idle call made before these
		// handlers were left asleep.
		// The lists are cleared only once all are woken: a wake that
		// panics leaves them whole for routeFailed.
		for _, h := range r.fed {
			r.wakeBeforeWait(h)
		}
		clear(r.fed)
		r.fed = r.fed[:0]
		r.wakeAsleep(r.wakeBeforeWait)
		return
	}
	for i, h := range r.fed {
		r.fed[i] = nil
		if h.asleepSince == 0 {
			h.asleepSince = r.batch
			r.asleep = append(r.asleep, h)
		}
	}
	r.fed = r.fed[:0]
	kept := r.asleep[:0]
	for _, h := range r.asleep {
		if r.batch-h.asleepSince+1 >= sleepBatches || h.mb.UserMessageCount() >= maxRun {
			h.asleepSince = 0
			r.wakeHandler(h)
			continue
		}
		kept = append(kept, h)
	}
	clear(r.asleep[len(kept):])
	r.asleep = kept
	r.sleepers.Store(int32(len(kept)))
}

// sleepBatches bounds how many batches a handler's messages may wait
// before it is woken.
const sleepBatches = 16

// wakeAsleep wakes every handler left asleep, with wake.
func (r *Reader) wakeAsleep(wake func(*HandlerRef)) {
	for _, h := range r.asleep {
		h.asleepSince = 0
		wake(h)
	}
	clear(r.asleep)
	r.asleep = r.asleep[:0]
	r.sleepers.Store(0)
}

// wakeFed wakes every handler fed and not yet woken, each on its own
// goroutine: the loop is about to wait.
func (r *Reader) wakeFed() {
	for _, h := range r.fed {
		h.wake()
	}
	r.wakeAsleep((*HandlerRef).wake)
}
