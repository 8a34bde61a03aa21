package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

var testID = transport.CbID{Idx: 0x4242, Val: 1}

func dial(t *testing.T, n *memory.Network, opts ...memory.DialOption) *memory.Conn {
	t.Helper()
	c, err := n.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func msg(seq uint32) *transport.Message {
	return &transport.Message{ID: testID, Seq: seq, Data: []byte(fmt.Sprint("m", seq))}
}

func send(t *testing.T, c transport.Conn, to transport.Addr, m *transport.Message) {
	t.Helper()
	if err := c.Send(context.Background(), to, m); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
}

// receive runs one ReceiveBatch bounded by a second.
func receive(t *testing.T, c transport.Conn, b *transport.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.ReceiveBatch(ctx, b); err != nil {
		t.Fatalf("receive on port %d: %v", c.Port(), err)
	}
}

// seqs lists the seq of every message in b.
func seqs(b *transport.Batch) []uint32 {
	var s []uint32
	for _, m := range b.Messages {
		s = append(s, m.Seq)
	}
	return s
}

// quiet checks that nothing arrives at c for a while.
func quiet(t *testing.T, c transport.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	b := transport.NewBatch(4)
	if err := c.ReceiveBatch(ctx, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("port %d: want nothing, got err=%v messages=%d lost=%d", c.Port(), err, len(b.Messages), b.Lost)
	}
}

func TestPortsAndCredentials(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	a := dial(t, n)
	creds := transport.Credentials{PID: 7, UID: 8, GID: 9}
	b := dial(t, n, memory.WithCredentials(creds))
	if a.Port() == 0 || b.Port() == 0 || a.Port() == b.Port() {
		t.Fatalf("ports %d and %d: want distinct and non-zero", a.Port(), b.Port())
	}
	if k := n.Kernel(); k.Port() != 0 || n.Kernel() != k {
		t.Fatalf("kernel: port %d, want 0 and one endpoint", k.Port())
	}

	send(t, b, transport.Addr{Port: a.Port()}, msg(1))
	send(t, a, transport.Addr{Port: b.Port()}, msg(2))
	bt := transport.NewBatch(4)
	receive(t, a, bt)
	if got := bt.Messages[0]; got.From != b.Port() || got.Creds != creds {
		t.Errorf("a got from %d creds %+v, want %d %+v", got.From, got.Creds, b.Port(), creds)
	}
	receive(t, b, bt)
	want := transport.Credentials{PID: uint32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if got := bt.Messages[0]; got.Creds != want {
		t.Errorf("default credentials %+v, want %+v", got.Creds, want)
	}
}

// The kernel endpoint scripted with HandleKernel answers requests the way
// the connector's request/reply protocol does: ack = seq + 1.
func TestHandleKernel(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	var mu sync.Mutex
	var seen []transport.Received
	n.HandleKernel(func(k *memory.Conn, m transport.Received) {
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
		if m.Group != 0 {
			return
		}
		reply := &transport.Message{ID: m.ID, Seq: 99, Ack: m.Seq + 1, Data: []byte("ok")}
		if err := k.Send(context.Background(), transport.Addr{Port: m.From}, reply); err != nil {
			t.Errorf("kernel reply: %v", err)
		}
	})
	c := dial(t, n, memory.WithGroups(3))
	send(t, c, transport.Kernel(), &transport.Message{ID: testID, Seq: 10, Data: []byte("req")})

	b := transport.NewBatch(4)
	receive(t, c, b)
	if len(b.Messages) != 1 {
		t.Fatalf("got %d messages, want the reply", len(b.Messages))
	}
	r := b.Messages[0]
	if r.From != 0 || r.Creds != (transport.Credentials{}) || r.Group != 0 || r.Ack != 11 || string(r.Data) != "ok" {
		t.Errorf("reply %+v: want from the kernel, zero credentials, ack 11", r)
	}

	// A multicast sent with Port 0 reaches the kernel too, as in netlink_sendmsg.
	other := dial(t, n)
	send(t, other, transport.Addr{Group: 3}, &transport.Message{ID: testID, Seq: 20})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("kernel saw %d messages, want 2", len(seen))
	}
	if s := seen[0]; s.From != c.Port() || s.Seq != 10 || string(s.Data) != "req" || s.Creds.PID != uint32(os.Getpid()) {
		t.Errorf("kernel saw %+v", s)
	}
	if s := seen[1]; s.From != other.Port() || s.Group != 3 || s.Seq != 20 {
		t.Errorf("kernel saw multicast %+v, want group 3", s)
	}
}

func TestKernelQueue(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork(memory.WithQueueLen(2))
	c := dial(t, n, memory.WithQueueLen(4))
	// Before anyone plays the kernel, messages to it vanish without error.
	send(t, c, transport.Kernel(), msg(0))

	k := n.Kernel()
	for i := range uint32(5) {
		send(t, c, transport.Kernel(), msg(i+1)) // never waits, even when full
	}
	b := transport.NewBatch(8)
	receive(t, k, b)
	if got := seqs(b); len(got) != 2 || got[0] != 1 || got[1] != 2 || b.Lost != 3 {
		t.Errorf("kernel got seqs %v lost %d, want [1 2] and 3 lost", got, b.Lost)
	}
	if d, _ := k.Drops(); d != 3 {
		t.Errorf("kernel drops %d, want 3", d)
	}
	if err := k.JoinGroup(1); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("kernel join: %v, want EINVAL", err)
	}

	// The kernel never waits either: a full receiver loses the message.
	for i := range uint32(4) {
		send(t, k, transport.Addr{Port: c.Port()}, msg(i))
	}
	if err := k.Send(context.Background(), transport.Addr{Port: c.Port()}, msg(4)); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("kernel send to a full queue: %v, want EAGAIN", err)
	}
	receive(t, c, b)
	if len(b.Messages) != 4 || b.Lost != 1 {
		t.Errorf("got %d messages lost %d, want 4 and 1", len(b.Messages), b.Lost)
	}

	// Without the kernel endpoint, port 0 refuses like any closed port.
	k.Close()
	if err := c.Send(context.Background(), transport.Kernel(), msg(9)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("send to a closed kernel: %v, want ECONNREFUSED", err)
	}
}

func TestUnknownPortRefused(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	a := dial(t, n)
	gone := dial(t, n)
	gone.Close()
	for _, port := range []uint32{gone.Port(), 123456} {
		err := a.Send(context.Background(), transport.Addr{Port: port}, msg(1))
		var op *transport.OpError
		if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &op) || op.Op != "send" {
			t.Errorf("send to port %d: %v, want an OpError wrapping ECONNREFUSED", port, err)
		}
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	c := dial(t, n)
	errc := make(chan error)
	go func() { errc <- c.ReceiveBatch(context.Background(), transport.NewBatch(1)) }()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("pending receive: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	other := dial(t, n)
	checks := map[string]error{
		"send":    c.Send(context.Background(), transport.Addr{Port: other.Port()}, msg(1)),
		"join":    c.JoinGroup(2),
		"leave":   c.LeaveGroup(2),
		"receive": c.ReceiveBatch(context.Background(), transport.NewBatch(1)),
	}
	_, checks["drops"] = c.Drops()
	for op, err := range checks {
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", op, err)
		}
	}
}

// Unicast never overflows: a sender facing a full queue waits until the
// receiver reads, and order is kept.
func TestUnicastWaitsForRoom(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	r := dial(t, n, memory.WithQueueLen(2))
	s := dial(t, n)
	to := transport.Addr{Port: r.Port()}
	send(t, s, to, msg(1))
	send(t, s, to, msg(2))
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		errc <- s.Send(context.Background(), to, msg(3))
	}()
	// The window counts from when the send began, not from when the
	// goroutine was created: on a slow machine it may start late.
	<-started
	select {
	case err := <-errc:
		t.Fatalf("send to a full queue returned %v, want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	b := transport.NewBatch(1)
	receive(t, r, b)
	if err := <-errc; err != nil {
		t.Fatalf("waiting send: %v", err)
	}
	var got []uint32
	got = append(got, seqs(b)...)
	for len(got) < 3 {
		receive(t, r, b)
		got = append(got, seqs(b)...)
	}
	if fmt.Sprint(got) != "[1 2 3]" || b.Lost != 0 {
		t.Errorf("got %v lost %d, want [1 2 3] and no loss", got, b.Lost)
	}
	if d, _ := r.Drops(); d != 0 {
		t.Errorf("drops %d, want 0", d)
	}
}

// Many goroutines unicasting into a small queue lose nothing.
func TestConcurrentUnicast(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	r := dial(t, n, memory.WithQueueLen(4))
	const senders, each = 8, 200
	var wg sync.WaitGroup
	for range senders {
		s := dial(t, n)
		wg.Go(func() {
			for i := range uint32(each) {
				if err := s.Send(context.Background(), transport.Addr{Port: r.Port()}, msg(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := map[uint32]uint32{} // per sender, the seq expected next
	b := transport.NewBatch(3)
	for got := 0; got < senders*each; {
		receive(t, r, b)
		for _, m := range b.Messages {
			if m.Seq != next[m.From] {
				t.Fatalf("from %d: seq %d, want %d", m.From, m.Seq, next[m.From])
			}
			next[m.From]++
		}
		got += len(b.Messages)
		if b.Lost != 0 {
			t.Fatalf("lost %d", b.Lost)
		}
	}
	wg.Wait()
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork(memory.WithQueueLen(1))
	r := dial(t, n)
	s := dial(t, n, memory.WithSendTimeout(30*time.Millisecond))
	to := transport.Addr{Port: r.Port()}
	send(t, s, to, msg(1))

	start := time.Now()
	err := s.Send(context.Background(), to, msg(2))
	var op *transport.OpError
	if !errors.Is(err, transport.ErrSendTimeout) || !errors.As(err, &op) || !op.Timeout() {
		t.Fatalf("send to a full queue: %v, want ErrSendTimeout", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("timed out after %v, before the 30ms send timeout", d)
	}

	// A context deadline replaces the send timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, to, msg(3)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("send with a deadline: %v, want DeadlineExceeded", err)
	}

	// The receiver closing fails a waiting sender like an unknown port.
	slow := dial(t, n, memory.WithSendTimeout(time.Minute))
	errc := make(chan error, 1)
	go func() { errc <- slow.Send(context.Background(), to, msg(4)) }()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	if err := <-errc; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("send to a receiver that closed: %v, want ECONNREFUSED", err)
	}
}

// Multicast drops what does not fit and accounts for every drop:
// received + lost == sent, with many concurrent senders.
func TestMulticastOverflowExact(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	const group, senders, each = 7, 6, 500
	r1 := dial(t, n, memory.WithQueueLen(8), memory.WithGroups(group))
	r2 := dial(t, n, memory.WithQueueLen(64), memory.WithGroups(group))
	var wg sync.WaitGroup
	for range senders {
		s := dial(t, n)
		wg.Go(func() {
			for i := range uint32(each) {
				send(t, s, transport.Addr{Group: group}, msg(i))
			}
		})
	}
	for _, r := range []*memory.Conn{r1, r2} {
		wg.Go(func() {
			var received, lost uint64
			b := transport.NewBatch(5)
			for received+lost < senders*each {
				receive(t, r, b)
				received += uint64(len(b.Messages))
				lost += b.Lost
			}
			drops, err := r.Drops()
			if received+lost != senders*each || drops != lost || err != nil {
				t.Errorf("port %d: received %d lost %d drops %d (%v), want received+lost = %d = received+drops",
					r.Port(), received, lost, drops, err, senders*each)
			}
		})
	}
	wg.Wait()
}

// An overflowing queue stays congested, as the kernel's does, until the
// reader drains it: until then every multicast to it is dropped.
func TestCongestion(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	r := dial(t, n, memory.WithQueueLen(4), memory.WithGroups(2))
	s := dial(t, n)
	mc := transport.Addr{Group: 2}
	for i := range uint32(6) {
		send(t, s, mc, msg(i))
	}
	one := transport.NewBatch(1)
	receive(t, r, one)
	if got := seqs(one); fmt.Sprint(got) != "[0]" || one.Lost != 2 {
		t.Fatalf("got %v lost %d, want [0] and 2", got, one.Lost)
	}
	send(t, s, mc, msg(6)) // room for it, but the queue is still congested
	all := transport.NewBatch(8)
	receive(t, r, all)
	if got := seqs(all); fmt.Sprint(got) != "[1 2 3]" || all.Lost != 1 {
		t.Fatalf("got %v lost %d, want [1 2 3] and 1", got, all.Lost)
	}
	send(t, s, mc, msg(7)) // drained: delivered again
	receive(t, r, all)
	if got := seqs(all); fmt.Sprint(got) != "[7]" || all.Lost != 0 {
		t.Fatalf("got %v lost %d, want [7] and 0", got, all.Lost)
	}
	if d, _ := r.Drops(); d != 3 {
		t.Errorf("drops %d, want 3", d)
	}
}

func TestMulticastRules(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	s := dial(t, n, memory.WithGroups(4))
	m := dial(t, n, memory.WithGroups(4, 4)) // joining twice is one membership
	p := dial(t, n)

	// With both Port and Group the message goes to the group and to Port.
	send(t, s, transport.Addr{Port: p.Port(), Group: 4}, msg(1))
	b := transport.NewBatch(4)
	for _, c := range []*memory.Conn{m, p} {
		receive(t, c, b)
		if len(b.Messages) != 1 || b.Messages[0].Group != 4 || b.Messages[0].From != s.Port() {
			t.Errorf("port %d got %+v, want one message to group 4", c.Port(), b.Messages)
		}
	}
	quiet(t, s) // not looped back to the sender
	quiet(t, m) // delivered once

	err := s.Send(context.Background(), transport.Addr{Port: 99999, Group: 4}, msg(2))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("multicast with an unknown port: %v, want ECONNREFUSED", err)
	}
	receive(t, m, b) // the multicast half was delivered anyway
	if len(b.Messages) != 1 {
		t.Errorf("got %d messages, want 1", len(b.Messages))
	}

	if _, err := n.Dial(memory.WithGroups(33)); !errors.Is(err, transport.ErrInvalidGroup) {
		t.Errorf("dial with group 33: %v, want ErrInvalidGroup", err)
	}
}

func TestOversize(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	a := dial(t, n)
	err := a.Send(context.Background(), transport.Kernel(), &transport.Message{Data: make([]byte, transport.MaxPayload+1)})
	if !errors.Is(err, transport.ErrOversize) {
		t.Fatalf("oversize send: %v", err)
	}
}

// The steady state of Send and ReceiveBatch allocates nothing.
func TestNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	n := memory.NewNetwork()
	a := dial(t, n)
	r := dial(t, n, memory.WithGroups(9))
	m := &transport.Message{ID: testID, Data: bytes.Repeat([]byte{1}, 100)}
	b := transport.NewBatch(4)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := a.Send(ctx, transport.Addr{Port: r.Port()}, m); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(ctx, transport.Addr{Group: 9}, m); err != nil {
			t.Fatal(err)
		}
		if err := r.ReceiveBatch(ctx, b); err != nil || len(b.Messages) != 2 {
			t.Fatalf("receive: %v, %d messages", err, len(b.Messages))
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per send+send+receive, want 0", allocs)
	}
}

func BenchmarkUnicast(b *testing.B) {
	n := memory.NewNetwork()
	s, _ := n.Dial()
	r, _ := n.Dial()
	defer s.Close()
	defer r.Close()
	m := &transport.Message{ID: testID, Data: make([]byte, 64)}
	ctx := context.Background()
	to := transport.Addr{Port: r.Port()}
	total := b.N
	done := make(chan struct{})
	go func() {
		defer close(done)
		bt := transport.NewBatch(0)
		for got := 0; got < total; got += len(bt.Messages) {
			if err := r.ReceiveBatch(ctx, bt); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	b.ReportAllocs()
	for range total {
		if err := s.Send(ctx, to, m); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}
