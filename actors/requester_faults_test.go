package actors

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/faulty"
	"github.com/cnactor/cnactor/transport/memory"
)

// connSender sends requests through a (faulty) socket.
type connSender struct {
	c   transport.Conn
	seq atomic.Uint32
}

func (s *connSender) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	return s.c.Send(ctx, to, m)
}
func (s *connSender) NextSeq() uint32 { return s.seq.Add(1) }

// faultyRequester is a requester sending through a faulty socket to a peer
// that never answers by itself.
func faultyRequester(t *testing.T, faults ...faulty.Fault) (*Requester, *faulty.Conn, *memory.Conn) {
	t.Helper()
	net := memory.NewNetwork()
	inner, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	conn := faulty.Wrap(inner, faults...)
	sys := newSystem(t)
	r := StartRequester(top(sys), RequesterConfig{Sender: &connSender{c: conn}})
	t.Cleanup(func() { r.Close(); conn.Close(); peer.Close() })
	return r, conn, peer
}

// A resend that fails ends the exchange with the send error, counted as
// failed, not as a timeout; nothing stays in flight. It is one retry also
// when it fails slowly, after its own wait (2 ms after the backoff) has run
// out: that wait resends nothing (once counted a second retry).
func TestRequestResendFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"at once", 0}, {"after its wait", 50 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, conn, peer := faultyRequester(t, faulty.Fault{Op: faulty.Send, After: 1, Delay: tc.delay, Err: syscall.EPERM})
			// The first wait is short: the test needs the retry, not a reply.
			_, err := r.Request(context.Background(), transport.Addr{Port: peer.Port()}, transport.Message{ID: testID},
				RequestOptions{Timeout: timerResolution, Retries: 3})
			if !errors.Is(err, syscall.EPERM) {
				t.Fatalf("request = %v, want the resend's EPERM", err)
			}
			if n := conn.Calls(faulty.Send); n != 2 {
				t.Fatalf("%d sends, want the first and the failed resend", n)
			}
			s := r.Stats()
			if s.Failed != 1 || s.Timeouts != 0 || s.InFlight != 0 || s.Requests != 1 || s.Retries != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A reply that arrives while the request's send is still under way, and
// a context cancelled meanwhile, race the send's failure: the reply won
// (it ended the exchange first), so it is what Request returns, whichever
// of the send error and the context the caller sees first.
func TestRequestReplyBeatsCancelAndSendFailure(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	r, conn, peer := faultyRequester(t, faulty.Fault{Op: faulty.Send, Times: 1, Wait: gate, Err: syscall.EIO})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := transport.Message{ID: testID, Seq: 7, Ack: 100, Data: []byte("ping")}
	done := make(chan result, 1)
	go func() {
		rep, err := r.Request(ctx, transport.Addr{Port: peer.Port()}, req, RequestOptions{Timeout: testWaitLong})
		done <- result{rep, err}
	}()
	// The exchange is registered before its send, which now hangs.
	waitFor(t, "the send to hang", func() bool { return conn.Injected(faulty.Send) == 1 })
	reply := received(transport.Message{ID: testID, Seq: 7, Ack: 101, Data: []byte("pong")}, peer.Port(), 0)
	var taken int
	if !r.intercept(reply, func() { taken++ }) || taken != 1 {
		t.Fatal("the reply was not taken")
	}
	cancel()
	close(gate) // the send fails (EIO, or the context)
	res := <-done
	if res.err != nil || string(res.reply.Data) != "pong" || res.reply.Attempts != 1 {
		t.Fatalf("request = %+v, %v; want the reply", res.reply, res.err)
	}
	if s := r.Stats(); s.Replies != 1 || s.Cancelled != 0 || s.Failed != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A request whose send fails with its context already done counts as
// cancelled and returns the send error, which wraps the context's.
func TestRequestSendFailsOnCancel(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{}) // never opened: only the context ends the wait
	r, conn, peer := faultyRequester(t, faulty.Fault{Op: faulty.Send, Times: 1, Wait: gate})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.Request(ctx, transport.Addr{Port: peer.Port()}, transport.Message{ID: testID}, RequestOptions{Timeout: testWaitLong})
		done <- err
	}()
	waitFor(t, "the send to hang", func() bool { return conn.Injected(faulty.Send) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("request = %v, want canceled", err)
	}
	if s := r.Stats(); s.Cancelled != 1 || s.Failed != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// testWaitLong is a wait no test expects to run out.
const testWaitLong = 1 << 40
