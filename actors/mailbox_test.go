package actors

import (
	"fmt"
	"slices"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/transport"
)

// manualDispatcher runs scheduled mailbox runs only when the test says so,
// so that a test can fill a mailbox while nothing consumes it.
type manualDispatcher struct{ pending []func() }

func (d *manualDispatcher) Schedule(fn func()) { d.pending = append(d.pending, fn) }
func (d *manualDispatcher) Throughput() int    { return 300 }

func (d *manualDispatcher) runAll() {
	for len(d.pending) > 0 {
		fn := d.pending[0]
		d.pending = d.pending[1:]
		fn()
	}
}

// recordingInvoker stands for the actor: it records what it is given.
type recordingInvoker struct {
	log []string
	// onUser, if set, runs for each user message (to post more, or panic).
	onUser func(msg any)
}

func (r *recordingInvoker) InvokeSystemMessage(msg any) {
	r.log = append(r.log, fmt.Sprintf("sys %T", msg))
}
func (r *recordingInvoker) InvokeUserMessage(msg any) {
	switch m := msg.(type) {
	case *delivery:
		if m.kind == slotLoss {
			r.log = append(r.log, fmt.Sprintf("lost %d %s", m.loss.n, m.loss.source))
			return
		}
		for m.done = 0; m.done < m.k; m.done++ {
			r.log = append(r.log, fmt.Sprintf("env %d", m.msgs[m.done].Seq))
			if r.onUser != nil {
				r.onUser(&m.msgs[m.done])
			}
		}
		return
	case *drainMarker:
		r.log = append(r.log, "marker")
	default:
		r.log = append(r.log, fmt.Sprintf("user %T", msg))
	}
	if r.onUser != nil {
		r.onUser(msg)
	}
}
func (r *recordingInvoker) EscalateFailure(reason, _ any) {
	r.log = append(r.log, fmt.Sprintf("failure %v", reason))
}

func testMailbox(limit int, o Overflow) (*mailbox, *counters, *manualDispatcher, *recordingInvoker) {
	c := new(counters)
	m := newMailbox(limit, o, c)
	d := new(manualDispatcher)
	inv := new(recordingInvoker)
	m.RegisterHandlers(inv, d)
	return m, c, d, inv
}

func msg(seq uint32) *transport.Received {
	return &transport.Received{Message: transport.Message{Seq: seq, Data: []byte{byte(seq)}}}
}

// post delivers seqs the way HandlerRef.deliver does: counted as received,
// then put and the actor scheduled.
func post(m *mailbox, c *counters, seqs ...uint32) {
	for _, s := range seqs {
		c.received.Add(1)
		m.put(msg(s))
		m.schedule()
	}
}

func seqRange(from, to uint32) []uint32 {
	var s []uint32
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func envLog(seqs ...uint32) []string {
	var l []string
	for _, s := range seqs {
		l = append(l, fmt.Sprintf("env %d", s))
	}
	return l
}

func TestMailboxOverflow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		overflow Overflow
		limit    int
		posted   uint32
		kept     []uint32 // what the actor sees, in order
	}{
		{"drop newest", DropNewest, 4, 10, seqRange(0, 4)},
		{"drop oldest", DropOldest, 4, 10, seqRange(6, 10)},
		{"drop newest, not full", DropNewest, 4, 3, seqRange(0, 3)},
		{"drop oldest, exactly full", DropOldest, 4, 4, seqRange(0, 4)},
		{"drop newest, limit 1", DropNewest, 1, 5, []uint32{0}},
		{"drop oldest, limit 1", DropOldest, 1, 5, []uint32{4}},
		// A limit beyond the ring's initial 16 slots makes it grow.
		{"drop newest, growing", DropNewest, 40, 100, seqRange(0, 40)},
		{"drop oldest, growing", DropOldest, 40, 100, seqRange(60, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, c, d, inv := testMailbox(tc.limit, tc.overflow)
			post(m, c, seqRange(0, tc.posted)...)
			wantDropped := uint64(int(tc.posted) - len(tc.kept))
			if got := c.dropped.Load(); got != wantDropped {
				t.Errorf("dropped %d, want %d", got, wantDropped)
			}
			if got := m.queuedEnvelopes(); got != len(tc.kept) {
				t.Errorf("queued %d, want %d", got, len(tc.kept))
			}
			if got := m.UserMessageCount(); got != len(tc.kept) {
				t.Errorf("UserMessageCount %d, want %d", got, len(tc.kept))
			}
			d.runAll()
			if want := envLog(tc.kept...); !slices.Equal(inv.log, want) {
				t.Errorf("actor saw %v, want %v", inv.log, want)
			}
			if m.UserMessageCount() != 0 || m.queuedEnvelopes() != 0 {
				t.Errorf("after the run: %d user messages, %d envelopes", m.UserMessageCount(), m.queuedEnvelopes())
			}
		})
	}
}

// Control messages (drain markers) are not envelopes: they neither count
// towards the limit nor are ever dropped, and they keep their place.
func TestMailboxControlNeverDropped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		overflow Overflow
		want     []string
	}{
		{"drop newest", DropNewest, []string{"env 0", "marker", "env 1", "marker", "marker"}},
		// env 0 and env 1 make room in turn; the markers stay where they
		// were posted relative to the envelopes kept.
		{"drop oldest", DropOldest, []string{"marker", "marker", "env 2", "env 3", "marker"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, c, d, inv := testMailbox(2, tc.overflow)
			post(m, c, 0)
			m.PostUserMessage(&drainMarker{done: make(chan struct{})})
			post(m, c, 1)
			m.PostUserMessage(&drainMarker{done: make(chan struct{})})
			post(m, c, 2, 3) // over the limit
			m.PostUserMessage(&drainMarker{done: make(chan struct{})})
			if got := c.dropped.Load(); got != 2 {
				t.Errorf("dropped %d, want 2", got)
			}
			if got := m.UserMessageCount(); got != 5 {
				t.Errorf("UserMessageCount %d, want 5 (2 envelopes, 3 markers)", got)
			}
			d.runAll()
			if !slices.Equal(inv.log, tc.want) {
				t.Errorf("actor saw %v, want %v", inv.log, tc.want)
			}
		})
	}
}

// discard empties the mailbox, counting every envelope as dropped and
// nothing else.
func TestMailboxDiscard(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(8, DropNewest)
	post(m, c, 0, 1, 2)
	m.PostUserMessage(&drainMarker{done: make(chan struct{})})
	post(m, c, 3)
	if n := m.discard(); n != 4 {
		t.Errorf("discard = %d, want 4", n)
	}
	if c.dropped.Load() != 4 || m.UserMessageCount() != 0 || m.queuedEnvelopes() != 0 {
		t.Errorf("after discard: dropped %d, %d user messages, %d envelopes",
			c.dropped.Load(), m.UserMessageCount(), m.queuedEnvelopes())
	}
	if n := m.discard(); n != 0 || c.dropped.Load() != 4 {
		t.Errorf("second discard = %d, dropped %d", n, c.dropped.Load())
	}
	// The mailbox keeps working afterwards.
	post(m, c, 9)
	d.runAll()
	if want := envLog(9); !slices.Equal(inv.log, want) {
		t.Errorf("actor saw %v, want %v", inv.log, want)
	}
}

// System messages go first; a suspended mailbox delivers no user message
// until resumed, and meanwhile its limit still holds.
func TestMailboxSystemFirstAndSuspension(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(2, DropNewest)
	post(m, c, 0)
	m.PostSystemMessage(&actor.Started{})
	d.runAll()
	if want := []string{"sys *actor.Started", "env 0"}; !slices.Equal(inv.log, want) {
		t.Fatalf("actor saw %v, want %v", inv.log, want)
	}
	inv.log = nil
	m.PostSystemMessage(&actor.SuspendMailbox{})
	post(m, c, 1, 2, 3)
	d.runAll()
	if len(inv.log) != 0 || m.queuedEnvelopes() != 2 || c.dropped.Load() != 1 {
		t.Fatalf("suspended: actor saw %v, %d queued, %d dropped", inv.log, m.queuedEnvelopes(), c.dropped.Load())
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	if want := envLog(1, 2); !slices.Equal(inv.log, want) {
		t.Errorf("resumed: actor saw %v, want %v", inv.log, want)
	}
}

// A panic in the actor is reported with the message that caused it and
// escalated; the mailbox carries on with the next message.
func TestMailboxPanic(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(8, DropNewest)
	var panicked []any
	m.onPanic = func(reason, msg any) any { panicked = append(panicked, msg); return reason }
	inv.onUser = func(msg any) {
		if r, ok := msg.(*transport.Received); ok && r.Seq == 1 {
			panic("boom")
		}
	}
	post(m, c, 0, 1, 2)
	d.runAll()
	if want := []string{"env 0", "env 1", "failure boom", "env 2"}; !slices.Equal(inv.log, want) {
		t.Errorf("actor saw %v, want %v", inv.log, want)
	}
	if len(panicked) != 1 {
		t.Errorf("onPanic saw %v", panicked)
	}
}

// TestMailboxLossNoticePlacement: drop-newest tells the handler before the
// next admitted message; drop-oldest tells it before the survivors.
func TestMailboxLossNoticePlacement(t *testing.T) {
	for _, tt := range []struct {
		overflow Overflow
		want     []string
	}{
		{DropNewest, []string{"env 0", "env 1", "lost 2 mailbox", "env 4"}},
		{DropOldest, []string{"lost 2 mailbox", "env 2", "env 3"}},
	} {
		t.Run(tt.overflow.String(), func(t *testing.T) {
			m, c, d, inv := testMailbox(2, tt.overflow)
			m.notifyLoss = true
			post(m, c, 0, 1, 2, 3) // into a mailbox of 2
			if tt.overflow == DropNewest {
				d.runAll()
				post(m, c, 4)
			}
			d.runAll()
			if !slices.Equal(inv.log, tt.want) {
				t.Fatalf("handler heard %v, want %v", inv.log, tt.want)
			}
			if c.dropped.Load() != 2 {
				t.Fatalf("dropped %d, want 2", c.dropped.Load())
			}
		})
	}
}

// A handler that drops the end of a burst hears of it once it has handled
// what it kept, with no message after the loss to carry the notice.
func TestMailboxLossNoticeAtEndOfBurst(t *testing.T) {
	m, c, d, inv := testMailbox(2, DropNewest)
	m.notifyLoss = true
	post(m, c, 0, 1, 2, 3, 4) // into a mailbox of 2; nothing follows
	d.runAll()
	if want := []string{"env 0", "env 1", "lost 3 mailbox"}; !slices.Equal(inv.log, want) {
		t.Fatalf("handler heard %v, want %v", inv.log, want)
	}
	if m.UserMessageCount() != 0 || c.dropped.Load() != 3 {
		t.Fatalf("after the run: %d user messages, %d dropped", m.UserMessageCount(), c.dropped.Load())
	}
}

// A callback that is shed after its handler emptied the queue (the reader
// decided to shed under an earlier lock) still hears of it.
func TestMailboxShedAfterQueueEmptied(t *testing.T) {
	m, c, d, inv := testMailbox(2, Backpressure)
	m.notifyLoss = true
	post(m, c, 0, 1)
	d.runAll() // handles both and goes idle
	m.shed()
	m.schedule()
	d.runAll()
	if want := []string{"env 0", "env 1", "lost 1 mailbox"}; !slices.Equal(inv.log, want) {
		t.Fatalf("handler heard %v, want %v", inv.log, want)
	}
}

// Drops counted before a control message (a drain marker) are told before
// it, so that Drain does not return before the handler heard of them.
func TestMailboxLossBeforeControl(t *testing.T) {
	m, c, d, inv := testMailbox(2, DropNewest)
	m.notifyLoss = true
	post(m, c, 0, 1, 2) // 2 is dropped
	m.PostUserMessage(&drainMarker{})
	d.runAll()
	if want := []string{"env 0", "env 1", "lost 1 mailbox", "marker"}; !slices.Equal(inv.log, want) {
		t.Fatalf("handler heard %v, want %v", inv.log, want)
	}
}
