package dispatch

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"sync"

	"github.com/cnactor/cnactor/transport"
)

// CoreID is the id the connector core registers itself at; control messages
// for the notification protocol are sent to it. A func, not a var, so that
// it cannot be reassigned.
func CoreID() transport.CbID { return transport.CbID{Idx: 0xffffffff, Val: 0xffffffff} }

// CoreName is the core's symbolic name, as in the kernel.
const CoreName = "connector"

// Event is what happened to a callback id, carried in the ack field of a
// notification.
type Event uint32

const (
	EventAdded   Event = 0 // a callback was registered
	EventRemoved Event = 1 // a callback was removed
)

func (e Event) String() string {
	switch e {
	case EventAdded:
		return "added"
	case EventRemoved:
		return "removed"
	}
	return "event(" + strconv.FormatUint(uint64(e), 10) + ")"
}

// Notification builds the message the core sends for ev on id: the changed
// id, seq 0, ack = event, no payload.
func Notification(id transport.CbID, ev Event) transport.Message {
	return transport.Message{ID: id, Ack: uint32(ev)}
}

// ErrControlMalformed: a control message whose lengths do not agree.
var ErrControlMalformed = errors.New("dispatch: malformed notification control message")

// Range is a half-open range [First, First+Count) of idx or val values.
type Range struct {
	First uint32
	Count uint32
}

func (r Range) contains(x uint32) bool {
	return x >= r.First && uint64(x) < uint64(r.First)+uint64(r.Count)
}

// Subscription asks for notifications about ids whose idx is in one of
// IdxRanges and whose val is in one of ValRanges, to be sent to Group.
type Subscription struct {
	Group     uint32
	IdxRanges []Range
	ValRanges []Range
}

// Matches reports whether id falls in the subscription's ranges.
func (s *Subscription) Matches(id transport.CbID) bool {
	return slices.ContainsFunc(s.IdxRanges, func(r Range) bool { return r.contains(id.Idx) }) &&
		slices.ContainsFunc(s.ValRanges, func(r Range) bool { return r.contains(id.Val) })
}

func (s *Subscription) equalRanges(o *Subscription) bool {
	return slices.Equal(s.IdxRanges, o.IdxRanges) && slices.Equal(s.ValRanges, o.ValRanges)
}

const ctlHeaderLen = 16 // struct cn_ctl_msg {idx_notify_num, val_notify_num, group, len}

// ParseControl decodes a cn_ctl_msg: a 16-byte header {idx_notify_num,
// val_notify_num, group, len} followed by idx ranges then val ranges, each
// {first, range}. It is valid only if the payload is exactly
// 16 + 8*(idx_notify_num+val_notify_num) bytes, len + 16 equals it, and
// the group is one a message can be sent to (0..32).
func ParseControl(data []byte) (Subscription, error) {
	if len(data) < ctlHeaderLen {
		return Subscription{}, ErrControlMalformed
	}
	u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(data[off:]) }
	nIdx, nVal, group, l := uint64(u32(0)), uint64(u32(4)), u32(8), uint64(u32(12))
	want := ctlHeaderLen + 8*(nIdx+nVal)
	if uint64(len(data)) != want || l+ctlHeaderLen != want || group > transport.MaxGroup {
		return Subscription{}, ErrControlMalformed
	}
	s := Subscription{Group: group, IdxRanges: make([]Range, nIdx), ValRanges: make([]Range, nVal)}
	off := ctlHeaderLen
	for _, rs := range [][]Range{s.IdxRanges, s.ValRanges} {
		for i := range rs {
			rs[i] = Range{First: u32(off), Count: u32(off + 4)}
			off += 8
		}
	}
	return s, nil
}

// AppendControl encodes s as a cn_ctl_msg payload.
func AppendControl(b []byte, s *Subscription) []byte {
	n := len(s.IdxRanges) + len(s.ValRanges)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(s.IdxRanges)))
	b = binary.NativeEndian.AppendUint32(b, uint32(len(s.ValRanges)))
	b = binary.NativeEndian.AppendUint32(b, s.Group)
	b = binary.NativeEndian.AppendUint32(b, uint32(8*n))
	for _, r := range append(slices.Clip(s.IdxRanges), s.ValRanges...) {
		b = binary.NativeEndian.AppendUint32(b, r.First)
		b = binary.NativeEndian.AppendUint32(b, r.Count)
	}
	return b
}

// Limits on what peers can store with control messages: every control
// message is one datagram from anyone allowed to reach the core, so without
// them a peer grows the list (and every notification's fan-out) at will.
const (
	// DefaultMaxSubscriptions bounds the distinct subscriptions stored.
	DefaultMaxSubscriptions = 1024
	// DefaultMaxSubscriptionRanges bounds the idx plus val ranges of one
	// subscription (a 16 KiB control message could carry 2,046).
	DefaultMaxSubscriptionRanges = 64
)

var (
	// ErrSubscriptionsFull: the subscription would exceed the total bound.
	ErrSubscriptionsFull = errors.New("dispatch: notification subscriptions full")
	// ErrSubscriptionTooLarge: the subscription has more ranges than allowed.
	ErrSubscriptionTooLarge = errors.New("dispatch: notification subscription has too many ranges")
)

// Subscriptions is the core's list of notification requests. Equal
// subscriptions (same group, same ranges) are stored once, at most Max of
// them, each with at most MaxRanges ranges. Its zero value uses the
// defaults.
type Subscriptions struct {
	// Max and MaxRanges bound the list; 0 means the defaults. Set them
	// before the first Apply.
	Max       int
	MaxRanges int

	mu   sync.Mutex
	list []Subscription
}

// Apply adds s when its group is non-zero and otherwise removes every
// stored subscription with the same ranges, whatever its group; it returns
// how many were removed. Unlike the kernel, which kept duplicates, adding a
// subscription equal to a stored one changes nothing (added is false, err
// nil): a duplicate would only repeat the same notification to the same
// group. A subscription over MaxRanges gives ErrSubscriptionTooLarge and
// one past Max gives ErrSubscriptionsFull; neither is stored.
func (ss *Subscriptions) Apply(s Subscription) (added bool, removed int, err error) {
	if s.Group != 0 && len(s.IdxRanges)+len(s.ValRanges) > cmp.Or(ss.MaxRanges, DefaultMaxSubscriptionRanges) {
		return false, 0, ErrSubscriptionTooLarge
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s.Group != 0 {
		if slices.ContainsFunc(ss.list, func(o Subscription) bool { return o.Group == s.Group && o.equalRanges(&s) }) {
			return false, 0, nil
		}
		if len(ss.list) >= cmp.Or(ss.Max, DefaultMaxSubscriptions) {
			return false, 0, ErrSubscriptionsFull
		}
		ss.list = append(ss.list, s)
		return true, 0, nil
	}
	n := len(ss.list)
	ss.list = slices.DeleteFunc(ss.list, func(o Subscription) bool { return o.equalRanges(&s) })
	clear(ss.list[len(ss.list):n]) // let the removed ranges be collected
	return false, n - len(ss.list), nil
}

// Groups returns the groups of the subscriptions matching id, each group
// once and in ascending order: one multicast reaches every member of a
// group, so a second message to the same group would only repeat it. At
// most MaxGroup groups, whatever the number of subscriptions.
func (ss *Subscriptions) Groups(id transport.CbID) []uint32 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var seen uint64 // bit g for group g (1..32)
	for i := range ss.list {
		if g := ss.list[i].Group; seen&(1<<g) == 0 && ss.list[i].Matches(id) {
			seen |= 1 << g
		}
	}
	var out []uint32
	for g := uint32(1); g <= transport.MaxGroup; g++ {
		if seen&(1<<g) != 0 {
			out = append(out, g)
		}
	}
	return out
}

// Len is the number of stored subscriptions.
func (ss *Subscriptions) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.list)
}
