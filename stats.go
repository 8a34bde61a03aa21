package cnactor

import (
	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
)

// Stats is a snapshot of everything the connector counts. Every message
// that reached the socket is in exactly one place: a registered callback's
// Handled, Failed, Dropped, Queued or Rejected; Reader.Unknown (and then,
// with a fallback, also in Fallback's counters); Reader.Intercepted; or,
// before that, Reader.KernelDrops and Reader.Malformed. A removed
// callback's final counters are in the Event that reports its removal.
type Stats struct {
	Port      uint32
	Reader    actors.ReaderStats
	Callbacks []CallbackInfo // ordered by id
	Fallback  *actors.CallbackStats
	Control   ControlStats
	Requester RequesterStats
	// CallbacksRefused counts AddCallback calls refused with
	// ErrTooManyCallbacks.
	CallbacksRefused uint64
}

// CallbackInfo describes one registered callback and its counters.
type CallbackInfo struct {
	ID   transport.CbID
	Name string
	// Core marks the connector core's own callback (dispatch.CoreID(),
	// 0xffffffff:0xffffffff, named "connector" as in the kernel): it serves
	// peers' notification subscriptions (see Watch). It is listed so that
	// every message read is counted somewhere; AddCallback cannot take
	// its id and DelCallback cannot remove it.
	Core     bool
	Group    uint32 // 0 if the id has no group
	Policy   string
	Mailbox  int
	Overflow Overflow
	actors.CallbackStats
	// Supervision: the supervisor's name and what it reports of the child.
	Supervisor string
	supervisor.ChildStatus
	// Handler holds the handler's own counters, if it reports any.
	Handler map[string]uint64
}

// ControlStats count the notification protocol's control messages.
type ControlStats struct {
	Applied   uint64
	Malformed uint64
	// Rejected control messages were well formed but over a bound
	// (dispatch.DefaultMaxSubscriptions, DefaultMaxSubscriptionRanges).
	Rejected      uint64
	Subscriptions int
}

// Stats returns the connector's counters.
func (c *Connector) Stats() Stats {
	s := Stats{
		Port:   c.conn.Port(),
		Reader: c.reader.Stats(), Requester: c.reqs.Stats(),
		Control: ControlStats{
			Applied: c.controlApplied.Load(), Malformed: c.controlMalformed.Load(), Rejected: c.controlRejected.Load(), Subscriptions: c.subs.Len(),
		},
		CallbacksRefused: c.callbacksRefused.Load(),
	}
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	for _, r := range c.table.Routes() {
		cb := c.callbacks[r.ID]
		if cb == nil {
			continue
		}
		info := CallbackInfo{
			ID: r.ID, Name: r.Name, Core: r.ID == dispatch.CoreID(), Group: dispatch.GroupOf(r.ID), Policy: r.Policy.String(),
			Mailbox: cb.ref.Spec().MailboxSize, Overflow: cb.cfg.overflow, CallbackStats: cb.ref.Stats(),
		}
		info.Supervisor = cb.sup.Name()
		if cb.final != nil {
			info.ChildStatus = *cb.final
		} else {
			info.ChildStatus, _ = cb.sup.Status(r.ID.String())
		}
		if info.Mailbox == 0 {
			info.Mailbox = actors.DefaultMailboxSize
		}
		if sr, ok := cb.handler.(handlers.StatsReporter); ok {
			info.Handler = sr.Stats()
		}
		s.Callbacks = append(s.Callbacks, info)
	}
	if c.fallback != nil {
		fs := c.fallback.Stats()
		s.Fallback = &fs
	}
	return s
}

// Callback returns the counters of the callback for id.
func (c *Connector) Callback(id transport.CbID) (CallbackInfo, bool) {
	for _, cb := range c.Stats().Callbacks {
		if cb.ID == id {
			return cb, true
		}
	}
	return CallbackInfo{}, false
}
