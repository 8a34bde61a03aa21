//go:build linux

package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"golang.org/x/sys/unix"
)

// While ReceiveEach reads full batches for long, it leaves the poller;
// before it waits it must be back on it, or the next datagram would never
// wake it. Each round holds the loop in deliver while a burst
// is queued (so that the batches after it are full), then sends a single
// datagram once the loop has emptied the queue and gone back to waiting
// (idle says so).
func TestIntegrationReceiveEachWatchesAgainAfterFullBatches(t *testing.T) {
	testutil.Privileged(t)
	rx, err := Dial(WithReadBuffer(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	fd := rawPeer(t)
	to := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: rx.Port()}
	dg, err := AppendDatagram(nil, &Message{ID: CbID{Idx: 0x5342, Val: 1}, Data: []byte("x")}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	send := func(n int) {
		for range n {
			if err := unix.Sendto(fd, dg, 0, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := make(chan int)
	proceed := make(chan struct{})
	waiting := make(chan struct{}, 1) // idle: the loop found the queue empty and waits
	done := make(chan error, 1)
	go func() {
		done <- rx.ReceiveEach(context.Background(), NewBatch(4), func(b *Batch) *Batch {
			got <- len(b.Messages)
			<-proceed
			return b
		}, func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		})
	}()
	// expect takes batches until n messages came; hold runs while the
	// first of them is still in deliver.
	expect := func(n int, hold func()) {
		t.Helper()
		for total := 0; total < n; {
			select {
			case k := <-got:
				total += k
				if hold != nil {
					hold()
					hold = nil
				}
				proceed <- struct{}{}
			case <-time.After(testutil.WaitTimeout):
				t.Fatalf("%d of %d messages received", total, n)
			}
		}
	}
	const rounds, burst = 20, 2 * leaveAfter // long enough to leave the poller
	send(1)
	expect(1, func() { send(burst) })
	expect(burst, nil)
	for range rounds {
		select {
		case <-waiting:
		case <-time.After(testutil.WaitTimeout):
			t.Fatal("the loop did not go back to waiting after a burst")
		}
		send(1) // the loop is waiting: this one must wake it
		expect(1, func() { send(burst) })
		expect(burst, nil)
	}
	if err := rx.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ReceiveEach after Close = %v", err)
		}
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("ReceiveEach did not end at Close")
	}
	// Every burst was read in full batches, so each stopped the watching.
	if rx.unwatched < rounds {
		t.Fatalf("the socket went unwatched %d times in %d bursts", rx.unwatched, rounds+1)
	}
}
