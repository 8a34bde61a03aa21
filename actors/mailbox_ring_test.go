package actors

import (
	"bytes"
	"slices"
	"testing"

	"github.com/cnactor/cnactor/transport"
)

// Under Backpressure a full mailbox refuses (putFull) instead of dropping,
// and a reader waiting for room is signalled when the handler frees a run.
func TestMailboxBackpressureSignalsSpace(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(4, Backpressure)
	for i := range uint32(4) {
		if r := m.put(msg(i)); r != putQueued {
			t.Fatalf("put %d: %v", i, r)
		}
	}
	if r := m.put(msg(4)); r != putFull {
		t.Fatalf("fifth put: %v, want putFull", r)
	}
	if c.dropped.Load() != 0 {
		t.Fatalf("Backpressure dropped %d", c.dropped.Load())
	}
	space := m.awaitSpace()
	if space == nil {
		t.Fatal("awaitSpace on a full mailbox returned nil")
	}
	select {
	case <-space:
		t.Fatal("signalled before anything was freed")
	default:
	}
	m.schedule()
	d.runAll()
	select {
	case <-space:
	default:
		t.Fatal("not signalled after the handler freed its run")
	}
	if m.awaitSpace() != nil {
		t.Fatal("awaitSpace with room returned a channel")
	}
	if want := envLog(0, 1, 2, 3); !slices.Equal(inv.log, want) {
		t.Fatalf("actor saw %v, want %v", inv.log, want)
	}
}

// A run is handed over in place; control messages posted while it is
// being handled grow the ring, and the run is still released correctly.
func TestMailboxGrowsDuringRun(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(64, DropNewest)
	inv.onUser = func(x any) {
		if r, ok := x.(*transport.Received); ok && r.Seq == 0 {
			for range 200 { // far more than the ring's initial slots
				m.PostUserMessage(&drainMarker{done: make(chan struct{})})
			}
			post(m, c, 100, 101)
		}
	}
	post(m, c, seqRange(0, 10)...)
	d.runAll()
	var msgs []string
	markers := 0
	for _, e := range inv.log {
		if e == "marker" {
			markers++
		} else {
			msgs = append(msgs, e)
		}
	}
	if want := envLog(append(seqRange(0, 10), 100, 101)...); !slices.Equal(msgs, want) || markers != 200 {
		t.Fatalf("actor saw %v and %d markers", msgs, markers)
	}
	if m.queuedEnvelopes() != 0 || m.UserMessageCount() != 0 || m.taken != 0 {
		t.Fatalf("after the run: %d envelopes, %d user messages, %d taken", m.queuedEnvelopes(), m.UserMessageCount(), m.taken)
	}
}

// A panic in the middle of a run fails that message only; the rest of the
// run stays queued (not dropped) and is handled after the failure.
func TestMailboxPanicKeepsRestOfRun(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(8, Backpressure)
	failed := 0
	m.onPanic = func(reason, _ any) any { failed++; return reason }
	inv.onUser = func(x any) {
		if r, ok := x.(*transport.Received); ok && r.Seq == 2 {
			panic("boom")
		}
	}
	post(m, c, seqRange(0, 6)...)
	if m.queuedEnvelopes() != 6 {
		t.Fatalf("queued %d", m.queuedEnvelopes())
	}
	d.runAll()
	want := append(envLog(0, 1, 2), "failure boom")
	want = append(want, envLog(3, 4, 5)...)
	if !slices.Equal(inv.log, want) || failed != 1 {
		t.Fatalf("actor saw %v (%d failures), want %v", inv.log, failed, want)
	}
	if m.queuedEnvelopes() != 0 || c.dropped.Load() != 0 {
		t.Fatalf("after: %d queued, %d dropped", m.queuedEnvelopes(), c.dropped.Load())
	}
}

// Payloads are copied into the slots (the batch they came from is reused),
// and big buffers beyond the budget are not kept after use.
func TestMailboxCopiesAndBoundsBuffers(t *testing.T) {
	t.Parallel()
	m, c, d, inv := testMailbox(512, Backpressure)
	var seen [][]byte
	inv.onUser = func(x any) {
		if r, ok := x.(*transport.Received); ok {
			seen = append(seen, bytes.Clone(r.Data))
		}
	}
	big := bytes.Repeat([]byte{7}, transport.MaxPayload)
	src := &transport.Received{Message: transport.Message{Data: big}}
	for i := range 200 { // 200 x 16 KiB = 3.2 MiB passes through
		src.Seq = uint32(i)
		c.received.Add(1)
		m.put(src)
	}
	big[0] = 9 // the caller reuses its buffer at once
	m.schedule()
	d.runAll()
	if len(seen) != 200 || seen[0][0] != 7 {
		t.Fatalf("handled %d, first byte %d: payloads were not copied", len(seen), seen[0][0])
	}
	if m.bigBytes > bigBudget+transport.MaxPayload*2 {
		t.Fatalf("%d bytes of big buffers kept, budget %d", m.bigBytes, bigBudget)
	}
	kept := 0
	for _, b := range m.bufs {
		kept += cap(b)
	}
	if kept > bigBudget+64*bigBuf {
		t.Fatalf("%d bytes of buffers kept after the burst", kept)
	}
	t.Logf("%d bytes kept of %d passed", kept, 200*transport.MaxPayload)
}
