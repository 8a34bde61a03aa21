package cnactor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/protolog"
	"github.com/cnactor/cnactor/internal/ratelog"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/internal/watch"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Connector is the userspace connector core. Its methods are safe for
// concurrent use.
type Connector struct {
	log    *zap.Logger
	cfg    config
	conn   transport.Conn
	system *actor.ActorSystem
	table  *dispatch.Table
	reader *actors.Reader
	reqs   *actors.Requester // request/reply exchanges (request.go)
	subs   dispatch.Subscriptions

	ctx    context.Context // done at Close; handlers see it
	cancel context.CancelFunc
	seq    atomic.Uint32

	mu     sync.Mutex // serialises AddCallback, DelCallback, AddSupervisor and Close
	closed bool

	// cbMu guards callbacks, which supervisors also change (from their
	// actors) when they stop or restart children; it is never held while
	// waiting for an actor.
	cbMu      sync.Mutex
	callbacks map[transport.CbID]*callback
	fallback  *actors.HandlerRef

	rootSup  *supervisor.Supervisor
	sups     map[string]*supervisor.Supervisor // by name, the root included
	supWatch watch.List[supervisor.Event]
	failErr  atomic.Pointer[error] // set when the top supervisor fails the connector
	failed   chan struct{}

	watchers watch.List[Event]

	controlApplied   atomic.Uint64
	controlMalformed atomic.Uint64
	controlRejected  atomic.Uint64 // subscriptions over the bounds
	controlLog       *ratelog.Limiter
	callbacksRefused atomic.Uint64 // AddCallback past cfg.maxCallbacks
	callbackLog      *ratelog.Limiter
	restartMu        sync.Mutex
	restarts         sync.WaitGroup // Starts of handlers registered again (restart)
	restartsDone     bool           // Close waited for restarts (under restartMu)
}

type callback struct {
	route   *dispatch.Route
	ref     *actors.HandlerRef
	cfg     callbackConfig
	handler handlers.Handler
	sup     *supervisor.Supervisor
	// final is the child's status when Close took it from its supervisor,
	// so that Stats after Close still reports restarts (under cbMu).
	final *supervisor.ChildStatus
}

// New starts a connector core: it dials the kernel connector (unless
// WithTransport gives another transport), starts the actor system, the
// socket-reader actor and the core's own callback at dispatch.CoreID().
func New(opts ...Option) (*Connector, error) {
	cfg := config{readBuffer: DefaultReadBuffer, logger: zap.NewNop(), maxCallbacks: DefaultMaxCallbacks}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.check(); err != nil {
		if cfg.conn != nil {
			cfg.conn.Close() // owned from WithTransport on
		}
		return nil, err
	}
	conn := cfg.conn
	if conn == nil {
		nc, err := transport.Dial(transport.WithReadBuffer(cfg.readBuffer), transport.WithSendTimeout(transport.DefaultSendTimeout))
		if err != nil {
			return nil, err
		}
		conn = nc
	}
	log := cfg.logger
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return protolog.Logger(log)
	}),
		// Every dead letter (a Stop racing a child's Terminated at Close is
		// one) starts a goroutine that sleeps out the throttle interval and
		// cannot be stopped: keep that short so Close leaves nothing behind.
		actor.WithDeadLetterThrottleInterval(deadLetterWindow))
	c := &Connector{
		controlLog:  ratelog.New(log, "control message refused or malformed"),
		callbackLog: ratelog.New(log, "callback refused: too many callbacks"),
		log:         log,
		cfg:         cfg,
		conn:        conn,
		system:      system,
		table:       dispatch.NewTable(conn),
		callbacks:   map[transport.CbID]*callback{},
		sups:        map[string]*supervisor.Supervisor{},
		failed:      make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.seq.Store(1)
	top := spawn.Parent{Ctx: system.Root}
	c.reqs = actors.StartRequester(top, actors.RequesterConfig{Sender: connSender{c}, Logger: log})
	reader, err := actors.StartReader(top, actors.ReaderConfig{
		Conn: conn, Table: c.table, Logger: log, BatchSize: cfg.batchSize, Requester: c.reqs,
	})
	if err != nil {
		c.abort()
		return nil, err
	}
	c.reader = reader
	root, err := supervisor.New(top, RootSupervisor, cfg.rootSpec, supervisor.Hooks{
		OnEvent: c.supervisionEvent, OnTopFailure: c.topFailure,
	})
	if err != nil {
		c.Close(context.Background())
		return nil, err
	}
	c.rootSup = root
	c.sups[RootSupervisor] = root
	if cfg.fallback != nil {
		if err := c.startFallback(cfg.fallback); err != nil {
			c.Close(context.Background())
			return nil, err
		}
	}
	if err := c.AddCallback(dispatch.CoreID(), dispatch.CoreName, handlers.HandlerFunc(c.control)); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	log.Info("connector started", zap.Uint32("port", conn.Port()))
	return c, nil
}

// deadLetterWindow is protoactor's dead-letter log throttle interval
// (default 1 s, with a goroutine alive that long after each dead letter).
const deadLetterWindow = 10 * time.Millisecond

// fallbackKey is the fallback handler's key under the root supervisor.
const fallbackKey = "fallback"

// startFallback runs the handler for unknown ids under the root supervisor,
// like any callback.
func (c *Connector) startFallback(h handlers.Handler) error {
	cc := c.defaultCallbackConfig()
	start := func(parent spawn.Parent) (spawn.Child, error) {
		ref, err := c.spawn(parent, transport.CbID{}, fallbackKey, h, cc, c.rootSup.Spec().Decider)
		if err != nil {
			return spawn.Child{}, err
		}
		c.cbMu.Lock()
		c.fallback = ref
		c.cbMu.Unlock()
		c.table.SetFallback(&dispatch.Route{Name: fallbackKey, Target: ref})
		return ref.Child(), nil
	}
	stop := func(child spawn.Child, reason error) {
		c.cbMu.Lock()
		ref := c.fallback
		if ref == nil || !ref.Child().Is(child) {
			c.cbMu.Unlock()
			return
		}
		c.fallback = nil
		c.cbMu.Unlock()
		c.table.SetFallback(nil)
		c.reader.Detach(ref)
		c.stopHandler(ref, cc.child.ShutdownTimeout, false)
		c.log.Warn("fallback handler removed by its supervisor", zap.Error(reason))
	}
	return c.rootSup.StartChild(fallbackKey, cc.child, start, stop)
}

// abort undoes a New that failed before the reader started.
func (c *Connector) abort() {
	c.conn.Close()
	c.cancel()
	c.system.Shutdown()
}

// Port is the connector socket's port id.
func (c *Connector) Port() uint32 { return c.conn.Port() }

func (c *Connector) defaultCallbackConfig() callbackConfig {
	return callbackConfig{
		mailbox: c.cfg.mailbox, overflow: c.cfg.overflow, stall: c.cfg.stall, supervisor: RootSupervisor,
		child: supervisor.ChildSpec{Restart: supervisor.Permanent, ShutdownTimeout: supervisor.DefaultShutdownTimeout},
	}
}

func (c *Connector) spawn(parent spawn.Parent, id transport.CbID, name string, h handlers.Handler, cc callbackConfig, decide supervisor.Decider) (*actors.HandlerRef, error) {
	spec := actors.HandlerSpec{
		ID: id, Name: name, Handler: h,
		MailboxSize: cc.mailbox, Overflow: cc.overflow, StallTimeout: cc.stall,
		Logger: c.log, Sender: connSender{c}, Context: c.ctx,
		DeadLetter: cc.deadLetter,
	}
	if decide != nil {
		spec.Escalate = func(err error) bool { return decide(err) != supervisor.Resume }
	}
	return actors.SpawnHandler(parent, spec)
}

// Close stops the connector: it drains what is queued on the socket, lets
// every handler finish what is queued to it (bounded by its shutdown
// timeout and ctx), stops every actor and goroutine, and closes the socket.
// Stats keeps reporting the final counters of every callback afterwards.
func (c *Connector) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	// The reader drains the socket first; it closes the socket if ctx ends
	// before the drain does.
	errs := []error{c.reader.Stop(ctx)}
	c.reqs.Close() // fails what is still pending with ErrClosed
	c.cbMu.Lock()
	cbs := make([]*callback, 0, len(c.callbacks))
	for _, cb := range c.callbacks {
		cbs = append(cbs, cb)
		if st, ok := cb.sup.Status(cb.route.ID.String()); ok {
			st.State = supervisor.Stopped
			cb.final = &st
		}
	}
	c.cbMu.Unlock()
	// Handlers drain in parallel, each bounded by its shutdown timeout and
	// ctx. A callback stays in the table and in callbacks (nothing routes
	// any more: the reader has stopped), so that Stats after Close still
	// reports its final counters and nothing is lost silently.
	stopErrs := make([]error, len(cbs)+1)
	var wg sync.WaitGroup
	for i, cb := range cbs {
		cb.sup.Forget(cb.route.ID.String())
		wg.Go(func() {
			stopErrs[i] = c.stopHandler(cb.ref, min(cb.cfg.child.ShutdownTimeout, untilDeadline(ctx)), true)
		})
	}
	c.cbMu.Lock()
	fallback := c.fallback
	c.cbMu.Unlock()
	if fallback != nil {
		c.rootSup.Forget(fallbackKey)
		wg.Go(func() {
			stopErrs[len(cbs)] = c.stopHandler(fallback, min(supervisor.DefaultShutdownTimeout, untilDeadline(ctx)), true)
		})
	}
	wg.Wait()
	errs = append(errs, stopErrs...)
	// Handlers still inside Receive, and Starters being started again,
	// see their context end now.
	c.cancel()
	if c.rootSup != nil {
		// A stuck handler keeps its supervisor from stopping: then do not
		// wait long, it has been reported already.
		wait := min(supervisor.DefaultShutdownTimeout, untilDeadline(ctx))
		if errors.Is(errors.Join(stopErrs...), actors.ErrStopTimeout) {
			wait = min(wait, stuckWait)
		}
		sctx, cancel := context.WithTimeout(context.Background(), wait)
		if err := c.rootSup.Shutdown(sctx); err != nil && !errors.Is(errors.Join(stopErrs...), actors.ErrStopTimeout) {
			errs = append(errs, err) // nested supervisors stop with it
		}
		cancel()
	}
	c.restartMu.Lock()
	c.restartsDone = true // a supervisor still stopping starts nothing more
	c.restartMu.Unlock()
	c.restarts.Wait()
	if err := c.conn.Close(); err != nil && !errors.Is(err, transport.ErrClosed) {
		errs = append(errs, err)
	}
	c.system.Shutdown()
	c.callbackLog.Close()
	c.controlLog.Close()
	c.log.Info("connector closed")
	return errors.Join(errs...)
}

// stuckWait is how long Close waits for the supervisors once a handler is
// known to be stuck past its shutdown timeout.
const stuckWait = 50 * time.Millisecond

// untilDeadline is what is left of ctx, at least a nanosecond: a ctx that
// is done leaves no wait (0 would mean the default timeout downstream).
func untilDeadline(ctx context.Context) time.Duration {
	if ctx.Err() != nil {
		return time.Nanosecond
	}
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Nanosecond)
	}
	return time.Duration(1<<63 - 1)
}
