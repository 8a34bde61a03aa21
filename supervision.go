package cnactor

import (
	"fmt"

	"github.com/cnactor/cnactor/supervisor"
	"go.uber.org/zap"
)

// RootSupervisor is the name of the supervisor every connector starts with.
const RootSupervisor = "root"

// AddSupervisor starts a named supervisor under parent ("" or
// RootSupervisor for the root), so that related callbacks (placed with
// WithSupervisor) restart together by spec.Strategy and share its
// intensity. A zero spec field takes the default; cs says how the parent
// treats the supervisor itself.
func (c *Connector) AddSupervisor(name, parent string, spec supervisor.Spec, cs supervisor.ChildSpec) error {
	if parent == "" {
		parent = RootSupervisor
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if old, dup := c.sups[name]; dup && !old.Stopped() { // a removed one may come back
		return fmt.Errorf("cnactor: supervisor %q exists", name)
	}
	p, ok := c.sups[parent]
	if !ok {
		return fmt.Errorf("cnactor: add supervisor %q: %w: %q", name, ErrNoSupervisor, parent)
	}
	sub, err := p.StartSupervisor(name, spec, cs)
	if err != nil {
		return err
	}
	c.sups[name] = sub
	return nil
}

// WatchSupervision calls fn for every supervision event (failures,
// backoffs, restarts, stops, escalations), in order per supervisor, from
// the supervisor's actor: keep it short, and do not call the Connector's
// methods from it (they may wait for that actor). A panic in fn is ignored. The returned function stops it.
func (c *Connector) WatchSupervision(fn func(supervisor.Event)) (stop func()) {
	return c.supWatch.Add(fn)
}

func (c *Connector) supervisionEvent(e supervisor.Event) {
	fields := []zap.Field{zap.String("supervisor", e.Supervisor), zap.String("child", e.Child)}
	switch e.Kind {
	case supervisor.EventFailed:
		c.log.Info("supervision: child failed", append(fields, zap.Stringer("directive", e.Directive), zap.Error(e.Reason))...)
	case supervisor.EventBackoff:
		c.log.Info("supervision: restart delayed", append(fields, zap.Duration("delay", e.Delay))...)
	case supervisor.EventRestarted:
		c.log.Info("supervision: child restarted", fields...)
	case supervisor.EventStopped:
		c.log.Warn("supervision: child stopped", append(fields, zap.Error(e.Reason))...)
	case supervisor.EventEscalated:
		c.log.Error("supervision: supervisor escalated", append(fields, zap.Error(e.Reason))...)
	}
	c.supWatch.Emit(e)
}

// topFailure applies the top policy to a failure that escalated past the
// root supervisor; the root's children are already stopped.
func (c *Connector) topFailure(err error) {
	if c.cfg.topPolicy != FailConnector {
		c.log.Error("failure escalated to the top; connector keeps running without the stopped handlers", zap.Error(err))
		return
	}
	if c.failErr.CompareAndSwap(nil, &err) {
		c.log.Error("failure escalated to the top; connector failed", zap.Error(err))
		close(c.failed)
	}
}

// Done is closed when a failure escalates past the root supervisor under
// the FailConnector policy.
func (c *Connector) Done() <-chan struct{} { return c.failed }

// Err returns the failure that failed the connector, or nil.
func (c *Connector) Err() error {
	if p := c.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Health is nil while c serves, the failure once one escalated past the
// root supervisor under FailConnector (see Err), and ErrClosed once c is
// closed: what a health check reports.
func (c *Connector) Health() error {
	if err := c.Err(); err != nil {
		return err
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}
