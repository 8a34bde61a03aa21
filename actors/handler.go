package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/ratelog"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Sender sends from the connector's socket. Send sends m as it is (replies
// keep the seq they answer); NextSeq numbers new messages.
type Sender interface {
	Send(ctx context.Context, to transport.Addr, m *transport.Message) error
	NextSeq() uint32
}

// HandlerSpec describes a handler actor to spawn.
type HandlerSpec struct {
	ID          transport.CbID
	Name        string
	Handler     handlers.Handler
	MailboxSize int      // DefaultMailboxSize if 0
	Overflow    Overflow // Backpressure by default
	// StallTimeout bounds one wait of the reader on this handler's full
	// mailbox under Backpressure (DefaultStallTimeout if 0).
	StallTimeout time.Duration
	Logger       *zap.Logger
	Sender       Sender
	// Context is done when the connector closes; handlers see it.
	Context context.Context
	// Escalate decides whether an error returned by the handler goes to
	// the supervisor (true) or only fails the message (false, and the
	// default when nil). handlers.ErrStop always goes.
	Escalate func(err error) bool
	// DeadLetter, if set, sees every message whose handling failed, with
	// the reason; the message is valid only during the call.
	DeadLetter func(m *transport.Received, reason error)
}

// spawned numbers handler actors so that a callback re-registered while its
// old actor is still stopping gets a distinct name.
var spawned atomic.Uint64

// ErrStopTimeout: a handler did not finish its current message in time.
var ErrStopTimeout = errors.New("actors: handler did not stop in time")

// HandlerRef is the runtime's handle on a running handler actor.
type HandlerRef struct {
	spec     HandlerSpec
	log      *zap.Logger
	pid      *actor.PID
	mb       *mailbox
	counters counters
	stopped  chan struct{}
	detached chan struct{} // closed by detach
	detach   sync.Once
	root     *actor.RootContext
	batch    uint64 // the reader's last batch that fed it (the reader's own)
	shedding bool   // Backpressure gave up waiting: shed until drained (the reader's own)
	// asleepSince is the reader's batch that first fed it since it was
	// last woken, 0 if none; picked lists the current batch's messages for
	// it (both the reader's own).
	asleepSince uint64
	picked      []int32
	batcher     handlers.BatchHandler
	// congested: unicast peers found full, until when (the handler
	// actor's own).
	congested map[uint32]time.Time
	limit     *ratelog.Limiter // failure warnings
	worker    *worker          // the actor's dispatcher: its own goroutine
	// inlineAfter: the time (sinceEpoch) before which the handler runs
	// only on its own goroutine, not on the receive loop's
	// (reader_inline.go); 0: it may.
	inlineAfter atomic.Int64
}

// SpawnHandler starts a handler actor as a child of parent (a supervisor,
// which restarts it through its Starter).
func SpawnHandler(parent spawn.Parent, spec HandlerSpec) (*HandlerRef, error) {
	if spec.Handler == nil {
		return nil, errors.New("actors: nil handler")
	}
	if spec.Context == nil {
		spec.Context = context.Background()
	}
	log := spec.Logger
	if log == nil {
		log = zap.NewNop()
	}
	h := &HandlerRef{
		spec:     spec,
		log:      log.With(zap.Stringer("id", spec.ID), zap.String("name", spec.Name)),
		stopped:  make(chan struct{}),
		detached: make(chan struct{}),
		root:     parent.Root(),
	}
	if spec.StallTimeout <= 0 {
		h.spec.StallTimeout = DefaultStallTimeout
	}
	h.batcher, _ = spec.Handler.(handlers.BatchHandler)
	h.limit = ratelog.New(h.log, warnNames[warnFailed])
	h.mb = newMailbox(spec.MailboxSize, spec.Overflow, &h.counters)
	_, h.mb.notifyLoss = spec.Handler.(handlers.LossObserver)
	h.mb.onPanic = h.onPanic
	w := startWorker(h.stopped)
	h.worker = w
	props := actor.PropsFromProducer(func() actor.Actor { return &handlerActor{ref: h} },
		actor.WithMailbox(func() actor.Mailbox { return h.mb }),
		actor.WithDispatcher(w))
	pid, err := parent.Ctx.SpawnNamed(props, fmt.Sprintf("handler-%d-%d-%d", spec.ID.Idx, spec.ID.Val, spawned.Add(1)))
	if err != nil {
		close(h.stopped)
		w.release()
		return nil, fmt.Errorf("actors: spawn handler %s: %w", spec.ID, err)
	}
	h.pid = pid
	return h, nil
}

// Child is the handler actor as its supervisor tracks it.
func (h *HandlerRef) Child() spawn.Child { return spawn.Child{PID: h.pid} }

// Spec returns what the handler was spawned with.
func (h *HandlerRef) Spec() HandlerSpec { return h.spec }

// deliver copies r into the mailbox and wakes the handler; a full mailbox
// applies the overflow policy, except that under Backpressure a full
// mailbox drops r (counted) instead of waiting: waiting is the reader's.
func (h *HandlerRef) deliver(r *transport.Received) {
	h.counters.received.Add(1)
	if h.mb.put(r) == putFull {
		h.mb.shed()
	}
	h.wake()
}

// detachOnce marks the callback as being removed: a reader holding the
// socket for this handler's full mailbox stops waiting (what it holds is
// shed, counted), so that removing a stuck callback never waits for its
// stall timeout. Reader.Detach calls it.
func (h *HandlerRef) detachOnce() { h.detach.Do(func() { close(h.detached) }) }

// wake makes the handler actor process what is queued.
func (h *HandlerRef) wake() { h.mb.schedule() }

// notifyLoss tells the handler, if it is a handlers.LossObserver, that n
// datagrams were lost by the socket before what is queued next, and
// reports whether it queued a notice.
func (h *HandlerRef) notifyLoss(n uint64) bool {
	if !h.mb.notifyLoss {
		return false
	}
	h.mb.notify(n, handlers.LossSocket)
	return true
}

// reject counts a message refused by the sender policy.
func (h *HandlerRef) reject() { h.counters.rejected.Add(1) }

// Stats returns the callback's counters.
func (h *HandlerRef) Stats() CallbackStats {
	// Read the outcomes before received so that the snapshot never shows
	// more outcomes than arrivals.
	handled, failed, dropped := h.counters.handled.Load(), h.counters.failed.Load(), h.counters.dropped.Load()
	received := h.counters.received.Load()
	queued := uint64(0)
	if done := handled + failed + dropped; received > done {
		queued = received - done
	}
	return CallbackStats{
		Received: received, Handled: handled, Failed: failed, Dropped: dropped,
		Queued: queued, Rejected: h.counters.rejected.Load(),
		Stalls: h.counters.stalls.Load(), Stalled: time.Duration(h.counters.stallNanos.Load()),
		Shed: h.counters.shed.Load(), Sheddings: h.counters.sheddings.Load(),
	}
}

type drainMarker struct{ done chan struct{} }

// Drain waits until the handler has processed every message queued before
// the call, or ctx ends.
func (h *HandlerRef) Drain(ctx context.Context) error {
	m := &drainMarker{done: make(chan struct{})}
	h.mb.PostUserMessage(m)
	select {
	case <-m.done:
		return nil
	case <-h.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops the actor and waits for it until ctx ends; envelopes still
// queued are counted as dropped. A handler stuck inside Receive cannot be
// interrupted: Stop then returns ErrStopTimeout and the actor stops when
// Receive returns.
func (h *HandlerRef) Stop(ctx context.Context) error {
	h.root.Stop(h.pid)
	select {
	case <-h.stopped:
	case <-ctx.Done():
		h.mb.discard()
		return fmt.Errorf("%w: %s: %w", ErrStopTimeout, h.spec.ID, ctx.Err())
	}
	h.mb.discard()
	return nil
}

// onPanic runs in the mailbox's recover: it turns the panic into the
// failure reason the supervisor sees, and accounts for the message.
func (h *HandlerRef) onPanic(value, msg any) any {
	reason := &handlers.PanicError{Value: value, Stack: debug.Stack()}
	d, ok := msg.(*delivery)
	if !ok || d.kind != slotMessage {
		h.log.Error("handler actor panicked outside a message", zap.Any("panic", value), zap.ByteString("stack", reason.Stack))
		return reason
	}
	if h.batcher != nil {
		// Which message of the batch panicked is unknown: all failed.
		for i := d.done; i < d.k; i++ {
			h.fail(&d.msgs[i], reason, i == d.done)
		}
		d.done = d.k - 1
		return reason
	}
	h.fail(&d.msgs[d.done], reason, true)
	return reason
}

// fail counts, logs and dead-letters a message whose handling failed.
func (h *HandlerRef) fail(r *transport.Received, reason error, withStack bool) {
	h.counters.failed.Add(1)
	// Rate-limited: a peer can make every message fail (one that never
	// reads its replies, say); the count is in Failed either way.
	if ok, n := h.limit.Allow(); ok {
		fields := []zap.Field{zap.Uint32("seq", r.Seq), zap.Uint32("ack", r.Ack), zap.Uint32("from", r.From), zap.Error(reason),
			zap.Int("suppressed", n)}
		if p, ok := reason.(*handlers.PanicError); ok && withStack {
			fields = append(fields, zap.ByteString("stack", p.Stack))
		}
		h.log.Warn("handler failed; message dropped", fields...)
	}
	if h.spec.DeadLetter != nil {
		h.guard("dead-letter hook", func() { h.spec.DeadLetter(r, reason) })
	}
}

// handlerActor runs a Handler inside protoactor.
type handlerActor struct {
	ref *HandlerRef
	hc  handlerContext
}

func (a *handlerActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *delivery:
		a.deliver(m)
	case *drainMarker:
		close(m.done)
	case *actor.Restarting:
		if r, ok := a.ref.spec.Handler.(handlers.Restarter); ok {
			a.ref.guard("Restart", r.Restart)
		}
	case *actor.Stopping:
		if s, ok := a.ref.spec.Handler.(handlers.Stopper); ok {
			a.ref.guard("OnStop", s.OnStop)
		}
	case *actor.Stopped:
		a.ref.mb.stopped.Store(true)
		a.ref.limit.Close()
		close(a.ref.stopped)
		// Stopped may run on the receive loop (reader_inline.go), with
		// the worker idle: it must be woken to end.
		a.ref.worker.release()
	}
}

// guard runs a lifecycle hook; a panic in it is logged, never propagated:
// protoactor would treat it as a failure and, during Stopping, resurrect the
// actor.
func (h *HandlerRef) guard(hook string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("handler "+hook+" panicked; ignored", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()
	f()
}

// deliver handles one run from the mailbox: messages (one Receive each, or
// one ReceiveBatch), or a loss notice.
func (a *handlerActor) deliver(d *delivery) {
	h := a.ref
	if d.kind == slotLoss {
		h.spec.Handler.(handlers.LossObserver).Lost(d.loss.n, d.loss.source)
		return
	}
	if h.batcher != nil {
		a.deliverBatch(d)
		return
	}
	for d.done = 0; d.done < d.k; d.done++ {
		if a.handle(&d.msgs[d.done]) {
			// The supervisor decides before the next message.
			d.consumed = d.done + 1
			return
		}
	}
}

func (a *handlerActor) deliverBatch(d *delivery) {
	h := a.ref
	a.hc = handlerContext{Context: h.spec.Context, ref: h}
	n, err := h.batcher.ReceiveBatch(&a.hc, d.msgs)
	if err == nil {
		h.counters.handled.Add(uint64(d.k))
		return
	}
	n = min(max(n, 0), d.k-1)
	h.counters.handled.Add(uint64(n))
	d.done, d.consumed = n, n+1
	a.failed(&d.msgs[n], err)
}

// handle runs the handler on one message and reports whether the
// supervisor was asked to decide (the run stops there).
func (a *handlerActor) handle(r *transport.Received) (escalated bool) {
	h := a.ref
	// Field by field: the whole struct would zero the reply buffer too,
	// per message.
	a.hc.Context, a.hc.ref, a.hc.r = h.spec.Context, h, r
	err := h.spec.Handler.Receive(&a.hc, &r.Message)
	a.hc.r = nil
	if err == nil {
		// Per message, as soon as it is done: a caller who saw the
		// handler's effect must find it counted. The counter's cache
		// line is the handler's alone, so this costs no transfer.
		h.counters.handled.Add(1)
		return false
	}
	return a.failed(r, err)
}

// failed accounts for a handler's error on r and escalates it if it
// should go to the supervisor.
func (a *handlerActor) failed(r *transport.Received, err error) (escalated bool) {
	h := a.ref
	if errors.Is(err, handlers.ErrStop) {
		h.counters.handled.Add(1)
		h.mb.invoker.EscalateFailure(err, nil)
		return true
	}
	h.fail(r, err, false)
	if h.spec.Escalate != nil && h.spec.Escalate(err) {
		h.mb.invoker.EscalateFailure(err, nil)
		return true
	}
	return false
}

// handlerContext is the handlers.Context of the message being handled (r),
// or the handlers.CallbackContext of a batch (r nil).
type handlerContext struct {
	context.Context
	ref   *HandlerRef
	r     *transport.Received
	reply transport.Message
}

var _ handlers.Context = (*handlerContext)(nil)

func (c *handlerContext) Logger() *zap.Logger { return c.ref.log }
func (c *handlerContext) Callback() (transport.CbID, string) {
	return c.ref.spec.ID, c.ref.spec.Name
}
func (c *handlerContext) From() uint32                 { return c.r.From }
func (c *handlerContext) Group() uint32                { return c.r.Group }
func (c *handlerContext) Creds() transport.Credentials { return c.r.Creds }

func (c *handlerContext) Reply(data []byte) error {
	c.reply = handlers.ReplyTo(&c.r.Message, data) // reused: a reply allocates nothing
	return c.send(&c.reply, transport.Addr{Port: c.r.From})
}

// A reply or send to a unicast peer whose receive queue is full waits at
// most peerWait, not the transport's whole send timeout, and the peer is
// then remembered as congested for congestedFor: meanwhile each message to
// it gets one attempt. A peer that never reads its replies thus costs its
// own replies (the handler's failures, counted and dead-lettered), not a
// wait per message for every sender queued behind it.
const (
	peerWait     = 20 * time.Millisecond
	congestedFor = time.Second
	maxCongested = 64 // peers remembered per handler; the oldest goes first
)

// ErrPeerCongested: the peer's receive queue stayed full.
var ErrPeerCongested = errors.New("actors: peer's receive queue is full")

// tryOnce is a done context: the transports make one attempt with it and
// fail at once if the peer's queue is full.
var tryOnce = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (c *handlerContext) send(m *transport.Message, to transport.Addr) error {
	s := c.ref.spec.Sender
	if s == nil {
		return errors.New("actors: handler has no sender")
	}
	if to.Port == 0 || to.Group != 0 { // the kernel, or a multicast: never waits
		return s.Send(c.Context, to, m)
	}
	err := s.Send(tryOnce, to, m)
	if err == nil || !errors.Is(err, context.Canceled) || c.Context.Err() != nil {
		return err
	}
	h := c.ref
	if h.isCongested(to.Port) {
		return fmt.Errorf("%w: port %d (congested)", ErrPeerCongested, to.Port)
	}
	ctx, cancel := context.WithTimeout(c.Context, peerWait) // allocates: only for a full peer
	err = s.Send(ctx, to, m)
	cancel()
	if err == nil || c.Context.Err() != nil {
		return err
	}
	h.markCongested(to.Port)
	return fmt.Errorf("%w: port %d: %w", ErrPeerCongested, to.Port, err)
}

// isCongested reports whether port was found full within congestedFor.
// Only the handler actor's goroutine uses the map.
func (h *HandlerRef) isCongested(port uint32) bool {
	until, ok := h.congested[port]
	if ok && time.Now().After(until) {
		delete(h.congested, port)
		return false
	}
	return ok
}

func (h *HandlerRef) markCongested(port uint32) {
	if h.congested == nil {
		h.congested = make(map[uint32]time.Time)
	}
	now := time.Now()
	if len(h.congested) >= maxCongested {
		var oldest uint32
		var at time.Time
		for p, u := range h.congested {
			if at.IsZero() || u.Before(at) {
				oldest, at = p, u
			}
		}
		delete(h.congested, oldest)
	}
	h.congested[port] = now.Add(congestedFor)
}

func (c *handlerContext) Send(to transport.Addr, m *transport.Message) error {
	if m.Seq == 0 && c.ref.spec.Sender != nil { // without one, send reports the error
		numbered := *m // sends never modify the caller's message
		numbered.Seq = c.ref.spec.Sender.NextSeq()
		m = &numbered
	}
	return c.send(m, to)
}
