package cnactor_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/conntest"
	"github.com/cnactor/cnactor/transport"
)

// slowHandler waits for its gate to open, then records the seqs it sees.
type slowHandler struct {
	gate chan struct{}
	mu   sync.Mutex
	seqs []uint32
}

func newSlowHandler() *slowHandler { return &slowHandler{gate: make(chan struct{})} }

func (h *slowHandler) Receive(_ handlers.Context, m *transport.Message) error {
	<-h.gate
	h.mu.Lock()
	h.seqs = append(h.seqs, m.Seq)
	h.mu.Unlock()
	return nil
}

func (h *slowHandler) inOrder(n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seqs) != n {
		return false
	}
	for i, s := range h.seqs {
		if s != uint32(i) {
			return false
		}
	}
	return true
}

// Under Backpressure (the default) a handler slower than its sender loses
// nothing: the reader stops reading while the mailbox is full, the
// transport's queue fills, and the unicast sender waits.
func TestBackpressureSlowHandlerLosesNothing(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	id := transport.CbID{Idx: 0x7800, Val: 1}
	h := newSlowHandler()
	// A long stall timeout: this test is about losing nothing, not about
	// shedding on a machine slowed down by the race detector.
	if err := c.AddCallback(id, "slow", h, cnactor.WithMailbox(16, cnactor.Backpressure),
		cnactor.WithStallTimeout(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range uint32(n) {
			sendTo(t, peer, c, id, i, "x")
		}
	}()
	// The handler stays shut until its full mailbox holds the reader:
	// the sender then waits on the transport's full queue.
	waitFor(t, "the full mailbox to hold the reader", func() bool { return info(t, c, id).Stalls > 0 })
	close(h.gate)
	<-sent
	waitFor(t, "every message handled", func() bool { return info(t, c, id).Handled == n })
	ci := info(t, c, id)
	if ci.Dropped != 0 || ci.Shed != 0 || ci.Sheddings != 0 || ci.Failed != 0 || ci.Overflow != cnactor.Backpressure {
		t.Errorf("stats %+v, want all %d handled, nothing dropped", ci.CallbackStats, n)
	}
	if !h.inOrder(n) {
		t.Error("messages were not handled once each, in order")
	}
	if st := c.Stats(); st.Reader.KernelDrops != 0 {
		t.Errorf("transport drops %d", st.Reader.KernelDrops)
	}
}

// A stalled handler holds the reader for at most its stall timeout; then it
// sheds its own messages (counted, and told in order to a loss observer)
// while the others flow, and rejoins flow control once it has drained.
func TestBackpressureStalledHandlerShedsThenRejoins(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	stuckID, healthyID := transport.CbID{Idx: 0x7801, Val: 1}, transport.CbID{Idx: 0x7801, Val: 2}
	const mailbox, stall = 16, 50 * time.Millisecond
	stuck := conntest.NewGated()
	released := false
	defer func() {
		if !released {
			stuck.Open()
		}
	}()
	if err := c.AddCallback(stuckID, "stuck", stuck, cnactor.WithMailbox(mailbox, cnactor.Backpressure),
		cnactor.WithStallTimeout(stall)); err != nil {
		t.Fatal(err)
	}
	healthy := &handlers.Counter{}
	if err := c.AddCallback(healthyID, "healthy", healthy); err != nil {
		t.Fatal(err)
	}
	sendTo(t, peer, c, stuckID, 0, "first")
	<-stuck.Entered
	const n = 2000
	toStuck := uint64(1)
	for i := range uint32(n) {
		sendTo(t, peer, c, healthyID, i, "ok")
		if i%8 == 0 {
			sendTo(t, peer, c, stuckID, i+1, "more")
			toStuck++
		}
	}
	waitFor(t, "the healthy handler to get everything", func() bool { return info(t, c, healthyID).Handled == n })
	waitFor(t, "every message to the stuck one routed", func() bool { return info(t, c, stuckID).Received == toStuck })
	hs, s := info(t, c, healthyID), info(t, c, stuckID)
	// The healthy one may hold the reader briefly itself (the backlog
	// behind the stuck one's hold arrives at once), but never sheds.
	if hs.Dropped != 0 || hs.Sheddings != 0 {
		t.Errorf("healthy: %+v, want nothing dropped or shed", hs.CallbackStats)
	}
	// 16 fit (the one in progress included); the 17th held the reader
	// for the stall timeout and started the shedding; every later one was
	// shed at once, without holding the reader again.
	if want := toStuck - mailbox; s.Shed != want || s.Dropped != want || s.Queued != mailbox {
		t.Errorf("stuck: %+v, want %d shed and dropped, %d queued", s.CallbackStats, want, mailbox)
	}
	if s.Stalls != 1 || s.Sheddings != 1 || s.Stalled < stall {
		t.Errorf("stuck: %d stalls, %d sheddings, held %v; want 1, 1, at least %v", s.Stalls, s.Sheddings, s.Stalled, stall)
	}

	// Released, it drains; the next message is queued again (it rejoined),
	// and the handler hears of the loss before it.
	stuck.Open()
	released = true
	waitFor(t, "the stuck handler to drain", func() bool { return info(t, c, stuckID).Handled == mailbox })
	sendTo(t, peer, c, stuckID, 9999, "after")
	waitFor(t, "the message after the drain", func() bool { return info(t, c, stuckID).Handled == mailbox+1 })
	s = info(t, c, stuckID)
	if s.Shed != toStuck-mailbox || s.Received != s.Handled+s.Dropped || s.Queued != 0 {
		t.Errorf("after the drain: %+v", s.CallbackStats)
	}
	lost := stuck.MailboxLost()
	if lost != s.Shed {
		t.Errorf("loss notices told %d lost, %d were shed", lost, s.Shed)
	}
}

// drop-newest and drop-oldest stay explicit choices: the reader never
// waits for them.
func TestDropPoliciesNeverHoldTheReader(t *testing.T) {
	t.Parallel()
	for _, o := range []cnactor.Overflow{cnactor.DropNewest, cnactor.DropOldest} {
		c, net := newMemConnector(t)
		peer := dialPeer(t, net)
		id := transport.CbID{Idx: 0x7802, Val: uint32(o)}
		stuck := conntest.NewGated()
		if err := c.AddCallback(id, "stuck", stuck, cnactor.WithMailbox(4, o)); err != nil {
			t.Fatal(err)
		}
		sendTo(t, peer, c, id, 0, "first")
		<-stuck.Entered
		for i := range uint32(100) {
			sendTo(t, peer, c, id, i+1, "more")
		}
		waitFor(t, "every message routed", func() bool { return info(t, c, id).Received == 101 })
		ci := info(t, c, id)
		if ci.Stalls != 0 || ci.Shed != 0 || ci.Dropped != 101-4 {
			t.Errorf("%v: %+v, want 97 dropped, no stall, nothing shed", o, ci.CallbackStats)
		}
		stuck.Open()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		if err := c.Close(ctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
}

// Removing a callback whose full mailbox holds the reader does not wait
// for its stall timeout: the reader lets go, the rest of what it held for
// the callback is counted, and the other callbacks flow again.
func TestBackpressureDelCallbackReleasesTheReader(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	stuckID, healthyID := transport.CbID{Idx: 0x7804, Val: 1}, transport.CbID{Idx: 0x7804, Val: 2}
	stuck := conntest.NewGated()
	defer stuck.Open()
	if err := c.AddCallback(stuckID, "stuck", stuck, cnactor.WithMailbox(2, cnactor.Backpressure),
		cnactor.WithStallTimeout(time.Hour), cnactor.WithShutdownTimeout(10*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	healthy := &handlers.Counter{}
	if err := c.AddCallback(healthyID, "healthy", healthy); err != nil {
		t.Fatal(err)
	}
	sendTo(t, peer, c, stuckID, 0, "first")
	<-stuck.Entered
	sendTo(t, peer, c, stuckID, 1, "fits")
	sendTo(t, peer, c, stuckID, 2, "held")
	waitFor(t, "the reader to be held", func() bool { return info(t, c, stuckID).Stalls == 1 })
	sendTo(t, peer, c, healthyID, 0, "waits behind the held one")
	removed := make(chan error, 1)
	go func() { removed <- c.DelCallback(stuckID) }()
	select {
	case err := <-removed:
		if err != nil && !errors.Is(err, actors.ErrStopTimeout) {
			t.Fatalf("DelCallback: %v", err)
		}
	case <-time.After(time.Minute): // the stall timeout is an hour
		t.Fatal("DelCallback waited for the held reader")
	}
	waitFor(t, "the healthy callback served", func() bool { return healthy.Messages() == 1 })
}
