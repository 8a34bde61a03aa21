package dispatch_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
)

// fakeMembership records JoinGroup and LeaveGroup calls and can refuse to
// join chosen groups.
type fakeMembership struct {
	mu     sync.Mutex
	calls  []string
	refuse map[uint32]error
}

func (f *fakeMembership) JoinGroup(g uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refuse[g]; err != nil {
		f.calls = append(f.calls, fmt.Sprintf("join %d refused", g))
		return err
	}
	f.calls = append(f.calls, fmt.Sprintf("join %d", g))
	return nil
}

func (f *fakeMembership) LeaveGroup(g uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("leave %d", g))
	return nil
}

func (f *fakeMembership) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func route(idx, val uint32) *dispatch.Route {
	return &dispatch.Route{ID: transport.CbID{Idx: idx, Val: val}, Name: fmt.Sprintf("cb-%d-%d", idx, val)}
}

func TestGroupOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		idx, want uint32
	}{{0, 0}, {1, 1}, {7, 7}, {32, 32}, {33, 0}, {0xffffffff, 0}} {
		if got := dispatch.GroupOf(transport.CbID{Idx: tc.idx, Val: 9}); got != tc.want {
			t.Errorf("GroupOf(idx %d) = %d, want %d", tc.idx, got, tc.want)
		}
	}
}

func TestTableAddRemove(t *testing.T) {
	t.Parallel()
	m := &fakeMembership{}
	tb := dispatch.NewTable(m)
	a, b := route(100, 1), route(100, 2)
	for _, r := range []*dispatch.Route{a, b} {
		if err := tb.Add(r); err != nil {
			t.Fatalf("add %v: %v", r.ID, err)
		}
	}
	if got := tb.Lookup(a.ID); got != a {
		t.Errorf("Lookup(%v) = %v, want %v", a.ID, got, a)
	}
	if got := tb.Lookup(transport.CbID{Idx: 100, Val: 3}); got != nil {
		t.Errorf("Lookup of an unregistered id = %v, want nil", got)
	}
	err := tb.Add(route(100, 1))
	if !errors.Is(err, dispatch.ErrDuplicate) {
		t.Errorf("duplicate add: %v, want ErrDuplicate", err)
	}
	if got := tb.Lookup(a.ID); got != a {
		t.Errorf("a refused duplicate replaced the route: %v", got)
	}
	if ids := routeIDs(tb); ids != "[100:1 100:2]" {
		t.Errorf("Routes = %s", ids)
	}

	snap := tb.Snapshot()
	r, err := tb.Remove(a.ID)
	if err != nil || r != a {
		t.Fatalf("Remove = %v, %v; want %v, nil", r, err, a)
	}
	if tb.Lookup(a.ID) != nil {
		t.Error("removed id still routed")
	}
	if snap.Lookup(a.ID) != a {
		t.Error("an earlier snapshot changed")
	}
	if _, err := tb.Remove(a.ID); !errors.Is(err, dispatch.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if _, err := tb.Remove(transport.CbID{Idx: 5, Val: 5}); !errors.Is(err, dispatch.ErrNotFound) {
		t.Errorf("remove of an unknown id: %v, want ErrNotFound", err)
	}
	// The id can be registered again once removed.
	if err := tb.Add(route(100, 1)); err != nil {
		t.Errorf("re-add after remove: %v", err)
	}
	if calls := m.take(); len(calls) != 0 {
		t.Errorf("idx 100 is no group, but membership saw %v", calls)
	}
}

func routeIDs(tb *dispatch.Table) string {
	var ids []transport.CbID
	for _, r := range tb.Routes() {
		ids = append(ids, r.ID)
	}
	return fmt.Sprint(ids)
}

func TestTableRoutesOrdered(t *testing.T) {
	t.Parallel()
	tb := dispatch.NewTable(nil) // no membership: groups are only counted
	for _, id := range [][2]uint32{{300, 2}, {7, 9}, {300, 1}, {7, 1}, {0xffffffff, 0}} {
		if err := tb.Add(route(id[0], id[1])); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := routeIDs(tb), "[7:1 7:9 300:1 300:2 4294967295:0]"; got != want {
		t.Errorf("Routes = %s, want %s", got, want)
	}
	if n := dispatch.GroupRefs(tb, 7); n != 2 {
		t.Errorf("GroupRefs(7) = %d, want 2", n)
	}
}

func TestTableGroupRefcount(t *testing.T) {
	t.Parallel()
	m := &fakeMembership{}
	tb := dispatch.NewTable(m)
	steps := []struct {
		add   bool
		idx   uint32
		val   uint32
		calls []string // membership calls the step makes
		refs  int      // GroupRefs(idx) afterwards
	}{
		{true, 9, 1, []string{"join 9"}, 1},
		{true, 9, 2, nil, 2},
		{true, 10, 1, []string{"join 10"}, 1},
		{true, 33, 1, nil, 0}, // no group above 32
		{true, 0, 1, nil, 0},  // nor at 0
		{false, 9, 1, nil, 1},
		{false, 33, 1, nil, 0},
		{false, 9, 2, []string{"leave 9"}, 0},
		{true, 9, 3, []string{"join 9"}, 1}, // rejoined after the last left
		{false, 10, 1, []string{"leave 10"}, 0},
		{false, 9, 3, []string{"leave 9"}, 0},
	}
	for i, s := range steps {
		var err error
		if s.add {
			err = tb.Add(route(s.idx, s.val))
		} else {
			_, err = tb.Remove(transport.CbID{Idx: s.idx, Val: s.val})
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := m.take(); !slices.Equal(got, s.calls) {
			t.Errorf("step %d (add=%v %d:%d): membership calls %q, want %q", i, s.add, s.idx, s.val, got, s.calls)
		}
		if got := dispatch.GroupRefs(tb, s.idx); got != s.refs {
			t.Errorf("step %d: GroupRefs(%d) = %d, want %d", i, s.idx, got, s.refs)
		}
	}
	for _, g := range []uint32{0, 33, 0xffffffff} {
		if n := dispatch.GroupRefs(tb, g); n != 0 {
			t.Errorf("GroupRefs(%d) = %d, want 0", g, n)
		}
	}
}

func TestTableJoinFailureRefuses(t *testing.T) {
	t.Parallel()
	refused := errors.New("no room in group 11")
	m := &fakeMembership{refuse: map[uint32]error{11: refused}}
	tb := dispatch.NewTable(m)
	err := tb.Add(route(11, 1))
	if !errors.Is(err, refused) {
		t.Fatalf("add with a failing join: %v, want the join error", err)
	}
	if tb.Lookup(transport.CbID{Idx: 11, Val: 1}) != nil || dispatch.GroupRefs(tb, 11) != 0 {
		t.Fatal("a callback whose group could not be joined was registered")
	}
	// Nothing half-done: once the group can be joined, the id registers
	// and joins again, and removing it leaves.
	m.refuse = nil
	if err := tb.Add(route(11, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Remove(transport.CbID{Idx: 11, Val: 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := m.take(), []string{"join 11 refused", "join 11", "leave 11"}; !slices.Equal(got, want) {
		t.Errorf("membership calls %q, want %q", got, want)
	}
}

func TestTableFallback(t *testing.T) {
	t.Parallel()
	tb := dispatch.NewTable(nil)
	if tb.Snapshot().Fallback() != nil {
		t.Fatal("new table has a fallback")
	}
	fb := &dispatch.Route{Name: "fallback"}
	tb.SetFallback(fb)
	if err := tb.Add(route(40, 1)); err != nil {
		t.Fatal(err)
	}
	s := tb.Snapshot()
	if s.Fallback() != fb {
		t.Error("fallback lost by Add")
	}
	if s.Lookup(transport.CbID{Idx: 40, Val: 2}) != nil {
		t.Error("unknown id routed; the fallback is the reader's decision")
	}
	if _, err := tb.Remove(transport.CbID{Idx: 40, Val: 1}); err != nil {
		t.Fatal(err)
	}
	if tb.Snapshot().Fallback() != fb {
		t.Error("fallback lost by Remove")
	}
	tb.SetFallback(nil)
	if tb.Snapshot().Fallback() != nil {
		t.Error("fallback not removed")
	}
	if s.Fallback() != fb {
		t.Error("an earlier snapshot changed")
	}
}

// Lookups run without locks while writers add and remove; under -race this
// proves the snapshots are published safely. A route registered before the
// readers start must be visible in every snapshot.
func TestTableConcurrentLookup(t *testing.T) {
	t.Parallel()
	m := &fakeMembership{}
	tb := dispatch.NewTable(m)
	stable := route(20, 0)
	if err := tb.Add(stable); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var readers, writers sync.WaitGroup
	var lookups atomic.Uint64
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := uint32(0); !stop.Load(); i++ {
				s := tb.Snapshot()
				if s.Lookup(stable.ID) != stable {
					t.Error("stable route missing from a snapshot")
					return
				}
				if r := s.Lookup(transport.CbID{Idx: 20, Val: 1 + i%64}); r != nil && r.ID.Idx != 20 {
					t.Errorf("lookup returned route %v", r.ID)
					return
				}
				_ = tb.Routes()
				lookups.Add(1)
			}
		}()
	}
	for w := range uint32(4) {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range uint32(300) {
				id := transport.CbID{Idx: 20, Val: 1 + w*16 + i%16}
				if err := tb.Add(&dispatch.Route{ID: id}); err != nil {
					t.Errorf("add %v: %v", id, err)
					return
				}
				if _, err := tb.Remove(id); err != nil {
					t.Errorf("remove %v: %v", id, err)
					return
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	if lookups.Load() == 0 {
		t.Error("readers never ran")
	}
	if n := len(tb.Routes()); n != 1 || dispatch.GroupRefs(tb, 20) != 1 {
		t.Errorf("after the writers: %d routes, %d refs on group 20; want 1 and 1", n, dispatch.GroupRefs(tb, 20))
	}
	// Group 20 was held by the stable route throughout: never left, joined once.
	if calls := m.take(); !slices.Equal(calls, []string{"join 20"}) {
		t.Errorf("membership calls %q, want one join", calls)
	}
}

// The table against a map, through adds and removals in random order:
// Lookup, Len, Routes and Each agree, and old snapshots never change.
func TestTableModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tb := dispatch.NewTable(nil)
	model := map[transport.CbID]*dispatch.Route{}
	var ids []transport.CbID
	for i := range 3000 {
		// Small ranges, so that ids collide often and adjacent ids abound.
		id := transport.CbID{Idx: rng.Uint32N(64), Val: rng.Uint32N(64)}
		if i%5 == 0 {
			id = transport.CbID{Idx: rng.Uint32(), Val: rng.Uint32()}
		}
		before := tb.Snapshot()
		beforeLen := len(model)
		if model[id] != nil && rng.IntN(2) == 0 {
			if _, err := tb.Remove(id); err != nil {
				t.Fatal(err)
			}
			delete(model, id)
		} else if model[id] == nil {
			r := &dispatch.Route{ID: id}
			if err := tb.Add(r); err != nil {
				t.Fatal(err)
			}
			model[id] = r
			ids = append(ids, id)
		} else if err := tb.Add(&dispatch.Route{ID: id}); !errors.Is(err, dispatch.ErrDuplicate) {
			t.Fatalf("duplicate %v: %v", id, err)
		}
		if before.Len() != beforeLen {
			t.Fatalf("an old snapshot changed: len %d, want %d", before.Len(), beforeLen)
		}
	}
	s := tb.Snapshot()
	for _, id := range ids {
		if got := s.Lookup(id); got != model[id] {
			t.Fatalf("Lookup(%v) = %v, want %v", id, got, model[id])
		}
	}
	seen := 0
	s.Each(func(r *dispatch.Route) {
		seen++
		if model[r.ID] != r {
			t.Fatalf("Each gave %v, not in the table", r.ID)
		}
	})
	if seen != len(model) || s.Len() != len(model) || len(tb.Routes()) != len(model) {
		t.Fatalf("Each saw %d, Len %d, Routes %d; want %d", seen, s.Len(), len(tb.Routes()), len(model))
	}
	for id := range model {
		if _, err := tb.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if s := tb.Snapshot(); s.Len() != 0 || len(tb.Routes()) != 0 || s.Lookup(ids[0]) != nil {
		t.Fatalf("after removing everything: len %d", s.Len())
	}
}

// Issue 13, item 12: start-up was quadratic in the number of callbacks
// because every Add copied the whole table. An Add must cost about the same
// whatever the table's size: the bytes allocated per Add with 16,000 routes
// are within a small factor of those with 1,000 (a copied map costs 16
// times as much).
func TestTableAddCostFlat(t *testing.T) {
	perAdd := func(size int) float64 {
		tb := dispatch.NewTable(nil)
		for i := range size {
			if err := tb.Add(&dispatch.Route{ID: transport.CbID{Idx: 100, Val: uint32(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		const adds = 500
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range adds {
			if err := tb.Add(&dispatch.Route{ID: transport.CbID{Idx: 200, Val: uint32(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / adds
	}
	small, large := perAdd(1000), perAdd(16000)
	t.Logf("bytes per Add: %.0f with 1,000 routes, %.0f with 16,000", small, large)
	if large > 3*small {
		t.Errorf("an Add into 16,000 routes allocates %.0f bytes, %.1f times one into 1,000: the table is copied", large, large/small)
	}
}
