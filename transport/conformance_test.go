package transport_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// The conformance suite runs one table of behaviours against every
// transport.Conn implementation: the in-memory network must do what the
// kernel does.

// dialOpts are the few socket settings the behaviours vary.
type dialOpts struct {
	small       bool          // a receive queue that overflows after a handful of datagrams
	sendTimeout time.Duration // 0: the default
}

// env is one transport, fresh for each behaviour.
type env struct {
	// dial opens a Conn that is closed when the test ends.
	dial func(t *testing.T, o dialOpts) transport.Conn
	// group reserves a multicast group for the test.
	group func(t *testing.T) uint32
}

type implementation struct {
	name  string
	setup func(t *testing.T) *env // may skip the test
}

// implementations lists the transports under test; the netlink one is
// added on Linux by conformance_linux_test.go.
var implementations = []implementation{{name: "memory", setup: memoryEnv}}

func memoryEnv(t *testing.T) *env {
	n := memory.NewNetwork()
	return &env{
		dial: func(t *testing.T, o dialOpts) transport.Conn {
			t.Helper()
			var opts []memory.DialOption
			if o.small {
				opts = append(opts, memory.WithQueueLen(8))
			}
			if o.sendTimeout > 0 {
				opts = append(opts, memory.WithSendTimeout(o.sendTimeout))
			}
			c, err := n.Dial(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
		group: func(*testing.T) uint32 { return 5 }, // the network is the test's own
	}
}

var behaviours = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"Unicast", testUnicast},
	{"MulticastReachesEveryMember", testMulticastReachesEveryMember},
	{"MulticastWithPort", testMulticastWithPort},
	{"MulticastWithFullPort", testMulticastWithFullPort},
	{"NoDeliveryAfterLeave", testNoDeliveryAfterLeave},
	{"InvalidGroup", testInvalidGroup},
	{"UnknownPortRefused", testUnknownPortRefused},
	{"SendToKernel", testSendToKernel},
	{"MulticastOverflowCounted", testMulticastOverflowCounted},
	{"UnicastWaitsForRoom", testUnicastWaitsForRoom},
	{"UnicastSendTimeout", testUnicastSendTimeout},
	{"CancelUnblocksReceive", testCancelUnblocksReceive},
	{"ReadDeadline", testReadDeadline},
	{"TryReceive", testTryReceive},
	{"CloseUnblocksReceive", testCloseUnblocksReceive},
	{"UseAfterClose", testUseAfterClose},
	{"Oversize", testOversize},
	{"MaxPayload", testMaxPayload},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) {
					t.Parallel()
					b.run(t, impl.setup(t))
				})
			}
		})
	}
}

var confID = transport.CbID{Idx: 0xc0f0, Val: 0x1e57} // no kernel user

// collect receives on c, keeping copies of the messages From port from,
// until done says so or wait passes. It returns them with the sum of Lost.
func collect(t *testing.T, c transport.Conn, from uint32, wait time.Duration, done func(n int, lost uint64) bool) ([]transport.Received, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var got []transport.Received
	var lost uint64
	b := transport.NewBatch(0)
	for done == nil || !done(len(got), lost) {
		if err := c.ReceiveBatch(ctx, b); err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Fatalf("receive on port %d: %v", c.Port(), err)
		}
		lost += b.Lost
		for _, m := range b.Messages {
			if m.From == from {
				m.Data = bytes.Clone(m.Data)
				got = append(got, m)
			}
		}
	}
	return got, lost
}

// want receives until n messages from port from arrived, failing after a
// few seconds.
func want(t *testing.T, c transport.Conn, from uint32, n int) []transport.Received {
	t.Helper()
	got, lost := collect(t, c, from, 3*time.Second, func(k int, _ uint64) bool { return k >= n })
	if len(got) != n || lost != 0 {
		t.Fatalf("port %d: got %d messages from %d (lost %d), want %d", c.Port(), len(got), from, lost, n)
	}
	return got
}

// none checks that nothing from port from arrives at c for 200ms.
func none(t *testing.T, c transport.Conn, from uint32) {
	t.Helper()
	if got, _ := collect(t, c, from, 200*time.Millisecond, nil); len(got) != 0 {
		t.Fatalf("port %d: got %d messages from %d, want none: %+v", c.Port(), len(got), from, got)
	}
}

func send(t *testing.T, c transport.Conn, to transport.Addr, m *transport.Message) {
	t.Helper()
	if err := c.Send(context.Background(), to, m); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
}

func testUnicast(t *testing.T, e *env) {
	a, b := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	m := &transport.Message{ID: confID, Seq: 0xfeed, Ack: 0xbeef, Flags: 0x8001, Data: []byte("hello, connector")}
	send(t, a, transport.Addr{Port: b.Port()}, m)
	got := want(t, b, a.Port(), 1)[0]
	if got.ID != m.ID || got.Seq != m.Seq || got.Ack != m.Ack || got.Flags != m.Flags || !bytes.Equal(got.Data, m.Data) {
		t.Errorf("got %+v, want %+v", got.Message, *m)
	}
	creds := transport.Credentials{PID: uint32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if got.Group != 0 || got.Creds != creds {
		t.Errorf("got group %d creds %+v, want 0 and %+v", got.Group, got.Creds, creds)
	}
}

// A multicast reaches every member once, and not its sender even when the
// sender is a member (checked against the kernel: it does not loop back).
func testMulticastReachesEveryMember(t *testing.T, e *env) {
	g := e.group(t)
	s, r1, r2 := e.dial(t, dialOpts{}), e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	for _, c := range []transport.Conn{s, r1, r2} {
		if err := c.JoinGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	send(t, s, transport.Addr{Group: g}, &transport.Message{ID: confID, Seq: 1, Data: []byte("all")})
	for _, r := range []transport.Conn{r1, r2} {
		got := want(t, r, s.Port(), 1)[0]
		if got.Group != g || got.Seq != 1 || string(got.Data) != "all" {
			t.Errorf("port %d got %+v, want seq 1 to group %d", r.Port(), got, g)
		}
	}
	none(t, s, s.Port())
}

// With both Port and Group set, the kernel multicasts and then unicasts to
// Port; the unicast copy is reported with the group too.
func testMulticastWithPort(t *testing.T, e *env) {
	g := e.group(t)
	s, member, port := e.dial(t, dialOpts{}), e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	if err := member.JoinGroup(g); err != nil {
		t.Fatal(err)
	}
	send(t, s, transport.Addr{Port: port.Port(), Group: g}, &transport.Message{ID: confID, Seq: 2})
	for _, r := range []transport.Conn{member, port} {
		if got := want(t, r, s.Port(), 1)[0]; got.Group != g {
			t.Errorf("port %d: group %d, want %d", r.Port(), got.Group, g)
		}
	}
}

// With both Port and Group set and Port's queue full, Send fails at once
// with EAGAIN: the multicast went out once, and is not repeated.
func testMulticastWithFullPort(t *testing.T, e *env) {
	g := e.group(t)
	s := e.dial(t, dialOpts{sendTimeout: time.Minute})
	member, port := e.dial(t, dialOpts{}), e.dial(t, dialOpts{small: true})
	if err := member.JoinGroup(g); err != nil {
		t.Fatal(err)
	}
	to := transport.Addr{Port: port.Port(), Group: g}
	var err error
	sent := 0
	for ; err == nil && sent < 100; sent++ {
		err = s.Send(context.Background(), to, &transport.Message{ID: confID, Seq: uint32(sent)})
	}
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("send %d with a full port: %v, want EAGAIN", sent, err)
	}
	got := want(t, member, s.Port(), sent) // the failed send's multicast too
	none(t, member, s.Port())
	if got[sent-1].Seq != uint32(sent-1) {
		t.Errorf("last multicast has seq %d, want %d", got[sent-1].Seq, sent-1)
	}
	if d, err := port.Drops(); d != 0 || err != nil {
		t.Errorf("port drops %d (%v), want 0: a user's unicast is refused, not dropped", d, err)
	}
}

func testNoDeliveryAfterLeave(t *testing.T, e *env) {
	g := e.group(t)
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	if err := r.JoinGroup(g); err != nil {
		t.Fatal(err)
	}
	send(t, s, transport.Addr{Group: g}, &transport.Message{ID: confID, Seq: 1})
	want(t, r, s.Port(), 1)
	if err := r.LeaveGroup(g); err != nil {
		t.Fatal(err)
	}
	send(t, s, transport.Addr{Group: g}, &transport.Message{ID: confID, Seq: 2})
	none(t, r, s.Port())
}

func testInvalidGroup(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	for _, g := range []uint32{0, transport.MaxGroup + 1} {
		if err := c.JoinGroup(g); !errors.Is(err, transport.ErrInvalidGroup) {
			t.Errorf("join %d: %v, want ErrInvalidGroup", g, err)
		}
		if err := c.LeaveGroup(g); !errors.Is(err, transport.ErrInvalidGroup) {
			t.Errorf("leave %d: %v, want ErrInvalidGroup", g, err)
		}
	}
	err := c.Send(context.Background(), transport.Addr{Group: transport.MaxGroup + 1}, &transport.Message{ID: confID})
	if !errors.Is(err, transport.ErrInvalidGroup) {
		t.Errorf("send to group 33: %v, want ErrInvalidGroup", err)
	}
}

func testUnknownPortRefused(t *testing.T, e *env) {
	s := e.dial(t, dialOpts{})
	// The kernel gives a process's first socket the pid as its port and may
	// hand it out again at once; other ports are picked at random.
	gone := e.dial(t, dialOpts{})
	for gone.Port() == uint32(os.Getpid()) {
		gone = e.dial(t, dialOpts{})
	}
	gone.Close()
	err := s.Send(context.Background(), transport.Addr{Port: gone.Port()}, &transport.Message{ID: confID})
	var op *transport.OpError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &op) {
		t.Errorf("send to a closed port: %v, want an OpError wrapping ECONNREFUSED", err)
	}
}

// Sending to the kernel needs no listener: an unknown id is dropped silently.
func testSendToKernel(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	if err := c.Send(context.Background(), transport.Kernel(), &transport.Message{ID: confID, Data: []byte("x")}); err != nil {
		t.Fatalf("send to the kernel: %v", err)
	}
	none(t, c, 0)
}

// A receiver that cannot keep up loses multicasts, and every loss is
// accounted for: received + lost == sent, exactly, and Drops agrees.
func testMulticastOverflowCounted(t *testing.T, e *env) {
	const sent = 200
	g := e.group(t)
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{small: true})
	if err := r.JoinGroup(g); err != nil {
		t.Fatal(err)
	}
	for i := range uint32(sent) {
		send(t, s, transport.Addr{Group: g}, &transport.Message{ID: confID, Seq: i, Data: make([]byte, 64)})
	}
	got, lost := collect(t, r, s.Port(), 3*time.Second, func(n int, lost uint64) bool { return uint64(n)+lost >= sent })
	drops, err := r.Drops()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("received %d, lost %d, drops %d", len(got), lost, drops)
	if uint64(len(got))+lost != sent || lost == 0 || drops != lost {
		t.Errorf("received %d + lost %d != sent %d, or no loss, or drops %d != lost", len(got), lost, sent, drops)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("out of order: seq %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
}

// Unicast never overflows: the sender waits for the receiver to read.
func testUnicastWaitsForRoom(t *testing.T, e *env) {
	const sent = 100
	s, r := e.dial(t, dialOpts{}), e.dial(t, dialOpts{small: true})
	errc := make(chan error, 1)
	go func() {
		for i := range uint32(sent) {
			if err := s.Send(context.Background(), transport.Addr{Port: r.Port()}, &transport.Message{ID: confID, Seq: i, Data: make([]byte, 64)}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	time.Sleep(50 * time.Millisecond) // let the queue fill
	got, lost := collect(t, r, s.Port(), 3*time.Second, func(n int, lost uint64) bool { return uint64(n)+lost >= sent })
	if err := <-errc; err != nil {
		t.Fatalf("send: %v", err)
	}
	if len(got) != sent || lost != 0 {
		t.Fatalf("received %d, lost %d; want %d and no loss", len(got), lost, sent)
	}
	for i, m := range got {
		if m.Seq != uint32(i) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	if d, err := r.Drops(); d != 0 || err != nil {
		t.Errorf("drops %d (%v), want 0", d, err)
	}
}

func testUnicastSendTimeout(t *testing.T, e *env) {
	s, r := e.dial(t, dialOpts{sendTimeout: 50 * time.Millisecond}), e.dial(t, dialOpts{small: true})
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		err = s.Send(context.Background(), transport.Addr{Port: r.Port()}, &transport.Message{ID: confID, Data: make([]byte, 64)})
	}
	var op *transport.OpError
	if !errors.Is(err, transport.ErrSendTimeout) || !errors.As(err, &op) || !op.Timeout() {
		t.Fatalf("send into a full queue: %v, want a timeout OpError wrapping ErrSendTimeout", err)
	}
}

// receiveAsync starts ReceiveBatch on c, ignoring stray batches (the
// machine is not quiet), and reports the first error.
func receiveAsync(ctx context.Context, c transport.Conn) <-chan error {
	errc := make(chan error, 1)
	go func() {
		b := transport.NewBatch(0)
		for {
			if err := c.ReceiveBatch(ctx, b); err != nil {
				errc <- err
				return
			}
		}
	}()
	return errc
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(3 * time.Second):
		t.Fatal("ReceiveBatch still blocked")
		return nil
	}
}

// testReadDeadline: a deadline ends a blocked receive, setting one wakes a
// pending receive, a passed one fails at once, and zero clears it.
func testReadDeadline(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	b := transport.NewBatch(4)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	err := c.ReceiveBatch(context.Background(), b)
	var op *transport.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &op) || !op.Timeout() {
		t.Fatalf("receive past its deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	errc := receiveAsync(context.Background(), c)
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0)) // wakes the pending receive
	if err := waitErr(t, errc); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("receive woken by a passed deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	s := e.dial(t, dialOpts{})
	send(t, s, transport.Addr{Port: c.Port()}, &transport.Message{ID: confID})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ReceiveBatch(ctx, b); err != nil || len(b.Messages) != 1 {
		t.Fatalf("receive after clearing the deadline: %v, %d messages", err, len(b.Messages))
	}
}

// testTryReceive: a non-blocking receive reports an empty queue as false
// and returns what is queued otherwise.
func testTryReceive(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	b := transport.NewBatch(4)
	if got, err := c.TryReceiveBatch(b); got || err != nil {
		t.Fatalf("empty queue: got %v, %v", got, err)
	}
	s := e.dial(t, dialOpts{})
	for i := range 6 {
		send(t, s, transport.Addr{Port: c.Port()}, &transport.Message{ID: confID, Seq: uint32(i)})
	}
	var seqs []uint32
	deadline := time.Now().Add(5 * time.Second)
	for len(seqs) < 6 && time.Now().Before(deadline) {
		got, err := c.TryReceiveBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if got && len(b.Messages) > 4 {
			t.Fatalf("%d messages in a batch of 4", len(b.Messages))
		}
		for _, m := range b.Messages {
			seqs = append(seqs, m.Seq)
		}
	}
	if len(seqs) != 6 || seqs[0] != 0 || seqs[5] != 5 {
		t.Fatalf("non-blocking receives got %v", seqs)
	}
	if got, _ := c.TryReceiveBatch(b); got {
		t.Fatal("drained queue reported something")
	}
	c.Close()
	if _, err := c.TryReceiveBatch(b); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func testCancelUnblocksReceive(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := receiveAsync(ctx, c)
	time.Sleep(30 * time.Millisecond)
	cancel()
	var op *transport.OpError
	if err := waitErr(t, errc); !errors.Is(err, context.Canceled) || !errors.As(err, &op) || op.Op != "receive" {
		t.Fatalf("canceled receive: %v, want a receive OpError wrapping context.Canceled", err)
	}
	// The Conn still works afterwards.
	s := e.dial(t, dialOpts{})
	send(t, s, transport.Addr{Port: c.Port()}, &transport.Message{ID: confID})
	want(t, c, s.Port(), 1)
}

func testCloseUnblocksReceive(t *testing.T, e *env) {
	c := e.dial(t, dialOpts{})
	errc := receiveAsync(context.Background(), c)
	time.Sleep(30 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, errc); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("receive pending at close: %v, want ErrClosed", err)
	}
}

func testUseAfterClose(t *testing.T, e *env) {
	c, other := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	_, dropsErr := c.Drops()
	for op, err := range map[string]error{
		"send":    c.Send(context.Background(), transport.Addr{Port: other.Port()}, &transport.Message{ID: confID}),
		"join":    c.JoinGroup(2),
		"leave":   c.LeaveGroup(2),
		"receive": c.ReceiveBatch(context.Background(), transport.NewBatch(1)),
		"drops":   dropsErr,
	} {
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", op, err)
		}
	}
}

func testOversize(t *testing.T, e *env) {
	a, b := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	err := a.Send(context.Background(), transport.Addr{Port: b.Port()}, &transport.Message{ID: confID, Data: make([]byte, transport.MaxPayload+1)})
	if !errors.Is(err, transport.ErrOversize) {
		t.Fatalf("send of %d bytes: %v, want ErrOversize", transport.MaxPayload+1, err)
	}
	none(t, b, a.Port())
}

func testMaxPayload(t *testing.T, e *env) {
	a, b := e.dial(t, dialOpts{}), e.dial(t, dialOpts{})
	data := make([]byte, transport.MaxPayload)
	for i := range data {
		data[i] = byte(i * 7)
	}
	send(t, a, transport.Addr{Port: b.Port()}, &transport.Message{ID: confID, Seq: 3, Data: data})
	if got := want(t, b, a.Port(), 1)[0]; !bytes.Equal(got.Data, data) || got.Seq != 3 {
		t.Fatalf("got %d bytes seq %d, want the %d bytes sent", len(got.Data), got.Seq, len(data))
	}
}
