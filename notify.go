package cnactor

import (
	"context"
	"time"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Event reports that a callback was registered or removed.
type Event struct {
	ID   transport.CbID
	Name string
	Kind dispatch.Event // dispatch.EventAdded or dispatch.EventRemoved
	// Stats, for EventRemoved, are the callback's final counters, taken
	// once its handler stopped: Received = Handled + Failed + Dropped
	// (+ Queued only if the handler was stuck past its shutdown timeout).
	// Zero for EventAdded.
	Stats actors.CallbackStats
}

// Watch calls fn for every callback registration and removal from now on,
// in order, synchronously from AddCallback, DelCallback and the supervisors
// that start or remove callbacks: keep it short, and do not call the
// Connector's methods from it (they would wait for the call in progress).
// The returned function stops the watch.
func (c *Connector) Watch(fn func(Event)) (stop func()) { return c.watchers.Add(fn) }

// notifyTimeout bounds the multicast of one notification.
const notifyTimeout = time.Second

// notify tells in-process watchers and every matching subscription's group
// that id was added or removed. Callers are serialised by c.mu or run in
// a supervisor actor.
func (c *Connector) notify(id transport.CbID, name string, ev dispatch.Event, final actors.CallbackStats) {
	c.watchers.Emit(Event{ID: id, Name: name, Kind: ev, Stats: final})
	for _, g := range c.subs.Groups(id) {
		m := dispatch.Notification(id, ev)
		ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
		if err := c.sendRaw(ctx, transport.Addr{Group: g}, &m); err != nil {
			c.log.Warn("notification not sent", zap.Stringer("id", id), zap.Stringer("event", ev), zap.Uint32("group", g), zap.Error(err))
		}
		cancel()
	}
}

// control is the core's own callback at dispatch.CoreID(): it serves the
// seed's notification requests. Malformed ones, and subscriptions over the
// bounds (see dispatch.Subscriptions), are counted and ignored, with a
// rate-limited warning: anyone who may reach the core can send them.
func (c *Connector) control(ctx handlers.Context, m *transport.Message) error {
	sub, err := dispatch.ParseControl(m.Data)
	if err != nil {
		c.controlMalformed.Add(1)
		if ok, n := c.controlLog.Allow(); ok {
			ctx.Logger().Warn("malformed control message ignored", zap.Uint32("from", ctx.From()), zap.Int("len", len(m.Data)), zap.Int("suppressed", n))
		}
		return nil
	}
	added, removed, err := c.subs.Apply(sub)
	if err != nil {
		c.controlRejected.Add(1)
		if ok, n := c.controlLog.Allow(); ok {
			ctx.Logger().Warn("notification subscription refused", zap.Error(err), zap.Uint32("from", ctx.From()),
				zap.Uint32("group", sub.Group), zap.Int("ranges", len(sub.IdxRanges)+len(sub.ValRanges)),
				zap.Int("subscriptions", c.subs.Len()), zap.Int("suppressed", n))
		}
		return nil
	}
	c.controlApplied.Add(1)
	ctx.Logger().Debug("notification subscription", zap.Uint32("group", sub.Group), zap.Bool("added", added), zap.Int("removed", removed), zap.Uint32("from", ctx.From()))
	return nil
}
