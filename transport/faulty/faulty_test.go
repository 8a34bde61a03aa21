package faulty_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/faulty"
	"github.com/cnactor/cnactor/transport/memory"
)

var id = transport.CbID{Idx: 0x6a17, Val: 1}

// pair returns a faulty receiver wrapping an in-memory endpoint, and a
// plain sender on the same network.
func pair(t *testing.T, faults ...faulty.Fault) (*faulty.Conn, *memory.Conn) {
	t.Helper()
	net := memory.NewNetwork()
	rx, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	tx, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c := faulty.Wrap(rx, faults...)
	t.Cleanup(func() { c.Close(); tx.Close() })
	return c, tx
}

func send(t *testing.T, tx transport.Conn, to uint32, seqs ...uint32) {
	t.Helper()
	for _, s := range seqs {
		m := &transport.Message{ID: id, Seq: s, Data: []byte(fmt.Sprint("payload-", s))}
		if err := tx.Send(context.Background(), transport.Addr{Port: to}, m); err != nil {
			t.Fatal(err)
		}
	}
}

func receive(c transport.Conn, b *transport.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.ReceiveBatch(ctx, b)
}

func seqs(b *transport.Batch) []uint32 {
	var s []uint32
	for _, m := range b.Messages {
		s = append(s, m.Seq)
	}
	return s
}

// After and Times pick the calls: here the third and fourth receive fail,
// and what was queued is still there for the fifth.
func TestErrHitsChosenCalls(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, After: 2, Times: 2, Err: syscall.EINTR})
	b := transport.NewBatch(0)
	var got []string
	for i := range 5 {
		send(t, tx, c.Port(), uint32(i))
		err := receive(c, b)
		switch {
		case err == nil:
			got = append(got, fmt.Sprint(seqs(b)))
		case errors.Is(err, syscall.EINTR):
			var op *transport.OpError
			if !errors.As(err, &op) || op.Op != "receive" {
				t.Fatalf("error %#v is not a receive OpError", err)
			}
			got = append(got, "EINTR")
		default:
			t.Fatal(err)
		}
	}
	want := []string{"[0]", "[1]", "EINTR", "EINTR", "[2 3 4]"}
	if !slices.Equal(got, want) {
		t.Fatalf("receives = %v, want %v", got, want)
	}
	if c.Calls(faulty.Receive) != 5 || c.Injected(faulty.Receive) != 2 {
		t.Fatalf("calls %d injected %d, want 5 and 2", c.Calls(faulty.Receive), c.Injected(faulty.Receive))
	}
}

// Truncation reports the datagram as the kernel socket reports MSG_TRUNC;
// Times counts batches, so the next one is whole.
func TestTruncate(t *testing.T) {
	t.Parallel()
	const cut = 24
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Truncate: cut})
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1)
	if err := receive(c, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 0 || len(b.Malformed) != 1 || b.Datagrams != 1 || b.Bytes != cut {
		t.Fatalf("batch %d messages, %d malformed, %d datagrams, %d bytes", len(b.Messages), len(b.Malformed), b.Datagrams, b.Bytes)
	}
	m := b.Malformed[0]
	if !errors.Is(m.Err, transport.ErrTruncated) || len(m.Data) != cut || m.From != tx.Port() {
		t.Fatalf("malformed %+v", m)
	}
	send(t, tx, c.Port(), 2)
	if err := receive(c, b); err != nil || !slices.Equal(seqs(b), []uint32{2}) || len(b.Malformed) != 0 {
		t.Fatalf("after the fault: %v, %v, %d malformed", err, seqs(b), len(b.Malformed))
	}
}

// Corrupted bytes go through the real decoder: a cn_msg len past the end
// is ErrCnMsgLen, as it would be from the socket.
func TestCorrupt(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Corrupt: func(d []byte) []byte {
		binary.NativeEndian.PutUint16(d[transport.NlmsgHeaderLen+16:], 999)
		return d
	}})
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1, 2)
	if err := receive(c, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 0 || len(b.Malformed) != 2 {
		t.Fatalf("%d messages, %d malformed, want 0 and 2", len(b.Messages), len(b.Malformed))
	}
	for _, m := range b.Malformed {
		if !errors.Is(m.Err, transport.ErrCnMsgLen) {
			t.Fatalf("error %v, want ErrCnMsgLen", m.Err)
		}
	}
}

// A datagram that Corrupt grows past a receive slot is truncated, as the
// kernel would truncate it.
func TestCorruptGrowsPastSlot(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Corrupt: func(d []byte) []byte {
		return append(d, make([]byte, transport.MaxDatagram)...)
	}})
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1)
	if err := receive(c, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Malformed) != 1 || !errors.Is(b.Malformed[0].Err, transport.ErrTruncated) {
		t.Fatalf("malformed = %+v", b.Malformed)
	}
}

// A reordered batch arrives after the next one; with nothing to overtake
// it, an empty TryReceiveBatch lets it out.
func TestReorder(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Reorder: true})
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1)
	if got, err := c.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("held batch delivered at once: %v %v %v", got, err, seqs(b))
	}
	send(t, tx, c.Port(), 2)
	if err := receive(c, b); err != nil || !slices.Equal(seqs(b), []uint32{2, 1}) {
		t.Fatalf("receive = %v %v, want [2 1]", err, seqs(b))
	}
	// Held again, with nothing to follow it.
	c.Inject(faulty.Fault{Op: faulty.Receive, Times: 1, Reorder: true})
	send(t, tx, c.Port(), 3)
	if got, err := c.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("held batch delivered at once: %v %v", got, err)
	}
	if got, err := c.TryReceiveBatch(b); !got || err != nil || !slices.Equal(seqs(b), []uint32{3}) {
		t.Fatalf("release = %v %v %v, want [3]", got, err, seqs(b))
	}
}

// A receive whose batch was held goes on waiting for the next, as a
// socket would.
func TestReorderReceiveWaitsForNext(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Reorder: true})
	send(t, tx, c.Port(), 1)
	done := make(chan error, 1)
	b := transport.NewBatch(0)
	go func() { done <- receive(c, b) }()
	// The batch with 1 is held once the hit is counted; 2 arrives after.
	testutil.WaitFor(t, "the fault to hit", func() bool { return c.Injected(faulty.Receive) == 1 })
	send(t, tx, c.Port(), 2)
	if err := <-done; err != nil || !slices.Equal(seqs(b), []uint32{2, 1}) {
		t.Fatalf("receive = %v %v, want [2 1]", err, seqs(b))
	}
}

// Dropped batches are reported as loss, like a kernel overflow.
func TestDropReceive(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Drop: true})
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1, 2, 3)
	if err := receive(c, b); err != nil || b.Lost != 3 || len(b.Messages) != 0 {
		t.Fatalf("receive = %v, lost %d, %v", err, b.Lost, seqs(b))
	}
	send(t, tx, c.Port(), 4)
	if err := receive(c, b); err != nil || b.Lost != 0 || !slices.Equal(seqs(b), []uint32{4}) {
		t.Fatalf("receive = %v, lost %d, %v", err, b.Lost, seqs(b))
	}
}

// A caller's batch smaller than what is pending takes it over several
// calls, without touching the wrapped Conn.
func TestSmallBatchesDrainPending(t *testing.T) {
	t.Parallel()
	c, tx := pair(t)
	send(t, tx, c.Port(), 1, 2, 3, 4, 5)
	b := transport.NewBatch(2)
	var all []uint32
	for len(all) < 5 {
		got, err := c.TryReceiveBatch(b)
		if !got || err != nil {
			t.Fatalf("try = %v %v after %v", got, err, all)
		}
		if len(b.Messages) > 2 {
			t.Fatalf("%d messages in a batch of 2", len(b.Messages))
		}
		all = append(all, seqs(b)...)
	}
	if !slices.Equal(all, []uint32{1, 2, 3, 4, 5}) {
		t.Fatalf("got %v", all)
	}
	if got, err := c.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("empty try = %v %v", got, err)
	}
}

// Malformed datagrams of the wrapped Conn keep their error through a
// second wrapper.
func TestMalformedPassesThrough(t *testing.T) {
	t.Parallel()
	inner, tx := pair(t, faulty.Fault{Op: faulty.Receive, Truncate: 10})
	outer := faulty.Wrap(inner)
	send(t, tx, outer.Port(), 1)
	b := transport.NewBatch(0)
	if err := receive(outer, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Malformed) != 1 || !errors.Is(b.Malformed[0].Err, transport.ErrTruncated) || len(b.Malformed[0].Data) != 10 {
		t.Fatalf("malformed = %+v", b.Malformed)
	}
}

// Wait holds a receive although a message is queued; the context, or
// Close, ends it.
func TestWaitEndsWithContextOrClose(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{}) // never opened
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Wait: gate})
	send(t, tx, c.Port(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ReceiveBatch(ctx, transport.NewBatch(0)) }()
	testutil.WaitFor(t, "the fault to hit", func() bool { return c.Injected(faulty.Receive) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("receive = %v, want canceled (a queued message must not end a Wait)", err)
	}
	go func() { _, err := c.TryReceiveBatch(transport.NewBatch(0)); done <- err }()
	testutil.WaitFor(t, "the fault to hit", func() bool { return c.Injected(faulty.Receive) == 2 })
	c.Close()
	if err := <-done; !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("receive = %v, want ErrClosed", err)
	}
}

// Wait ends when its channel is closed; the call then goes through.
func TestWaitGate(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	c, tx := pair(t, faulty.Fault{Op: faulty.Send, Times: 1, Wait: gate})
	done := make(chan error, 1)
	go func() {
		done <- tx.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: 0})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The fault is on c's sends: c sends to tx.
	go func() {
		done <- c.Send(context.Background(), transport.Addr{Port: tx.Port()}, &transport.Message{ID: id, Seq: 7})
	}()
	testutil.WaitFor(t, "the fault to hit", func() bool { return c.Injected(faulty.Send) == 1 })
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b := transport.NewBatch(0)
	if err := receive(tx, b); err != nil || !slices.Equal(seqs(b), []uint32{7}) {
		t.Fatalf("after the gate: %v %v", err, seqs(b))
	}
}

// Delay is bounded by the call's context.
func TestDelayBoundedByContext(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Delay: time.Hour})
	send(t, tx, c.Port(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ReceiveBatch(ctx, transport.NewBatch(0)) }()
	testutil.WaitFor(t, "the fault to hit", func() bool { return c.Injected(faulty.Receive) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("delayed receive = %v", err)
	}
	b := transport.NewBatch(0)
	if err := receive(c, b); err != nil || !slices.Equal(seqs(b), []uint32{1}) {
		t.Fatalf("after the delay fault: %v %v", err, seqs(b))
	}
}

// A short Delay passes and the call goes through.
func TestDelayPasses(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Receive, Times: 1, Delay: time.Millisecond})
	send(t, tx, c.Port(), 1)
	b := transport.NewBatch(0)
	if err := receive(c, b); err != nil || !slices.Equal(seqs(b), []uint32{1}) {
		t.Fatalf("delayed receive: %v %v", err, seqs(b))
	}
}

// Send faults: Match picks the sends, Err fails them, Drop swallows them.
// The absence of the dropped message is shown by the message sent after
// it arriving first (unicast keeps order).
func TestSendFaults(t *testing.T) {
	t.Parallel()
	rx, tx := pair(t)
	boom := errors.New("boom")
	c := faulty.Wrap(tx,
		faulty.Fault{Op: faulty.Send, Match: func(_ transport.Addr, m *transport.Message) bool { return m.Seq == 1 }, Err: boom},
		faulty.Fault{Op: faulty.Send, Match: func(_ transport.Addr, m *transport.Message) bool { return m.Seq == 2 }, Drop: true},
	)
	to := transport.Addr{Port: rx.Port()}
	for seq := uint32(1); seq <= 3; seq++ {
		err := c.Send(context.Background(), to, &transport.Message{ID: id, Seq: seq})
		var op *transport.OpError
		switch {
		case seq == 1 && (!errors.Is(err, boom) || !errors.As(err, &op) || op.Op != "send" || *op.Addr != to):
			t.Fatalf("send 1 = %v, want boom to %v", err, to)
		case seq != 1 && err != nil:
			t.Fatalf("send %d = %v", seq, err)
		}
	}
	b := transport.NewBatch(0)
	if err := receive(rx, b); err != nil || !slices.Equal(seqs(b), []uint32{3}) {
		t.Fatalf("received %v %v, want only [3]", err, seqs(b))
	}
	if c.Calls(faulty.Send) != 3 || c.Injected(faulty.Send) != 2 {
		t.Fatalf("calls %d injected %d", c.Calls(faulty.Send), c.Injected(faulty.Send))
	}
}

// Join, Drops and Deadline faults fail those calls; once spent, the calls
// reach the wrapped Conn.
func TestOtherOps(t *testing.T) {
	t.Parallel()
	eperm := syscall.EPERM
	c, _ := pair(t,
		faulty.Fault{Op: faulty.Join, Times: 2, Err: eperm},
		faulty.Fault{Op: faulty.Drops, Times: 1, Err: eperm},
		faulty.Fault{Op: faulty.Deadline, Times: 1, Err: eperm},
	)
	if err := c.JoinGroup(3); !errors.Is(err, eperm) {
		t.Fatalf("join = %v", err)
	}
	if err := c.LeaveGroup(3); !errors.Is(err, eperm) {
		t.Fatalf("leave = %v", err)
	}
	if _, err := c.Drops(); !errors.Is(err, eperm) {
		t.Fatalf("drops = %v", err)
	}
	if err := c.SetReadDeadline(time.Now()); !errors.Is(err, eperm) {
		t.Fatalf("deadline = %v", err)
	}
	if err := c.JoinGroup(3); err != nil {
		t.Fatal(err)
	}
	if err := c.LeaveGroup(3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Drops(); err != nil {
		t.Fatal(err)
	}
	// The deadline reaches the wrapped Conn: a receive times out.
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.ReceiveBatch(context.Background(), transport.NewBatch(0)); !errors.Is(err, transport.ErrClosed) && !isTimeout(err) {
		t.Fatalf("receive past the deadline = %v", err)
	}
	for op, want := range map[faulty.Op]int{faulty.Join: 4, faulty.Drops: 2, faulty.Deadline: 2} {
		if c.Calls(op) != want {
			t.Errorf("%v calls = %d, want %d", op, c.Calls(op), want)
		}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// A failing Close still closes the wrapped Conn.
func TestCloseFault(t *testing.T) {
	t.Parallel()
	c, tx := pair(t, faulty.Fault{Op: faulty.Close, Err: syscall.EIO})
	if err := c.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close = %v", err)
	}
	if err := c.Unwrap().ReceiveBatch(context.Background(), transport.NewBatch(0)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("wrapped conn after close: %v", err)
	}
	// The wrapped endpoint is gone: unicast to it is refused.
	err := tx.Send(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: id})
	if err == nil {
		t.Fatal("send to a closed endpoint succeeded")
	}
}

// Inject adds faults counted from then; Clear removes them.
func TestInjectAndClear(t *testing.T) {
	t.Parallel()
	c, tx := pair(t)
	b := transport.NewBatch(0)
	send(t, tx, c.Port(), 1)
	if err := receive(c, b); err != nil {
		t.Fatal(err)
	}
	c.Inject(faulty.Fault{Op: faulty.Receive, Err: syscall.ENOBUFS})
	if err := receive(c, b); !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("receive after Inject = %v", err)
	}
	c.Clear()
	send(t, tx, c.Port(), 2)
	if err := receive(c, b); err != nil || !slices.Equal(seqs(b), []uint32{2}) {
		t.Fatalf("receive after Clear = %v %v", err, seqs(b))
	}
	if faulty.Deadline.String() != "deadline" || faulty.Op(99).String() != "op(99)" {
		t.Fatal("Op names")
	}
}
