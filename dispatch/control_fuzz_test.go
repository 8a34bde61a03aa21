package dispatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cnactor/cnactor/transport"
)

// FuzzControlProtocol checks the notification protocol's control-message
// parser against the rule in the 2005 design, restated here independently
// (FuzzParseControl in notify_test.go checks only what it accepts):
// a cn_ctl_msg is valid exactly when its payload is
// 16 + 8*(idx_notify_num+val_notify_num) bytes, its len field plus 16 is
// that size, and its group can be sent to (0..32). A valid one parses to
// the ranges found at their offsets and encodes back to the same bytes;
// an invalid one is ErrControlMalformed. Whatever parses, storing and
// matching it must not panic, and an id at the start of a non-empty idx
// and val range matches. Run
// `go test -run '^$' -fuzz FuzzControlProtocol`.
func FuzzControlProtocol(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add(AppendControl(nil, &Subscription{Group: 5, IdxRanges: []Range{{10, 1}}, ValRanges: []Range{{0, 2}}}))
	f.Add(AppendControl(nil, &Subscription{Group: 0, IdxRanges: []Range{{0xffffffff, 1}}, ValRanges: []Range{{0, 0xffffffff}}}))
	f.Add(AppendControl(nil, &Subscription{Group: 33, IdxRanges: []Range{{1, 1}}}))
	// The counts overflow 32 bits once multiplied by 8.
	f.Add(binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(
		binary.NativeEndian.AppendUint32(nil, 0x20000000), 0x20000000), 1), 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseControl(data)
		valid := len(data) >= 16
		if valid {
			u32 := func(o int) uint64 { return uint64(binary.NativeEndian.Uint32(data[o:])) }
			size := 16 + 8*(u32(0)+u32(4))
			valid = uint64(len(data)) == size && u32(12)+16 == size && u32(8) <= transport.MaxGroup
		}
		if !valid {
			if !errors.Is(err, ErrControlMalformed) {
				t.Fatalf("invalid control message % x parsed: %+v, %v", data, s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid control message % x rejected: %v", data, err)
		}
		u32 := func(o int) uint32 { return binary.NativeEndian.Uint32(data[o:]) }
		if s.Group != u32(8) || len(s.IdxRanges) != int(u32(0)) || len(s.ValRanges) != int(u32(4)) {
			t.Fatalf("parsed %+v from header % x", s, data[:16])
		}
		for i, r := range append(append([]Range(nil), s.IdxRanges...), s.ValRanges...) {
			if o := 16 + 8*i; r != (Range{u32(o), u32(o + 4)}) {
				t.Fatalf("range %d = %+v, bytes % x", i, r, data[o:o+8])
			}
		}
		if enc := AppendControl(nil, &s); !bytes.Equal(enc, data) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", enc, data)
		}
		if len(s.IdxRanges) > 0 && len(s.ValRanges) > 0 && s.IdxRanges[0].Count > 0 && s.ValRanges[0].Count > 0 {
			id := transport.CbID{Idx: s.IdxRanges[0].First, Val: s.ValRanges[0].First}
			if !s.Matches(id) {
				t.Fatalf("%v not matched by %+v", id, s)
			}
		}
		var ss Subscriptions
		added, _, err := ss.Apply(s)
		tooLarge := len(s.IdxRanges)+len(s.ValRanges) > DefaultMaxSubscriptionRanges
		switch {
		case s.Group != 0 && tooLarge:
			if !errors.Is(err, ErrSubscriptionTooLarge) || added {
				t.Fatalf("%d ranges: added %v, err %v", len(s.IdxRanges)+len(s.ValRanges), added, err)
			}
		case s.Group != 0:
			if !added || err != nil || ss.Len() != 1 {
				t.Fatalf("add: added %v err %v len %d", added, err, ss.Len())
			}
			s.Group = 0 // the same ranges with group 0 remove it
			if _, removed, err := ss.Apply(s); removed != 1 || err != nil || ss.Len() != 0 {
				t.Fatalf("remove: removed %d err %v len %d", removed, err, ss.Len())
			}
		default:
			if added || err != nil || ss.Len() != 0 {
				t.Fatalf("group 0 on an empty list: added %v err %v len %d", added, err, ss.Len())
			}
		}
	})
}
