package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/goleak"
)

// fakeSender records what the requester sends and hands it to the test.
type fakeSender struct {
	mu   sync.Mutex
	seq  uint32
	sent chan sentMsg
	err  error
}

type sentMsg struct {
	to transport.Addr
	m  transport.Message
	at time.Time // when Send was called: gaps are measured here, not where the test reads
}

func newFakeSender() *fakeSender { return &fakeSender{sent: make(chan sentMsg, 8192)} }

func (s *fakeSender) Send(_ context.Context, to transport.Addr, m *transport.Message) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.sent <- sentMsg{to: to, m: *m, at: time.Now()}
	return nil
}

func (s *fakeSender) NextSeq() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

func (s *fakeSender) next(t *testing.T) sentMsg {
	t.Helper()
	select {
	case m := <-s.sent:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was sent")
		return sentMsg{}
	}
}

type reqRig struct {
	r  *Requester
	s  *fakeSender
	sy *actor.ActorSystem
}

func newReqRig(t *testing.T, cfg RequesterConfig) *reqRig {
	t.Helper()
	before := goleak.IgnoreCurrent() // taken now: at cleanup it would ignore the leaks too
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	sy := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	s := newFakeSender()
	cfg.Sender = s
	r := StartRequester(top(sy), cfg)
	t.Cleanup(func() {
		r.Close()
		sy.Shutdown()
	})
	return &reqRig{r: r, s: s, sy: sy}
}

type result struct {
	reply *Reply
	err   error
}

// start runs a Request in the background.
func (g *reqRig) start(ctx context.Context, m transport.Message, to transport.Addr, o RequestOptions) chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := g.r.Request(ctx, to, m, o)
		ch <- result{r, err}
	}()
	return ch
}

func wait(t *testing.T, ch chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("request did not return")
		return result{}
	}
}

func received(m transport.Message, from, group uint32) *transport.Received {
	return &transport.Received{Message: m, From: from, Group: group}
}

var testID = transport.CbID{Idx: 0x100, Val: 1}

func TestRequesterSeqAckMatching(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	if g.r.intercept(received(transport.Message{ID: testID, Seq: 1, Ack: 1}, 7, 0), nop) {
		t.Fatal("Intercept took a message with nothing pending")
	}
	ch := g.start(context.Background(), transport.Message{ID: testID, Data: []byte("ping")}, transport.Addr{Port: 7}, RequestOptions{})
	req := g.s.next(t)
	if req.to.Port != 7 || req.m.Seq != 1 || string(req.m.Data) != "ping" {
		t.Fatalf("sent %+v", req)
	}
	ack := req.m.Ack + 1
	for _, bad := range []*transport.Received{
		received(transport.Message{ID: testID, Seq: req.m.Seq + 1, Ack: ack}, 7, 0),                 // wrong seq
		received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: ack + 1}, 7, 0),                 // wrong ack
		received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack}, 7, 0),               // the request itself
		received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: ack}, 8, 0),                     // wrong port
		received(transport.Message{ID: transport.CbID{Idx: 0x100}, Seq: req.m.Seq, Ack: ack}, 7, 0), // wrong id
	} {
		if g.r.intercept(bad, nop) {
			t.Fatalf("Intercept took %+v from %d as the reply", bad.Message, bad.From)
		}
	}
	buf := []byte("pong")
	// taken counts for the reader, before the caller can see its reply.
	var taken int
	early := false
	count := func() { taken++; early = early || len(ch) > 0 }
	if !g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: ack, Data: buf}, 7, 0), count) {
		t.Fatal("Intercept refused the reply")
	}
	copy(buf, "XXXX") // the batch is reused: the reply must own its data
	res := wait(t, ch)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if string(res.reply.Data) != "pong" || res.reply.From != 7 || res.reply.Attempts != 1 || res.reply.RTT <= 0 {
		t.Fatalf("reply %+v", res.reply)
	}
	dup := received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: ack, Data: buf}, 7, 0)
	if !g.r.intercept(dup, count) || !g.r.intercept(dup, count) {
		t.Fatal("a duplicate reply was not consumed")
	}
	if taken != 3 || early {
		t.Fatalf("taken called %d times (want 3), after the caller woke: %v", taken, early)
	}
	st := g.r.Stats()
	if st.Requests != 1 || st.Replies != 1 || st.Duplicates != 2 || st.InFlight != 0 || st.Late != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRequesterGroupRequestAcceptsAnyMember(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Group: 5}, RequestOptions{})
	req := g.s.next(t)
	if !g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 4242, 0), nop) {
		t.Fatal("reply from a group member refused")
	}
	if res := wait(t, ch); res.err != nil || res.reply.From != 4242 {
		t.Fatalf("%+v", res)
	}
}

func TestRequesterAckOnlyMatching(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	procID := transport.CbID{Idx: 1, Val: 1}
	ch := g.start(context.Background(), transport.Message{ID: procID, Ack: 1000}, transport.Kernel(), RequestOptions{Match: MatchAck})
	req := g.s.next(t)
	if req.m.Ack != 1000 || req.m.Seq == 0 {
		t.Fatalf("sent %+v: the caller's ack must be kept and a seq assigned", req.m)
	}
	if g.r.intercept(received(transport.Message{ID: procID, Seq: 77, Ack: 1001}, 9, 1), nop) {
		t.Fatal("ack-only policy took a message from a user port")
	}
	if g.r.intercept(received(transport.Message{ID: procID, Seq: 77, Ack: 1002}, 0, 1), nop) {
		t.Fatal("ack-only policy took a wrong ack")
	}
	// The kernel overwrites seq: any seq is fine.
	if !g.r.intercept(received(transport.Message{ID: procID, Seq: 77, Ack: 1001}, 0, 1), nop) {
		t.Fatal("ack-only policy refused the kernel's ack")
	}
	if res := wait(t, ch); res.err != nil || res.reply.Seq != 77 || res.reply.Group != 1 {
		t.Fatalf("%+v", res)
	}
	if !g.r.intercept(received(transport.Message{ID: procID, Seq: 78, Ack: 1001}, 0, 1), nop) || g.r.Stats().Duplicates != 1 {
		t.Fatal("a second ack was not counted as a duplicate")
	}
}

func TestRequesterRetriesResendSameSeqAndAck(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7},
		RequestOptions{Timeout: 10 * time.Millisecond, Retries: 3, Backoff: 1.5})
	first := g.s.next(t)
	var gaps []time.Duration
	last := first.at
	for range 3 {
		again := g.s.next(t)
		gaps = append(gaps, again.at.Sub(last))
		last = again.at
		if again.m.Seq != first.m.Seq || again.m.Ack != first.m.Ack || again.to != first.to {
			t.Fatalf("retry %+v differs from the first send %+v", again, first)
		}
	}
	res := wait(t, ch)
	if !errors.Is(res.err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", res.err)
	}
	// Timers never fire early: the third wait is at least 10ms * 1.5 * 1.5
	// (22.5 ms) after the second send, however slow the machine.
	if gaps[2] < 20*time.Millisecond {
		t.Errorf("waits did not back off: %v", gaps)
	}
	st := g.r.Stats()
	if st.Retries != 3 || st.Timeouts != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A reply after the timeout is late, then duplicate; neither dispatched.
	rep := received(transport.Message{ID: testID, Seq: first.m.Seq, Ack: first.m.Ack + 1}, 7, 0)
	if !g.r.intercept(rep, nop) || !g.r.intercept(rep, nop) {
		t.Fatal("late reply not consumed")
	}
	if st := g.r.Stats(); st.Late != 1 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRequesterRetryAnsweredOnSecondAttempt(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7},
		RequestOptions{Timeout: 10 * time.Millisecond, Retries: 5})
	g.s.next(t) // lost
	req := g.s.next(t)
	g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0), nop)
	res := wait(t, ch)
	// The reply answers every attempt (they share seq and ack); on a slow
	// machine a third may have gone out before it: Attempts counts what
	// was sent, at least the two the test saw, no more than were sent.
	sent := 2 + len(g.s.sent)
	if res.err != nil || res.reply.Attempts < 2 || res.reply.Attempts > sent {
		t.Fatalf("%+v %v (%d sent)", res.reply, res.err, sent)
	}
}

func TestRequesterCancellationFreesEntry(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	ch := g.start(ctx, transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
	req := g.s.next(t)
	if n := g.r.Stats().InFlight; n != 1 {
		t.Fatalf("in flight = %d", n)
	}
	cancel()
	res := wait(t, ch)
	if !errors.Is(res.err, context.Canceled) {
		t.Fatalf("err = %v", res.err)
	}
	if st := g.r.Stats(); st.InFlight != 0 || st.Cancelled != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A reply after cancellation is late, not a new message.
	if !g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0), nop) || g.r.Stats().Late != 1 {
		t.Fatal("reply after cancellation not counted late")
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err := g.r.Request(dctx, transport.Addr{Port: 7}, transport.Message{ID: testID}, RequestOptions{Timeout: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestRequesterCloseFailsPending(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	var chs []chan result
	for range 50 {
		chs = append(chs, g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour}))
		g.s.next(t)
	}
	g.r.Close()
	for _, ch := range chs {
		if res := wait(t, ch); !errors.Is(res.err, transport.ErrClosed) || !errors.Is(res.err, net.ErrClosed) {
			t.Fatalf("err = %v", res.err)
		}
	}
	if _, err := g.r.Request(context.Background(), transport.Addr{Port: 7}, transport.Message{ID: testID}, RequestOptions{}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("request after close: %v", err)
	}
	if st := g.r.Stats(); st.InFlight != 0 || st.Failed != 50 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRequesterSendErrorAndPendingKey(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	boom := errors.New("boom")
	g.s.mu.Lock()
	g.s.err = boom
	g.s.mu.Unlock()
	if _, err := g.r.Request(context.Background(), transport.Addr{Port: 7}, transport.Message{ID: testID}, RequestOptions{}); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if st := g.r.Stats(); st.InFlight != 0 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	g.s.mu.Lock()
	g.s.err = nil
	g.s.mu.Unlock()
	m := transport.Message{ID: testID, Seq: 5, Ack: 9}
	ch := g.start(context.Background(), m, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
	g.s.next(t)
	if _, err := g.r.Request(context.Background(), transport.Addr{Port: 7}, m, RequestOptions{}); !errors.Is(err, ErrPending) {
		t.Fatalf("same seq and ack twice: %v", err)
	}
	g.r.intercept(received(transport.Message{ID: testID, Seq: 5, Ack: 10}, 7, 0), nop)
	if res := wait(t, ch); res.err != nil {
		t.Fatal(res.err)
	}
}

func TestRequesterRandomAcks(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	acks := map[uint32]bool{}
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		ch := g.start(ctx, transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
		acks[g.s.next(t).m.Ack] = true
		cancel()
		wait(t, ch)
	}
	if len(acks) < 19 {
		t.Fatalf("acks are not random: %v", acks)
	}
}

func TestRequesterRecentWindowExpires(t *testing.T) {
	g := newReqRig(t, RequesterConfig{DupWindow: 20 * time.Millisecond})
	ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{})
	req := g.s.next(t)
	rep := received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0)
	g.r.intercept(rep, nop)
	wait(t, ch)
	time.Sleep(30 * time.Millisecond)
	if g.r.intercept(rep, nop) {
		t.Fatal("a reply after the window was still taken as a duplicate")
	}
	if g.r.active.Load() != 0 || idRefsTotal(g.r) != 0 {
		t.Fatalf("the recent set was not emptied (id buckets hold %d)", idRefsTotal(g.r))
	}
}

// idRefsTotal sums the per-id-bucket counts, which must equal the pending
// and remembered exchanges.
func idRefsTotal(r *Requester) int32 {
	var n int32
	for i := range r.idRefs {
		n += r.idRefs[i].Load()
	}
	return n
}

func TestRequesterDupCapacity(t *testing.T) {
	g := newReqRig(t, RequesterConfig{DupCapacity: 4})
	var reps []*transport.Received
	for range 6 {
		ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{})
		req := g.s.next(t)
		rep := received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0)
		g.r.intercept(rep, nop)
		wait(t, ch)
		reps = append(reps, rep)
	}
	if g.r.intercept(reps[0], nop) || g.r.intercept(reps[1], nop) {
		t.Fatal("the oldest finished exchanges were not evicted")
	}
	if !g.r.intercept(reps[5], nop) {
		t.Fatal("the newest finished exchange was evicted")
	}
	if n := idRefsTotal(g.r); n != 4 {
		t.Fatalf("id buckets count %d exchanges, want the 4 remembered", n)
	}
	other := received(transport.Message{ID: transport.CbID{Idx: testID.Idx + 1, Val: 9}}, 7, 0)
	if g.r.intercept(other, nop) {
		t.Fatal("a message for another id was taken")
	}
}

func TestRequesterInterceptIdleDoesNotAllocate(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	m := received(transport.Message{ID: testID, Seq: 1, Ack: 2}, 7, 0)
	if n := testing.AllocsPerRun(1000, func() { g.r.intercept(m, nop) }); n != 0 {
		t.Fatalf("%v allocations per idle Intercept", n)
	}
}

func TestRequesterManyTimeoutsOneTimer(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := g.r.Request(context.Background(), transport.Addr{Port: 7}, transport.Message{ID: testID},
				RequestOptions{Timeout: time.Duration(5+i%20) * time.Millisecond})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
	}
	if st := g.r.Stats(); st.Timeouts != n || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Answered exchanges must not pile up behind a long timeout: every new
// deadline is later than the timer's, and each one pending in the timer's
// queue holds its exchange. Bounded by armsCompact and the heap's own
// compaction, not by rate x timeout.
func TestRequesterAnsweredExchangesNotKeptUntilTimeout(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	const n = 8 * armsCompact
	for range n {
		ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
		req := g.s.next(t)
		if !g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0), nop) {
			t.Fatal("reply refused")
		}
		if res := wait(t, ch); res.err != nil {
			t.Fatal(res.err)
		}
	}
	// The actor sorts the deadlines out asynchronously: give it time to
	// catch up (a busy machine may delay it), then stop it so that its
	// heap can be read.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		g.r.mu.Lock()
		queued := len(g.r.arms)
		g.r.mu.Unlock()
		if queued < armsCompact || time.Now().After(deadline) {
			break
		}
	}
	g.r.Close()
	g.r.mu.Lock()
	held := len(g.r.arms) + len(g.r.heap)
	g.r.mu.Unlock()
	if held > 3*armsCompact {
		t.Fatalf("%d timer entries (and their exchanges) held after %d answered requests", held, n)
	}
}

// An exchange that reuses the seq and ack of one just answered, and is
// cancelled, is remembered as its own: its late reply is counted, not
// dispatched. The new exchange starts and ends inside the taken hook,
// while intercept is still handing over the first one's reply (a
// remember deferred past that point once overwrote the second's entry).
func TestRequesterReusedKeyCancelledWhileReplyHandedOver(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	m := transport.Message{ID: testID, Seq: 5, Ack: 10}
	first := g.start(context.Background(), m, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
	g.s.next(t)
	var second result
	hook := func() {
		ctx, cancel := context.WithCancel(context.Background())
		ch := g.start(ctx, m, transport.Addr{Port: 8}, RequestOptions{Timeout: time.Hour})
		g.s.next(t)
		cancel()
		second = wait(t, ch)
	}
	if !g.r.intercept(received(transport.Message{ID: testID, Seq: 5, Ack: 11}, 7, 0), hook) {
		t.Fatal("reply to the first exchange refused")
	}
	if res := wait(t, first); res.err != nil {
		t.Fatal(res.err)
	}
	if !errors.Is(second.err, context.Canceled) {
		t.Fatalf("second exchange: %v, want context.Canceled", second.err)
	}
	if !g.r.intercept(received(transport.Message{ID: testID, Seq: 5, Ack: 11}, 8, 0), nop) {
		t.Fatal("the cancelled exchange's late reply was not recognised: it would reach a handler")
	}
	if st := g.r.Stats(); st.Late != 1 || st.Cancelled != 1 || st.Replies != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// nop is the taken hook of tests that do not look at the reader's count.
func nop() {}

// The recent set against a model, over random remembers and prunes with a
// clock that mostly moves forward and sometimes a little back (now is read
// before the lock): the per-bucket counts intercept's fast path reads equal
// the entries held, the set holds at most DupCapacity rounded up to even,
// a key remembered within the last half capacity is found until its window
// passes, and what is found is the latest entry, never an expired one.
func TestRequesterRecentSetModel(t *testing.T) {
	seeds := uint64(100)
	if testutil.RaceEnabled {
		seeds = 25
	}
	for _, capacity := range []int{1, 2, 3, 7, 64} {
		for seed := range seeds {
			rng := rand.New(rand.NewPCG(seed, uint64(capacity)))
			r := &Requester{cfg: RequesterConfig{DupCapacity: capacity}, window: 100}
			type remembered struct {
				expires int64
				order   int
			}
			model := map[matchKey]remembered{}
			order, now, latest, seq := 0, int64(1000), int64(0), uint32(0)
			for step := range 400 {
				now += int64(rng.IntN(30)) - 2
				latest = max(latest, now)
				// Keys as a Connector numbers them (consecutive seqs),
				// as callers may (a few seqs, reused), and MatchAck's.
				k := matchKey{id: transport.CbID{Idx: uint32(rng.IntN(4)), Val: uint32(rng.IntN(3))}, seq: uint32(rng.IntN(12))}
				switch rng.IntN(3) {
				case 0:
					seq++
					k.seq = seq
				case 1:
					k = matchKey{id: k.id, ack: uint32(rng.IntN(600)), ackOnly: 1}
				}
				if rng.IntN(3) < 2 {
					r.rememberLocked(k, sender{port: 1}, false, now)
					order++
					model[k] = remembered{now + r.window, order}
				} else {
					r.pruneLocked(now)
					// Expired entries do not stay: no generation whose
					// latest expiry has passed is kept.
					for _, g := range r.recent.gens {
						if g.n > 0 && g.newest <= now {
							t.Fatalf("capacity %d seed %d step %d: %d expired entries kept after a prune", capacity, seed, step, g.n)
						}
					}
				}
				checkRecentSet(t, r, capacity, func() string { return fmt.Sprintf("capacity %d seed %d step %d", capacity, seed, step) })
				for k, m := range model {
					if m.expires < now-200 { // long gone: the clock never goes back that far
						delete(model, k)
						continue
					}
					e, ok := r.recent.find(k, now)
					if ok && e.expires != m.expires {
						t.Fatalf("capacity %d seed %d step %d: found an entry expiring at %d, want the latest, %d", capacity, seed, step, e.expires, m.expires)
					}
					// Windows pass by the latest clock reading.
					if !ok && m.expires > latest && order-m.order < (capacity+1)/2 {
						t.Fatalf("capacity %d seed %d step %d: a key remembered %d remembers ago was forgotten before its window passed", capacity, seed, step, order-m.order)
					}
				}
			}
		}
	}
}

// A capacity too large to round up still means "keep them all".
func TestRequesterRecentSetHugeCapacity(t *testing.T) {
	r := &Requester{cfg: RequesterConfig{DupCapacity: math.MaxInt}, window: 100}
	for i := range uint32(10) {
		r.rememberLocked(matchKey{seq: i}, sender{port: 1}, false, 1)
	}
	for i := range uint32(10) {
		if _, ok := r.recent.find(matchKey{seq: i}, 2); !ok {
			t.Fatalf("key %d of 10 forgotten with an unbounded capacity", i)
		}
	}
}

// Exchanges are pooled: a deadline armed for one use of an exchange must
// not touch its next use. Each round, request A is answered at once while
// its 20 ms deadline stays in the timer (A may retry, on a slow machine,
// and still gets its reply); request B, from the same goroutine (so most
// likely on A's exchange), waits for a reply that never comes and must
// neither be retried nor time out when A's deadlines pass, but end with
// its context at 150 ms.
func TestRequesterReusedExchangeIgnoresOldDeadlines(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	var bSends atomic.Int32
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-stopped }()
	go func() {
		defer close(stopped)
		for {
			select {
			case s := <-g.s.sent:
				if string(s.m.Data) == "A" {
					g.r.intercept(received(transport.Message{ID: testID, Seq: s.m.Seq, Ack: s.m.Ack + 1}, 7, 0), nop)
				} else {
					bSends.Add(1)
				}
			case <-stop:
				return
			}
		}
	}()
	to := transport.Addr{Port: 7}
	for round := range 4 {
		if _, err := g.r.Request(context.Background(), to, transport.Message{ID: testID, Data: []byte("A")}, RequestOptions{Timeout: 20 * time.Millisecond, Retries: 4, Backoff: 1}); err != nil {
			t.Fatalf("round %d: A: %v", round, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		_, err := g.r.Request(ctx, to, transport.Message{ID: testID, Data: []byte("B")}, RequestOptions{Timeout: time.Hour, Retries: 1})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: B ended with %v, want its context's deadline", round, err)
		}
		if n := bSends.Load(); n != int32(round+1) {
			t.Fatalf("round %d: B sent %d times in all, want %d (retried on A's deadline)", round, n, round+1)
		}
	}
}

// A panic while a reply is handed over (a bug; here injected through the
// reader's counting hook, which runs after the exchange was ended and
// before its caller is woken) must not leave the caller waiting for ever:
// the timer and Close pass over ended exchanges. The caller gets an
// error, the exchange counts as failed, and the panic goes on to the
// reader, which recovers it.
func TestRequesterPanicWhileHandingOverFailsTheCaller(t *testing.T) {
	g := newReqRig(t, RequesterConfig{})
	ch := g.start(context.Background(), transport.Message{ID: testID}, transport.Addr{Port: 7}, RequestOptions{Timeout: time.Hour})
	req := g.s.next(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the reader")
			}
		}()
		g.r.intercept(received(transport.Message{ID: testID, Seq: req.m.Seq, Ack: req.m.Ack + 1}, 7, 0), func() { panic("injected") })
	}()
	res := wait(t, ch)
	if res.err == nil || !strings.Contains(res.err.Error(), "matching its reply failed: injected") {
		t.Fatalf("request ended with %v, %v; want the matching failure", res.reply, res.err)
	}
	if st := g.r.Stats(); st.Failed != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}
