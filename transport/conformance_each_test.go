package transport_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// Behaviours of transport.ReceiveEach, run over every transport by
// TestConformance: the kernel socket runs its own loop (which waits after
// a short batch without asking the socket again), the memory one the
// generic loop over ReceiveBatch.
func init() {
	behaviours = append(behaviours, []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"EachPingPong", testEachPingPong},
		{"EachIdleAfterFullBatch", testEachIdleAfterFullBatch},
		{"EachIdleOnEntry", testEachIdleOnEntry},
		{"EachOverflowWhileReading", testEachOverflowWhileReading},
		{"EachEnds", testEachEnds},
		{"EachEndsWhileBusy", testEachEndsWhileBusy},
	}...)
}

// eachLoop runs ReceiveEach on c with two batches of n datagrams taking
// turns, passing every message from port from to seen, until seen returns
// false or ctx ends; it reports ReceiveEach's error.
func eachLoop(ctx context.Context, c transport.Conn, n int, from uint32, seen func(m *transport.Received, lost uint64) bool, idle func()) <-chan error {
	errc := make(chan error, 1)
	bs := [2]*transport.Batch{transport.NewBatch(n), transport.NewBatch(n)}
	turn := 0
	go func() {
		errc <- transport.ReceiveEach(ctx, c, bs[0], func(b *transport.Batch) *transport.Batch {
			more := true
			if b.Lost > 0 {
				more = seen(nil, b.Lost)
			}
			for i := range b.Messages {
				if m := &b.Messages[i]; m.From == from && !seen(m, 0) {
					more = false
				}
			}
			if !more {
				return nil
			}
			turn ^= 1
			return bs[turn]
		}, idle)
	}()
	return errc
}

// One message at a time, each sent by the loop's own deliver as the
// previous one arrives, so that it lands between the receive that emptied
// the queue and the wait: a loop that lost that wake-up would stall.
func testEachPingPong(t *testing.T, e *env) {
	const rounds = 2000
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := func(seq uint32) {
		if err := s.Send(ctx, transport.Addr{Port: r.Port()}, &transport.Message{ID: confID, Seq: seq}); err != nil {
			t.Errorf("send %d: %v", seq, err)
		}
	}
	var got atomic.Uint32
	errc := eachLoop(ctx, r, 8, s.Port(), func(m *transport.Received, _ uint64) bool {
		if m.Seq != got.Load() {
			t.Errorf("got seq %d, want %d", m.Seq, got.Load())
		}
		if got.Add(1) == rounds {
			return false
		}
		next(m.Seq + 1)
		return true
	}, nil)
	next(0)
	if err := waitErrWithin(errc, 15*time.Second); err != nil || got.Load() != rounds {
		t.Fatalf("ReceiveEach: %v after %d of %d round trips (a stall ends in the context's deadline)", err, got.Load(), rounds)
	}
}

// After a batch that filled up, the loop calls idle before it waits.
func testEachIdleAfterFullBatch(t *testing.T, e *env) {
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	for i := range uint32(8) {
		send(t, s, transport.Addr{Port: r.Port()}, &transport.Message{ID: confID, Seq: i})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got atomic.Int32
	idled := make(chan int32, 16)
	errc := eachLoop(ctx, r, 4, s.Port(), func(*transport.Received, uint64) bool {
		got.Add(1)
		return true
	}, func() {
		select {
		case idled <- got.Load():
		default:
		}
	})
	select {
	case n := <-idled:
		if n != 8 {
			t.Fatalf("idle called with %d of the 8 queued messages delivered", n)
		}
	case err := <-errc:
		t.Fatalf("ReceiveEach ended: %v", err)
	case <-ctx.Done():
		t.Fatalf("idle not called after two full batches (%d delivered)", got.Load())
	}
}

// A loop that finds the queue empty at its first receive calls idle
// before it waits: a caller that ended the previous loop after a full
// batch (the runtime does, to run handlers) must not wait with what it
// left asleep.
func testEachIdleOnEntry(t *testing.T, e *env) {
	r := e.dial(t, dialOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	idled := make(chan struct{}, 1)
	errc := eachLoop(ctx, r, 4, 0, func(*transport.Received, uint64) bool { return true }, func() {
		select {
		case idled <- struct{}{}:
		default:
		}
	})
	select {
	case <-idled:
	case err := <-errc:
		t.Fatalf("ReceiveEach ended: %v", err)
	case <-ctx.Done():
		t.Fatal("idle not called before the first wait on an empty queue")
	}
	cancel()
	<-errc
}

// A multicast sender outrunning a small receive queue while the loop reads:
// overruns arrive in the middle of receives, and the loop still accounts
// for every message, received or lost, without stalling.
func testEachOverflowWhileReading(t *testing.T, e *env) {
	const sent = 3000
	g := e.group(t)
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{small: true})
	if err := r.JoinGroup(g); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got, lost atomic.Uint64
	errc := eachLoop(ctx, r, 4, s.Port(), func(m *transport.Received, l uint64) bool {
		if m == nil {
			lost.Add(l)
		} else {
			got.Add(1)
		}
		return got.Load()+lost.Load() < sent
	}, nil)
	for i := range uint32(sent) {
		send(t, s, transport.Addr{Group: g}, &transport.Message{ID: confID, Seq: i, Data: make([]byte, 64)})
	}
	err := waitErrWithin(errc, 10*time.Second)
	t.Logf("received %d, lost %d of %d", got.Load(), lost.Load(), sent)
	if err != nil || got.Load()+lost.Load() != sent {
		t.Fatalf("ReceiveEach: %v; received %d + lost %d != sent %d", err, got.Load(), lost.Load(), sent)
	}
}

// A waiting loop ends with the deadline's, ctx's or Close's error.
func testEachEnds(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	never := func(*transport.Received, uint64) bool { return true }
	errc := eachLoop(context.Background(), c, 4, 0, never, nil)
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	if err := waitErr(t, errc); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("woken by a passed deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	errc = eachLoop(ctx, c, 4, 0, never, nil)
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := waitErr(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	errc = eachLoop(context.Background(), c, 4, 0, never, nil)
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := waitErr(t, errc); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// A loop that never waits, the queue never empty, still ends soon after
// Close or ctx's end, between two batches.
func testEachEndsWhileBusy(t *testing.T, e *env) {
	for _, end := range []string{"close", "cancel"} {
		s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
		const queued = 100 // well within the default receive buffer
		for i := range uint32(queued) {
			send(t, s, transport.Addr{Port: r.Port()}, &transport.Message{ID: confID, Seq: i})
		}
		ctx, cancel := context.WithCancel(context.Background())
		var got atomic.Int32
		errc := eachLoop(ctx, r, 1, s.Port(), func(*transport.Received, uint64) bool {
			got.Add(1)
			time.Sleep(2 * time.Millisecond) // 200 ms for the queue, against 30 ms before the end
			return true
		}, nil)
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		var want error
		if end == "close" {
			r.Close()
			want = transport.ErrClosed
		} else {
			cancel()
			want = context.Canceled
		}
		err := waitErr(t, errc)
		cancel()
		if took := time.Since(start); !errors.Is(err, want) || took > time.Second || got.Load() >= queued {
			t.Fatalf("%s: the loop ended after %v with %v, %d of %d delivered; want %v within a second, before the queue ran out",
				end, took, err, got.Load(), queued, want)
		}
	}
}

func waitErrWithin(errc <-chan error, d time.Duration) error {
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return errors.New("still running")
	}
}
