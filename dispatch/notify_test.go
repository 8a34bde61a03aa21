package dispatch_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
)

// ctl builds a cn_ctl_msg by hand: header fields as given, then the pairs.
func ctl(nIdx, nVal, group, length uint32, pairs ...uint32) []byte {
	var b []byte
	for _, v := range append([]uint32{nIdx, nVal, group, length}, pairs...) {
		b = binary.NativeEndian.AppendUint32(b, v)
	}
	return b
}

func TestParseControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data []byte
		want *dispatch.Subscription // nil: malformed
	}{
		{"one idx one val", ctl(1, 1, 5, 16, 100, 10, 0, 1),
			&dispatch.Subscription{Group: 5, IdxRanges: []dispatch.Range{{100, 10}}, ValRanges: []dispatch.Range{{0, 1}}}},
		{"two idx no val", ctl(2, 0, 32, 16, 1, 2, 3, 4),
			&dispatch.Subscription{Group: 32, IdxRanges: []dispatch.Range{{1, 2}, {3, 4}}, ValRanges: []dispatch.Range{}}},
		{"removal (group 0)", ctl(0, 1, 0, 8, 7, 1),
			&dispatch.Subscription{Group: 0, IdxRanges: []dispatch.Range{}, ValRanges: []dispatch.Range{{7, 1}}}},
		{"no ranges", ctl(0, 0, 3, 0),
			&dispatch.Subscription{Group: 3, IdxRanges: []dispatch.Range{}, ValRanges: []dispatch.Range{}}},

		{"empty", nil, nil},
		{"short header", ctl(0, 0, 3, 0)[:15], nil},
		{"group 33", ctl(1, 1, 33, 16, 1, 1, 1, 1), nil},
		{"group max uint32", ctl(0, 0, 0xffffffff, 0), nil},
		{"len too small", ctl(1, 1, 5, 8, 100, 10, 0, 1), nil},
		{"len too large", ctl(1, 1, 5, 24, 100, 10, 0, 1), nil},
		{"len counts the header", ctl(1, 1, 5, 32, 100, 10, 0, 1), nil},
		{"missing pair", ctl(1, 1, 5, 16, 100, 10), nil},
		{"extra pair", ctl(1, 1, 5, 16, 100, 10, 0, 1, 2, 2), nil},
		{"trailing byte", append(ctl(1, 1, 5, 16, 100, 10, 0, 1), 0), nil},
		{"missing byte", ctl(1, 1, 5, 16, 100, 10, 0, 1)[:31], nil},
		// Counts whose sum or size wraps in 32 bits must not look like a
		// header-only message.
		{"idx count 0xffffffff", ctl(0xffffffff, 0, 5, 0), nil},
		{"idx 0xffffffff + val 1 wraps to 0", ctl(0xffffffff, 1, 5, 0), nil},
		{"8*count wraps to 0", ctl(0x20000000, 0, 5, 0), nil},
		{"8*(idx+val) wraps to 0", ctl(0x10000000, 0x10000000, 5, 0), nil},
		{"len 0xfffffff0 + 16 wraps to 0", ctl(0, 0, 5, 0xfffffff0), nil},
		{"both counts max", ctl(0xffffffff, 0xffffffff, 5, 0xfffffff0, 1, 1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := dispatch.ParseControl(tc.data)
			if tc.want == nil {
				if !errors.Is(err, dispatch.ErrControlMalformed) {
					t.Fatalf("ParseControl = %+v, %v; want ErrControlMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseControl: %v", err)
			}
			if !reflect.DeepEqual(got, *tc.want) {
				t.Fatalf("ParseControl = %+v, want %+v", got, *tc.want)
			}
			// What parses encodes back to the same bytes.
			if enc := dispatch.AppendControl(nil, &got); !bytes.Equal(enc, tc.data) {
				t.Errorf("AppendControl = %x, want %x", enc, tc.data)
			}
		})
	}
}

func TestAppendControlRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []dispatch.Subscription{
		{Group: 1, IdxRanges: []dispatch.Range{{0, 0xffffffff}}, ValRanges: []dispatch.Range{{0, 0xffffffff}}},
		{Group: 9, IdxRanges: []dispatch.Range{{1, 1}, {5, 5}, {0xfffffff0, 0x10}}, ValRanges: []dispatch.Range{{2, 3}}},
		{Group: 0, IdxRanges: []dispatch.Range{}, ValRanges: []dispatch.Range{{4, 4}, {8, 8}}},
	} {
		prefix := []byte("pre")
		b := dispatch.AppendControl(bytes.Clone(prefix), &s)
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("AppendControl overwrote its prefix: %x", b)
		}
		data := b[len(prefix):]
		if want := 16 + 8*(len(s.IdxRanges)+len(s.ValRanges)); len(data) != want {
			t.Fatalf("encoded %d bytes, want %d", len(data), want)
		}
		got, err := dispatch.ParseControl(data)
		if err != nil {
			t.Fatalf("ParseControl(AppendControl(%+v)): %v", s, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip: %+v, want %+v", got, s)
		}
	}
	// Encoding must not write into the caller's idx slice (append aliasing).
	idx := make([]dispatch.Range, 1, 4)
	idx[0] = dispatch.Range{First: 1, Count: 1}
	s := dispatch.Subscription{Group: 2, IdxRanges: idx, ValRanges: []dispatch.Range{{7, 7}}}
	dispatch.AppendControl(nil, &s)
	if spare := idx[:2][1]; spare != (dispatch.Range{}) {
		t.Errorf("AppendControl wrote %+v past the idx ranges", spare)
	}
}

func TestSubscriptionMatches(t *testing.T) {
	t.Parallel()
	r := func(first, count uint32) []dispatch.Range { return []dispatch.Range{{first, count}} }
	all := r(0, 0xffffffff)
	for _, tc := range []struct {
		name     string
		idx, val []dispatch.Range
		id       transport.CbID
		want     bool
	}{
		{"inside", r(100, 10), r(0, 5), transport.CbID{Idx: 105, Val: 2}, true},
		{"first", r(100, 10), r(0, 5), transport.CbID{Idx: 100, Val: 0}, true},
		{"last", r(100, 10), r(0, 5), transport.CbID{Idx: 109, Val: 4}, true},
		{"idx past the end", r(100, 10), r(0, 5), transport.CbID{Idx: 110, Val: 0}, false},
		{"idx before", r(100, 10), r(0, 5), transport.CbID{Idx: 99, Val: 0}, false},
		{"val past the end", r(100, 10), r(0, 5), transport.CbID{Idx: 100, Val: 5}, false},
		{"empty range", r(100, 0), all, transport.CbID{Idx: 100, Val: 0}, false},
		{"no idx ranges", nil, all, transport.CbID{Idx: 1, Val: 1}, false},
		{"no val ranges", all, nil, transport.CbID{Idx: 1, Val: 1}, false},
		{"second range", []dispatch.Range{{1, 1}, {50, 2}}, all, transport.CbID{Idx: 51, Val: 3}, true},
		// first+range beyond 2^32 must not wrap around to small values.
		{"overflow: top", r(0xfffffff0, 0x20), all, transport.CbID{Idx: 0xffffffff, Val: 0}, true},
		{"overflow: start", r(0xfffffff0, 0x20), all, transport.CbID{Idx: 0xfffffff0, Val: 0}, true},
		{"overflow: no wrap to 0", r(0xfffffff0, 0x20), all, transport.CbID{Idx: 0, Val: 0}, false},
		{"overflow: no wrap to 5", r(0xfffffff0, 0x20), all, transport.CbID{Idx: 5, Val: 0}, false},
		{"overflow: max range", r(0xffffffff, 0xffffffff), all, transport.CbID{Idx: 0xffffffff, Val: 0}, true},
		{"overflow: max range low", r(0xffffffff, 0xffffffff), all, transport.CbID{Idx: 0xfffffffe, Val: 0}, false},
		{"all but the top", all, all, transport.CbID{Idx: 0xfffffffe, Val: 0xfffffffe}, true},
		{"all excludes 2^32-1", all, all, transport.CbID{Idx: 0xffffffff, Val: 0}, false},
		{"core id", r(0xffffffff, 1), r(0xffffffff, 1), dispatch.CoreID(), true},
	} {
		s := dispatch.Subscription{Group: 3, IdxRanges: tc.idx, ValRanges: tc.val}
		if got := s.Matches(tc.id); got != tc.want {
			t.Errorf("%s: Matches(%v) with idx %v val %v = %v, want %v", tc.name, tc.id, tc.idx, tc.val, got, tc.want)
		}
	}
}

func TestSubscriptionsApply(t *testing.T) {
	t.Parallel()
	sub := func(group uint32, idx, val dispatch.Range) dispatch.Subscription {
		return dispatch.Subscription{Group: group, IdxRanges: []dispatch.Range{idx}, ValRanges: []dispatch.Range{val}}
	}
	a := sub(5, dispatch.Range{100, 10}, dispatch.Range{0, 5})
	b := sub(6, dispatch.Range{100, 10}, dispatch.Range{0, 5}) // same ranges, other group
	c := sub(7, dispatch.Range{200, 1}, dispatch.Range{0, 1})
	id := transport.CbID{Idx: 101, Val: 1}

	var ss dispatch.Subscriptions
	for i, s := range []dispatch.Subscription{a, a, b, c} { // a twice: stored once
		added, n, err := ss.Apply(s)
		if n != 0 || err != nil || added != (i != 1) {
			t.Fatalf("adding #%d: added %v, removed %d, %v", i, added, n, err)
		}
	}
	if n := ss.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	if g := fmt.Sprint(ss.Groups(id)); g != "[5 6]" {
		t.Errorf("Groups(%v) = %s, want each matching group once: [5 6]", id, g)
	}
	if g := ss.Groups(transport.CbID{Idx: 300}); len(g) != 0 {
		t.Errorf("Groups of an id nobody asked for = %v", g)
	}

	// Removal with ranges nobody has removes nothing.
	if _, n, _ := ss.Apply(sub(0, dispatch.Range{100, 10}, dispatch.Range{0, 6})); n != 0 || ss.Len() != 3 {
		t.Errorf("removing unequal ranges removed %d (len %d)", n, ss.Len())
	}
	// A removal with fewer ranges is not equal either.
	if _, n, _ := ss.Apply(dispatch.Subscription{IdxRanges: []dispatch.Range{{100, 10}}}); n != 0 {
		t.Errorf("removing without val ranges removed %d", n)
	}
	// Removal takes every subscription with equal ranges, whatever its group.
	if _, n, _ := ss.Apply(sub(0, dispatch.Range{100, 10}, dispatch.Range{0, 5})); n != 2 {
		t.Errorf("removal removed %d, want 2 (a, b)", n)
	}
	if ss.Len() != 1 || len(ss.Groups(id)) != 0 {
		t.Errorf("after removal: len %d, groups %v", ss.Len(), ss.Groups(id))
	}
	if g := fmt.Sprint(ss.Groups(transport.CbID{Idx: 200, Val: 0})); g != "[7]" {
		t.Errorf("the unrelated subscription is gone: groups %s", g)
	}
	if _, n, _ := ss.Apply(sub(0, dispatch.Range{200, 1}, dispatch.Range{0, 1})); n != 1 || ss.Len() != 0 {
		t.Errorf("last removal removed %d, len %d", n, ss.Len())
	}
}

// Issue 13, item 1: a peer repeating one subscription, or sending ever
// new ones, or huge ones, must not grow the list without bound nor
// multiply the notifications of one registration.
func TestSubscriptionsBounds(t *testing.T) {
	t.Parallel()
	all := []dispatch.Range{{0, 0xffffffff}}
	ss := dispatch.Subscriptions{Max: 8, MaxRanges: 4}
	dup := dispatch.Subscription{Group: 30, IdxRanges: all, ValRanges: all}
	for range 1000 {
		if _, _, err := ss.Apply(dup); err != nil {
			t.Fatal(err)
		}
	}
	if ss.Len() != 1 {
		t.Fatalf("1000 equal subscriptions stored %d times, want once", ss.Len())
	}
	// Distinct ones up to the bound, then refused.
	for i := range uint32(20) {
		s := dispatch.Subscription{Group: 30, IdxRanges: []dispatch.Range{{i, 1}}, ValRanges: all}
		added, _, err := ss.Apply(s)
		switch {
		case i < 7 && (!added || err != nil):
			t.Fatalf("subscription %d: added %v, %v; want it stored", i, added, err)
		case i >= 7 && (added || !errors.Is(err, dispatch.ErrSubscriptionsFull)):
			t.Fatalf("subscription %d past the bound: added %v, %v; want ErrSubscriptionsFull", i, added, err)
		}
	}
	if ss.Len() != 8 {
		t.Fatalf("Len = %d, want the bound 8", ss.Len())
	}
	// Every one matches id 0:0 on group 30: one notification, not eight.
	if g := fmt.Sprint(ss.Groups(transport.CbID{})); g != "[30]" {
		t.Errorf("Groups = %s, want [30]", g)
	}
	// Too many ranges: refused, even with room in the list.
	big := dispatch.Subscription{Group: 2, IdxRanges: make([]dispatch.Range, 3), ValRanges: make([]dispatch.Range, 2)}
	if added, _, err := ss.Apply(big); added || !errors.Is(err, dispatch.ErrSubscriptionTooLarge) {
		t.Errorf("5 ranges over a bound of 4: added %v, %v", added, err)
	}
	// A removal frees room; removals are never refused.
	if _, n, err := ss.Apply(dispatch.Subscription{IdxRanges: all, ValRanges: all}); n != 1 || err != nil {
		t.Fatalf("removal: removed %d, %v", n, err)
	}
	if added, _, err := ss.Apply(dispatch.Subscription{Group: 3, IdxRanges: all, ValRanges: all}); !added || err != nil {
		t.Errorf("after a removal: added %v, %v; want room for one", added, err)
	}
	// The zero value takes the defaults.
	var def dispatch.Subscriptions
	for i := range uint32(dispatch.DefaultMaxSubscriptions + 1) {
		_, _, err := def.Apply(dispatch.Subscription{Group: 1, IdxRanges: []dispatch.Range{{i, 1}}})
		if (err != nil) != (i == dispatch.DefaultMaxSubscriptions) {
			t.Fatalf("default bound: subscription %d: %v", i, err)
		}
	}
	if _, _, err := def.Apply(dispatch.Subscription{Group: 1, IdxRanges: make([]dispatch.Range, dispatch.DefaultMaxSubscriptionRanges+1)}); !errors.Is(err, dispatch.ErrSubscriptionTooLarge) {
		t.Errorf("default range bound: %v", err)
	}
}

func TestNotification(t *testing.T) {
	t.Parallel()
	id := transport.CbID{Idx: 7, Val: 8}
	for _, ev := range []dispatch.Event{dispatch.EventAdded, dispatch.EventRemoved} {
		m := dispatch.Notification(id, ev)
		if m.ID != id || m.Seq != 0 || m.Ack != uint32(ev) || len(m.Data) != 0 || m.Flags != 0 {
			t.Errorf("Notification(%v, %v) = %+v", id, ev, m)
		}
	}
	if s := fmt.Sprint(dispatch.EventAdded, dispatch.EventRemoved, dispatch.Event(9)); s != "added removed event(9)" {
		t.Errorf("event names: %s", s)
	}
}

// FuzzParseControl: no input makes ParseControl panic or allocate without
// bound, and whatever it accepts encodes back to the same bytes.
func FuzzParseControl(f *testing.F) {
	f.Add(ctl(1, 1, 5, 16, 100, 10, 0, 1))
	f.Add(ctl(0, 0, 0, 0))
	f.Add(ctl(0xffffffff, 1, 5, 0))
	f.Add(ctl(0x20000000, 0, 5, 0))
	f.Add(ctl(1, 0, 33, 8, 1, 1))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := dispatch.ParseControl(data)
		if err != nil {
			if !errors.Is(err, dispatch.ErrControlMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if s.Group > transport.MaxGroup {
			t.Fatalf("accepted group %d", s.Group)
		}
		if n := 16 + 8*(len(s.IdxRanges)+len(s.ValRanges)); n != len(data) {
			t.Fatalf("%d ranges from %d bytes", len(s.IdxRanges)+len(s.ValRanges), len(data))
		}
		if enc := dispatch.AppendControl(nil, &s); !bytes.Equal(enc, data) {
			t.Fatalf("round trip: %x, want %x", enc, data)
		}
	})
}
