package actors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/spawn"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	s := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(s.Shutdown)
	return s
}

// top spawns at the actor system's root, as the connector spawns the
// reader and the requester.
func top(s *actor.ActorSystem) spawn.Parent { return spawn.Parent{Ctx: s.Root} }

var waitFor = testutil.WaitFor

func checkInvariant(t *testing.T, when string, s CallbackStats) {
	t.Helper()
	if s.Received != s.Handled+s.Failed+s.Dropped+s.Queued {
		t.Errorf("%s: Received %d != Handled %d + Failed %d + Dropped %d + Queued %d",
			when, s.Received, s.Handled, s.Failed, s.Dropped, s.Queued)
	}
}

// scripted is a handler that records the seqs it sees, blocks while its
// gate is closed, fails seqs divisible by 5 and panics on the seqs in
// panics.
type scripted struct {
	mu      sync.Mutex
	seen    []uint32
	entered chan uint32
	gate    chan struct{}
	panics  map[uint32]bool
}

func (s *scripted) Receive(_ handlers.Context, m *transport.Message) error {
	s.mu.Lock()
	s.seen = append(s.seen, m.Seq)
	s.mu.Unlock()
	select {
	case s.entered <- m.Seq:
	default:
	}
	<-s.gate
	if s.panics[m.Seq] {
		panic("scripted panic")
	}
	if m.Seq%5 == 0 {
		return errors.New("scripted failure")
	}
	return nil
}

func (s *scripted) seenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// For a callback, Received = Handled + Failed + Dropped + Queued holds at
// every moment, and once drained every message is accounted exactly: each
// one the handler saw is Handled or Failed, the rest Dropped.
func TestHandlerAccounting(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	h := &scripted{entered: make(chan uint32, 1), gate: make(chan struct{}), panics: map[uint32]bool{7: true, 113: true}}
	ref, err := SpawnHandler(top(sys), HandlerSpec{
		ID: transport.CbID{Idx: 0x5100, Val: 1}, Name: "accounting", Handler: h,
		MailboxSize: 8, Overflow: DropNewest,
	})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(seq uint32) {
		ref.deliver(&transport.Received{Message: transport.Message{ID: ref.Spec().ID, Seq: seq, Data: []byte("x")}})
	}

	// Phase 1: the handler is stuck in seq 0; 8 fit (the one in progress
	// included), the rest are dropped.
	deliver(0)
	if seq := <-h.entered; seq != 0 {
		t.Fatalf("handler entered seq %d first", seq)
	}
	for seq := uint32(1); seq < 100; seq++ {
		deliver(seq)
	}
	s := ref.Stats()
	checkInvariant(t, "stuck", s)
	if s.Received != 100 || s.Dropped != 92 || s.Queued != 8 || s.Handled+s.Failed != 0 {
		t.Errorf("stuck: %+v, want 100 received, 92 dropped, 8 queued (7 waiting, 1 in progress)", s)
	}

	// Phase 2: unblocked, with traffic and concurrent readers of the stats.
	close(h.gate)
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := ref.Stats()
			if s.Handled+s.Failed+s.Dropped > s.Received {
				t.Errorf("snapshot with more outcomes than arrivals: %+v", s)
				return
			}
		}
	}()
	for seq := uint32(100); seq < 3000; seq++ {
		deliver(seq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ref.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	watcher.Wait()

	s = ref.Stats()
	checkInvariant(t, "drained", s)
	seen := uint64(h.seenCount())
	if s.Received != 3000 || s.Queued != 0 {
		t.Errorf("drained: %+v, want 3000 received, none queued", s)
	}
	if s.Handled+s.Failed != seen || s.Dropped != 3000-seen {
		t.Errorf("drained: %+v, but the handler saw %d messages", s, seen)
	}
	var wantFailed uint64
	h.mu.Lock()
	for _, seq := range h.seen {
		if seq%5 == 0 || h.panics[seq] {
			wantFailed++
		}
	}
	h.mu.Unlock()
	if s.Failed != wantFailed {
		t.Errorf("Failed = %d, want %d (errors and panics among the seqs handled)", s.Failed, wantFailed)
	}

	if err := ref.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkInvariant(t, "stopped", ref.Stats())
}

// Stop with a handler stuck in Receive times out, counts what was queued as
// dropped, and the actor still stops once Receive returns.
func TestHandlerStopTimeout(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	h := &scripted{entered: make(chan uint32, 1), gate: make(chan struct{})}
	ref, err := SpawnHandler(top(sys), HandlerSpec{
		ID: transport.CbID{Idx: 0x5100, Val: 2}, Name: "stuck", Handler: h, MailboxSize: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint32(1); seq <= 5; seq++ {
		ref.deliver(&transport.Received{Message: transport.Message{Seq: seq}})
		if seq == 1 {
			<-h.entered
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := ref.Stop(ctx); !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Stop = %v, want ErrStopTimeout", err)
	}
	if s := ref.Stats(); s.Dropped != 4 || s.Queued != 1 {
		t.Errorf("after the timeout: %+v, want 4 dropped and 1 in progress", s)
	}
	close(h.gate)
	select {
	case <-ref.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("actor did not stop after Receive returned")
	}
	s := ref.Stats()
	checkInvariant(t, "stopped", s)
	if s.Received != 5 || s.Handled != 1 || s.Dropped != 4 || s.Queued != 0 {
		t.Errorf("stopped: %+v, want 5 = 1 handled + 4 dropped", s)
	}
}

// Without a Sender, Reply and Send fail with an error; they must not panic.
func TestHandlerWithoutSender(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	errs := make(chan [2]error, 1)
	h := handlers.HandlerFunc(func(ctx handlers.Context, m *transport.Message) error {
		var got [2]error
		got[0] = ctx.Reply([]byte("r"))
		got[1] = ctx.Send(transport.Addr{Port: 1}, &transport.Message{ID: m.ID})
		errs <- got
		return nil
	})
	ref, err := SpawnHandler(top(sys), HandlerSpec{ID: transport.CbID{Idx: 0x5100, Val: 3}, Name: "mute", Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ref.deliver(&transport.Received{Message: transport.Message{ID: ref.Spec().ID, Seq: 1}})
	select {
	case got := <-errs:
		if got[0] == nil || got[1] == nil {
			t.Errorf("Reply: %v, Send: %v; want errors", got[0], got[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not finish: Send without a Sender panicked")
	}
	waitFor(t, "handled", func() bool { return ref.Stats().Handled == 1 })
	if s := ref.Stats(); s.Failed != 0 {
		t.Errorf("%+v", s)
	}
}
