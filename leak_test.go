package cnactor_test

import (
	"context"
	"errors"
	"github.com/cnactor/cnactor/dispatch"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its tests: every
// Connector the tests start is closed, and Close must stop everything it
// started, protoactor's goroutines included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Close under load: peers keep sending while the connector closes. Every
// message a peer finished sending before Close was called is accounted for
// afterwards in exactly one counter, and nothing is left queued.
func TestCloseUnderLoad(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	c, net := newMemConnector(t, cnactor.WithLogger(zap.New(core)))
	var (
		fast   = transport.CbID{Idx: 0x7800, Val: 1}
		slow   = transport.CbID{Idx: 0x7800, Val: 2}
		flaky  = transport.CbID{Idx: 0x7800, Val: 3}
		nobody = transport.CbID{Idx: 0x7800, Val: 4} // unknown
		kernel = transport.CbID{Idx: 0x7800, Val: 5} // kernel only: peers are rejected
	)
	mustAdd := func(id transport.CbID, h handlers.Handler, opts ...cnactor.CallbackOption) {
		t.Helper()
		if err := c.AddCallback(id, id.String(), h, opts...); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(fast, handlers.Sink(), cnactor.WithMailbox(64, cnactor.DropNewest))
	mustAdd(slow, handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
		time.Sleep(20 * time.Microsecond) // slow work, not synchronisation
		return nil
	}), cnactor.WithMailbox(32, cnactor.DropOldest))
	mustAdd(flaky, handlers.HandlerFunc(func(_ handlers.Context, m *transport.Message) error {
		if m.Seq%3 == 0 {
			return errors.New("flaky")
		}
		return nil
	}))
	mustAdd(kernel, handlers.Sink(), cnactor.WithSenderPolicy(dispatch.AllowKernel()))
	ids := []transport.CbID{fast, slow, flaky, nobody, kernel}

	const peers = 3
	var sent atomic.Uint64
	var wg sync.WaitGroup
	for p := range peers {
		peer := dialPeer(t, net)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for seq := uint32(p); ; seq += peers {
				m := transport.Message{ID: ids[seq%uint32(len(ids))], Seq: seq, Data: []byte("load")}
				if err := peer.Send(ctx, transport.Addr{Port: c.Port()}, &m); err != nil {
					return // the connector's socket is closed
				}
				sent.Add(1)
			}
		}()
	}
	waitFor(t, "load", func() bool { return sent.Load() > 5000 })
	before := sent.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close drains what was queued when it began; traffic that keeps
	// coming must not hold it up to the reader's drain limit (which says
	// so when it is reached) - checked by what the reader did, not by the
	// clock, which a loaded machine slows.
	if n := logs.FilterMessageSnippet("drain limit reached").Len(); n != 0 {
		t.Errorf("Close under load ran into the drain limit (took %v)", time.Since(start))
	}
	wg.Wait()
	total := sent.Load()

	s := c.Stats()
	var accounted uint64
	seen := map[transport.CbID]bool{}
	for _, cb := range s.Callbacks {
		seen[cb.ID] = true
		if cb.Queued != 0 || cb.Received != cb.Handled+cb.Failed+cb.Dropped {
			t.Errorf("%v after Close: %+v", cb.ID, cb.CallbackStats)
		}
		accounted += cb.Handled + cb.Failed + cb.Dropped + cb.Rejected
	}
	for _, id := range []transport.CbID{fast, slow, flaky, kernel} {
		if !seen[id] {
			t.Errorf("Stats after Close has no counters for %v", id)
		}
	}
	accounted += s.Reader.Unknown
	t.Logf("sent %d before Close, %d in all; accounted %d; reader %+v", before, total, accounted, s.Reader)
	if accounted < before || accounted > total {
		t.Errorf("accounted for %d messages; %d were sent before Close and %d in all", accounted, before, total)
	}
	if s.Reader.Messages != accounted || s.Reader.Malformed != 0 || s.Reader.KernelDrops != 0 {
		t.Errorf("reader %+v: every message read must be in exactly one counter (%d)", s.Reader, accounted)
	}
}
