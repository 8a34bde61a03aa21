package cnactor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// AddCallback registers h for id under a symbolic name, as the kernel's
// cn_add_callback: a handler actor is started, the id is routed to it, its
// group (idx, when 1..32) is joined, and subscribers are notified (event 0).
// A registered id is refused with ErrDuplicate. Without WithSenderPolicy,
// the policy is the one h declares (handlers.SenderDeclarer), else anyone.
// A handler that is a handlers.Starter is started once registered (within
// 5 s); if Start fails the callback is removed again and the error returned.
func (c *Connector) AddCallback(id transport.CbID, name string, h handlers.Handler, opts ...CallbackOption) error {
	if err := c.addCallback(id, name, h, opts...); err != nil {
		return err
	}
	st, ok := h.(handlers.Starter)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, startTimeout)
	defer cancel()
	if err := st.Start(ctx, outbox{c}); err != nil {
		if derr := c.DelCallback(id); derr != nil && !errors.Is(derr, ErrNotFound) {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("cnactor: start callback %q: %w", name, err)
	}
	return nil
}

// startTimeout bounds a handlers.Starter's Start.
const startTimeout = 5 * time.Second

// outbox is the handlers.Outbox of started handlers.
type outbox struct{ c *Connector }

func (o outbox) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	return o.c.Send(ctx, to, m)
}

func (c *Connector) addCallback(id transport.CbID, name string, h handlers.Handler, opts ...CallbackOption) error {
	if h == nil {
		return errors.New("cnactor: nil handler")
	}
	cc := c.defaultCallbackConfig()
	for _, o := range opts {
		o.applyCallback(&cc)
	}
	cc.registrations = new(atomic.Int32)
	if err := checkMailbox(cc.mailbox); err != nil {
		return fmt.Errorf("cnactor: add callback %q: %w", name, err)
	}
	if p, ok := handlers.DeclaredSenders(h); ok && !cc.policySet {
		cc.policy = p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	sup, ok := c.sups[cc.supervisor]
	if !ok {
		return fmt.Errorf("cnactor: add callback %q: %w: %q", name, ErrNoSupervisor, cc.supervisor)
	}
	if c.lookup(id) != nil {
		return fmt.Errorf("cnactor: add callback %q: %w: %s", name, ErrDuplicate, id)
	}
	if n := c.numCallbacks(); n >= c.cfg.maxCallbacks && id != dispatch.CoreID() {
		c.callbacksRefused.Add(1)
		if ok, sup := c.callbackLog.Allow(); ok {
			c.log.Warn("callback refused: too many callbacks", zap.Stringer("id", id), zap.String("name", name),
				zap.Int("callbacks", n), zap.Int("max", c.cfg.maxCallbacks), zap.Int("suppressed", sup))
		}
		return fmt.Errorf("cnactor: add callback %q: %w: %d registered, the limit", name, ErrTooManyCallbacks, n)
	}
	start := func(parent spawn.Parent) (spawn.Child, error) {
		return c.register(parent, sup, id, name, h, cc)
	}
	stop := func(child spawn.Child, reason error) { c.unregister(id, child, reason) }
	return sup.StartChild(id.String(), cc.child, start, stop)
}

// numCallbacks counts the registered callbacks, the core's excluded.
func (c *Connector) numCallbacks() int {
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	n := len(c.callbacks)
	if c.callbacks[dispatch.CoreID()] != nil {
		n--
	}
	return n
}

func (c *Connector) lookup(id transport.CbID) *callback {
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	return c.callbacks[id]
}

// register starts a handler actor under parent and routes id to it; its
// supervisor calls it again to start the callback afresh.
func (c *Connector) register(parent spawn.Parent, sup *supervisor.Supervisor, id transport.CbID, name string, h handlers.Handler, cc callbackConfig) (spawn.Child, error) {
	ref, err := c.spawn(parent, id, name, h, cc, sup.Spec().Decider)
	if err != nil {
		return spawn.Child{}, err
	}
	route := &dispatch.Route{ID: id, Name: name, Policy: cc.policy, Target: ref}
	if err := c.table.Add(route); err != nil {
		c.stopHandler(ref, cc.child.ShutdownTimeout, false)
		return spawn.Child{}, fmt.Errorf("cnactor: add callback %q: %w", name, err)
	}
	c.cbMu.Lock()
	c.callbacks[id] = &callback{route: route, ref: ref, cfg: cc, handler: h, sup: sup}
	c.cbMu.Unlock()
	c.notify(id, name, dispatch.EventAdded, actors.CallbackStats{})
	if st, ok := h.(handlers.Starter); ok && cc.registrations.Add(1) > 1 {
		// Registered again by a restart of its supervisor after OnStop:
		// start it again, as AddCallback did the first time (not from the
		// supervisor's actor, which must not wait on a send).
		c.restartMu.Lock()
		if !c.restartsDone {
			c.restarts.Go(func() { c.restart(id, name, st) })
		}
		c.restartMu.Unlock()
	}
	return ref.Child(), nil
}

// restart runs the Start of a handler its supervisor registered again.
func (c *Connector) restart(id transport.CbID, name string, st handlers.Starter) {
	ctx, cancel := context.WithTimeout(c.ctx, startTimeout)
	defer cancel()
	if err := st.Start(ctx, outbox{c}); err != nil && c.ctx.Err() == nil {
		c.log.Error("callback registered again by its supervisor did not start", zap.Stringer("id", id),
			zap.String("name", name), zap.Error(err))
	}
}

// unregister is a supervisor removing a callback for good (or before a
// fresh start): the route goes, queued messages are counted as dropped, and
// subscribers are notified. A callback already removed by DelCallback, or
// re-registered since, is left alone.
func (c *Connector) unregister(id transport.CbID, child spawn.Child, reason error) {
	c.cbMu.Lock()
	cb := c.callbacks[id]
	if cb == nil || !cb.ref.Child().Is(child) {
		c.cbMu.Unlock()
		return
	}
	delete(c.callbacks, id)
	c.cbMu.Unlock()
	c.table.Remove(id)
	c.reader.Detach(cb.ref)
	c.stopHandler(cb.ref, cb.cfg.child.ShutdownTimeout, false)
	c.log.Warn("callback removed by its supervisor", zap.Stringer("id", id), zap.String("name", cb.route.Name), zap.Error(reason))
	c.notify(id, cb.route.Name, dispatch.EventRemoved, cb.ref.Stats())
}

// DelCallback removes the callback for id, as cn_del_callback: the id stops
// being routed (and its group is left when no other callback uses it), the
// handler finishes every message already queued to it (bounded by the
// callback's shutdown timeout; what is left is counted as dropped), its
// actor stops, and subscribers are notified (event 1).
func (c *Connector) DelCallback(id transport.CbID) error {
	if id == dispatch.CoreID() {
		return ErrCoreCallback
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.delLocked(id)
}

func (c *Connector) delLocked(id transport.CbID) error {
	cb := c.lookup(id)
	if cb == nil {
		return fmt.Errorf("cnactor: del callback: %w: %s", ErrNotFound, id)
	}
	// The supervisor lets go first, so that it neither restarts nor stops
	// the handler while it drains.
	cb.sup.Forget(id.String())
	c.cbMu.Lock()
	if c.callbacks[id] != cb { // its supervisor removed it meanwhile
		c.cbMu.Unlock()
		return fmt.Errorf("cnactor: del callback: %w: %s", ErrNotFound, id)
	}
	delete(c.callbacks, id)
	c.cbMu.Unlock()
	_, leaveErr := c.table.Remove(id)
	// A reader holding the socket for this handler's full mailbox lets go
	// (flow control); once it has routed every batch it holds, nothing
	// more can reach the handler; then let it finish its queue.
	c.reader.Detach(cb.ref)
	stopErr := c.stopHandler(cb.ref, cb.cfg.child.ShutdownTimeout, true)
	c.notify(id, cb.route.Name, dispatch.EventRemoved, cb.ref.Stats())
	return errors.Join(leaveErr, stopErr)
}

// stopHandler stops a handler actor within timeout, after letting it finish
// its queue when drain is set; whatever is left is counted as dropped.
func (c *Connector) stopHandler(ref *actors.HandlerRef, timeout time.Duration, drain bool) error {
	if timeout <= 0 {
		timeout = supervisor.DefaultShutdownTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if drain {
		if err := ref.Drain(ctx); err != nil {
			c.log.Warn("handler did not drain in time; queued messages dropped",
				zap.Stringer("id", ref.Spec().ID), zap.Uint64("queued", ref.Stats().Queued))
		}
	}
	return ref.Stop(ctx)
}
