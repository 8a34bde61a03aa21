// Package dispatch is the connector's routing table: which callback id goes
// to which handler, who may reach it, and which multicast groups the socket
// must be in for it. It also implements the seed's notification protocol
// (subscriptions to callback registration and removal events).
//
// Data flows through it on every received message without a lock: the
// socket-reader takes the current Snapshot once per batch and looks each
// message's id up in it. Writers (AddCallback, DelCallback) copy the table,
// change the copy and publish it atomically, joining group idx when the first
// callback with that idx arrives and leaving it when the last one goes, as
// the kernel's connector core assigns group id.idx to a callback.
package dispatch

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cnactor/cnactor/transport"
)

var (
	// ErrDuplicate: a callback is already registered for the id.
	ErrDuplicate = errors.New("dispatch: callback id already registered")
	// ErrNotFound: no callback is registered for the id.
	ErrNotFound = errors.New("dispatch: no callback registered for id")
)

// Route is one registered callback.
type Route struct {
	ID     transport.CbID
	Name   string // symbolic name, as cn_add_callback's
	Policy SenderPolicy
	// Target is the runtime's handle for the callback's handler; dispatch
	// does not look inside it.
	Target any
}

// Group is the multicast group the route's id maps to, 0 if none
// (idx outside 1..32).
func (r *Route) Group() uint32 { return GroupOf(r.ID) }

// GroupOf is id.Idx when it is a joinable group (1..32), else 0.
func GroupOf(id transport.CbID) uint32 {
	if transport.CheckGroup(id.Idx) == nil {
		return id.Idx
	}
	return 0
}

// Membership joins and leaves multicast groups; a transport.Conn is one.
type Membership interface {
	JoinGroup(group uint32) error
	LeaveGroup(group uint32) error
}

// Snapshot is an immutable view of the table.
type Snapshot struct {
	routes   map[transport.CbID]*Route
	fallback *Route
}

// Lookup returns the route for id, or nil.
func (s *Snapshot) Lookup(id transport.CbID) *Route { return s.routes[id] }

// Each calls fn for every route, the fallback included.
func (s *Snapshot) Each(fn func(*Route)) {
	for _, r := range s.routes {
		fn(r)
	}
	if s.fallback != nil {
		fn(s.fallback)
	}
}

// Fallback is the route for unknown ids, or nil.
func (s *Snapshot) Fallback() *Route { return s.fallback }

// Table maps callback ids to routes. Reads are lock-free; writes are
// serialised.
type Table struct {
	mu     sync.Mutex // serialises writers
	snap   atomic.Pointer[Snapshot]
	member Membership
	refs   [transport.MaxGroup + 1]int // callbacks per group
}

// NewTable returns an empty table that joins and leaves groups through m.
func NewTable(m Membership) *Table {
	t := &Table{member: m}
	t.snap.Store(&Snapshot{routes: map[transport.CbID]*Route{}})
	return t
}

// Snapshot returns the current table; it never changes.
func (t *Table) Snapshot() *Snapshot { return t.snap.Load() }

// Lookup returns the route for id in the current table, or nil.
func (t *Table) Lookup(id transport.CbID) *Route { return t.snap.Load().Lookup(id) }

// Add registers r. It refuses a duplicate id with ErrDuplicate, and fails
// without registering if the group of the id cannot be joined.
func (t *Table) Add(r *Route) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	if _, dup := old.routes[r.ID]; dup {
		return fmt.Errorf("%w: %s", ErrDuplicate, r.ID)
	}
	if g := r.Group(); g != 0 {
		if t.refs[g] == 0 && t.member != nil {
			if err := t.member.JoinGroup(g); err != nil {
				return fmt.Errorf("dispatch: register %s: %w", r.ID, err)
			}
		}
		t.refs[g]++
	}
	next := &Snapshot{routes: make(map[transport.CbID]*Route, len(old.routes)+1), fallback: old.fallback}
	for id, rt := range old.routes {
		next.routes[id] = rt
	}
	next.routes[r.ID] = r
	t.snap.Store(next)
	return nil
}

// Remove unregisters id and returns its route. The group of the id is left
// when no other callback uses it; a failure to leave is returned along with
// the route, which is removed regardless.
func (t *Table) Remove(id transport.CbID) (*Route, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	r, ok := old.routes[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	next := &Snapshot{routes: make(map[transport.CbID]*Route, len(old.routes)), fallback: old.fallback}
	for k, rt := range old.routes {
		if k != id {
			next.routes[k] = rt
		}
	}
	t.snap.Store(next)
	if g := r.Group(); g != 0 {
		t.refs[g]--
		if t.refs[g] == 0 && t.member != nil {
			if err := t.member.LeaveGroup(g); err != nil {
				return r, fmt.Errorf("dispatch: unregister %s: %w", id, err)
			}
		}
	}
	return r, nil
}

// SetFallback sets the route that receives messages for unknown ids; nil
// removes it.
func (t *Table) SetFallback(r *Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	t.snap.Store(&Snapshot{routes: old.routes, fallback: r})
}

// Routes returns the registered routes ordered by id.
func (t *Table) Routes() []*Route {
	s := t.snap.Load()
	out := make([]*Route, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Route) int {
		if a.ID.Idx != b.ID.Idx {
			return cmpU32(a.ID.Idx, b.ID.Idx)
		}
		return cmpU32(a.ID.Val, b.ID.Val)
	})
	return out
}

// GroupRefs returns how many registered callbacks hold group g.
func (t *Table) GroupRefs(g uint32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if transport.CheckGroup(g) != nil {
		return 0
	}
	return t.refs[g]
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
