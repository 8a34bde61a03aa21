package memory_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// TryReceiveBatch never waits: empty is (false, nil); queued datagrams or
// a loss report are true; a closed endpoint is ErrClosed.
func TestTryReceiveBatch(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	rx := dial(t, n, memory.WithQueueLen(2), memory.WithGroups(4))
	tx := dial(t, n)
	b := transport.NewBatch(8)
	if got, err := rx.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	send(t, tx, transport.Addr{Port: rx.Port()}, msg(1))
	if got, err := rx.TryReceiveBatch(b); !got || err != nil || !slices.Equal(seqs(b), []uint32{1}) {
		t.Fatalf("one queued: %v %v %v", got, err, seqs(b))
	}
	// Three multicasts into a queue of two: one lost, reported with the two.
	for seq := uint32(2); seq <= 4; seq++ {
		send(t, tx, transport.Addr{Group: 4}, msg(seq))
	}
	if got, err := rx.TryReceiveBatch(b); !got || err != nil || b.Lost != 1 || !slices.Equal(seqs(b), []uint32{2, 3}) {
		t.Fatalf("after overflow: %v %v lost %d %v", got, err, b.Lost, seqs(b))
	}
	rx.Close()
	if got, err := rx.TryReceiveBatch(b); got || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("closed: %v %v", got, err)
	}
}

// The read deadline works as a socket's: a passed one fails a receive even
// with something queued, setting one wakes a waiting receive, and a zero
// one clears it.
func TestReadDeadline(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	rx := dial(t, n)
	tx := dial(t, n)
	b := transport.NewBatch(4)
	send(t, tx, transport.Addr{Port: rx.Port()}, msg(1))
	rx.SetReadDeadline(time.Unix(1, 0))
	if err := rx.ReceiveBatch(context.Background(), b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline with a datagram queued: %v", err)
	}
	rx.SetReadDeadline(time.Time{})
	receive(t, rx, b)
	if !slices.Equal(seqs(b), []uint32{1}) {
		t.Fatalf("after clearing the deadline: %v", seqs(b))
	}
	// A far deadline arms a timer and lets the datagram through.
	rx.SetReadDeadline(time.Now().Add(time.Hour))
	send(t, tx, transport.Addr{Port: rx.Port()}, msg(2))
	receive(t, rx, b)
	// A waiting receive is woken by a deadline set meanwhile.
	rx.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { done <- rx.ReceiveBatch(context.Background(), transport.NewBatch(1)) }()
	// The wait cannot be observed from outside; setting the deadline in a
	// loop until the receive returns covers both orders.
	testutil.WaitFor(t, "the receive to time out", func() bool {
		rx.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("woken receive = %v", err)
			}
			return true
		default:
			return false
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rx.SetReadDeadline(time.Time{})
	if err := rx.ReceiveBatch(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("receive with a done context = %v", err)
	}
}

// Group membership errors: an invalid group, the kernel endpoint (which
// cannot join), a closed endpoint.
func TestMembershipErrors(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork()
	c := dial(t, n)
	if err := c.JoinGroup(0); !errors.Is(err, transport.ErrInvalidGroup) {
		t.Fatalf("join 0: %v", err)
	}
	if err := n.Kernel().JoinGroup(3); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("kernel join: %v", err)
	}
	if err := c.JoinGroup(3); err != nil {
		t.Fatal(err)
	}
	if err := c.LeaveGroup(3); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.LeaveGroup(3); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("leave after close: %v", err)
	}
	if _, err := c.Drops(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("drops after close: %v", err)
	}
	if err := c.Send(context.Background(), transport.Addr{Port: 1}, msg(1)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// A network-wide send timeout applies to every endpoint; a kernel script
// removed with HandleKernel(nil) leaves messages queued at the kernel
// endpoint again.
func TestNetworkOptionsAndKernelScript(t *testing.T) {
	t.Parallel()
	n := memory.NewNetwork(memory.WithQueueLen(1), memory.WithSendTimeout(time.Millisecond))
	rx := dial(t, n)
	tx := dial(t, n)
	to := transport.Addr{Port: rx.Port()}
	send(t, tx, to, msg(1))
	if err := tx.Send(context.Background(), to, msg(2)); !errors.Is(err, transport.ErrSendTimeout) {
		t.Fatalf("send into a full queue of one = %v, want the network's send timeout", err)
	}
	var scripted []uint32
	n.HandleKernel(func(_ *memory.Conn, m transport.Received) { scripted = append(scripted, m.Seq) })
	send(t, tx, transport.Kernel(), msg(3))
	n.HandleKernel(nil)
	send(t, tx, transport.Kernel(), msg(4))
	b := transport.NewBatch(4)
	receive(t, n.Kernel(), b)
	if !slices.Equal(scripted, []uint32{3}) || !slices.Equal(seqs(b), []uint32{4}) {
		t.Fatalf("scripted %v, queued at the kernel %v", scripted, seqs(b))
	}
}
