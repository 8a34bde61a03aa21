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

// Snapshot is an immutable view of the table. Its routes are a persistent
// hash trie: a change copies only the nodes on the path to one id (a few
// hundred bytes), never the whole table, so that registering n callbacks
// costs O(n log n) rather than the O(n^2) of copying a map per change,
// while readers still look ids up without a lock.
type Snapshot struct {
	root     *tnode
	n        int
	fallback *Route
}

// Lookup returns the route for id, or nil.
func (s *Snapshot) Lookup(id transport.CbID) *Route { return s.root.lookup(hashID(id)) }

// Each calls fn for every route, the fallback included.
func (s *Snapshot) Each(fn func(*Route)) {
	s.root.each(fn)
	if s.fallback != nil {
		fn(s.fallback)
	}
}

// Len is the number of routes, the fallback excluded.
func (s *Snapshot) Len() int { return s.n }

// Fallback is the route for unknown ids, or nil.
func (s *Snapshot) Fallback() *Route { return s.fallback }

// The trie branches on tbits bits of the id's hash per level. The hash is a
// bijection of the 64-bit id, so two ids never share a full hash and a slot
// holds either one route or a deeper node.
const (
	tbits   = 5
	tfanout = 1 << tbits
	tmask   = tfanout - 1
)

type tnode struct {
	sub   [tfanout]*tnode
	route [tfanout]*Route
}

// hashID spreads ids (often consecutive) over the trie: splitmix64's
// finaliser, which is invertible, so distinct ids get distinct hashes.
func hashID(id transport.CbID) uint64 {
	x := uint64(id.Idx)<<32 | uint64(id.Val)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (n *tnode) lookup(h uint64) *Route {
	for shift := uint(0); n != nil; shift += tbits {
		i := (h >> shift) & tmask
		if r := n.route[i]; r != nil {
			if hashID(r.ID) == h {
				return r
			}
			return nil
		}
		n = n.sub[i]
	}
	return nil
}

func (n *tnode) each(fn func(*Route)) {
	if n == nil {
		return
	}
	for i := range n.route {
		if n.route[i] != nil {
			fn(n.route[i])
		} else if n.sub[i] != nil {
			n.sub[i].each(fn)
		}
	}
}

// with returns a copy of n (nil: empty) with r added at hash h, whose
// route is not in n; only the path to it is copied.
func (n *tnode) with(h uint64, shift uint, r *Route) *tnode {
	c := &tnode{}
	if n != nil {
		*c = *n
	}
	i := (h >> shift) & tmask
	switch {
	case c.sub[i] != nil:
		c.sub[i] = c.sub[i].with(h, shift+tbits, r)
	case c.route[i] != nil: // push the resident one level down, then add
		old := c.route[i]
		c.route[i] = nil
		c.sub[i] = (&tnode{}).with(hashID(old.ID), shift+tbits, old).with(h, shift+tbits, r)
	default:
		c.route[i] = r
	}
	return c
}

// without returns a copy of n without the route at hash h (which is in
// n), or nil when nothing is left in it.
func (n *tnode) without(h uint64, shift uint) *tnode {
	c := *n
	i := (h >> shift) & tmask
	if c.route[i] != nil {
		c.route[i] = nil
	} else {
		c.sub[i] = c.sub[i].without(h, shift+tbits)
	}
	return c.folded()
}

// folded is nil for an empty node (so that removals shrink the trie), n
// otherwise.
func (n tnode) folded() *tnode {
	for i := range n.route {
		if n.route[i] != nil || n.sub[i] != nil {
			return &n
		}
	}
	return nil
}

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
	t.snap.Store(&Snapshot{})
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
	if old.Lookup(r.ID) != nil {
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
	t.snap.Store(&Snapshot{root: old.root.with(hashID(r.ID), 0, r), n: old.n + 1, fallback: old.fallback})
	return nil
}

// Remove unregisters id and returns its route. The group of the id is left
// when no other callback uses it; a failure to leave is returned along with
// the route, which is removed regardless.
func (t *Table) Remove(id transport.CbID) (*Route, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	r := old.Lookup(id)
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	t.snap.Store(&Snapshot{root: old.root.without(hashID(id), 0), n: old.n - 1, fallback: old.fallback})
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
	t.snap.Store(&Snapshot{root: old.root, n: old.n, fallback: r})
}

// Routes returns the registered routes ordered by id.
func (t *Table) Routes() []*Route {
	s := t.snap.Load()
	out := make([]*Route, 0, s.n)
	s.root.each(func(r *Route) { out = append(out, r) })
	slices.SortFunc(out, func(a, b *Route) int {
		if a.ID.Idx != b.ID.Idx {
			return cmpU32(a.ID.Idx, b.ID.Idx)
		}
		return cmpU32(a.ID.Val, b.ID.Val)
	})
	return out
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
