package cnactor_test

import (
	"errors"
	"github.com/cnactor/cnactor/dispatch"
	"slices"
	"testing"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Sender policies are enforced on the socket address and credentials the
// network reports, never on header fields the sender wrote: a user port
// whose datagram claims nlmsg_pid 0 is not the kernel.
func TestSenderPolicy(t *testing.T) {
	t.Parallel()
	c, net, inj := newInjectConnector(t)
	kernel := net.Kernel()
	alice := dialPeer(t, net, memory.WithCredentials(transport.Credentials{PID: 10, UID: 1234, GID: 1234}))
	bob := dialPeer(t, net, memory.WithCredentials(transport.Credentials{PID: 11, UID: 999, GID: 999}))
	zero := dialPeer(t, net, memory.WithCredentials(transport.Credentials{})) // claims to be pid/uid 0

	var (
		kernelOnly = transport.CbID{Idx: 0x7400, Val: 1}
		ports      = transport.CbID{Idx: 0x7400, Val: 2}
		uids       = transport.CbID{Idx: 0x7400, Val: 3}
		anyone     = transport.CbID{Idx: 0x7400, Val: 4}
	)
	recs := map[transport.CbID]*recorder{}
	for id, p := range map[transport.CbID]dispatch.SenderPolicy{
		kernelOnly: dispatch.AllowKernel(),
		ports:      dispatch.AllowPorts(alice.Port()),
		uids:       dispatch.AllowUIDs(1234),
		anyone:     dispatch.AllowAnyone(),
	} {
		recs[id] = &recorder{}
		if err := c.AddCallback(id, p.String(), recs[id], cnactor.WithSenderPolicy(p)); err != nil {
			t.Fatal(err)
		}
	}

	// forged is a datagram from a user port with the kernel's nlmsg_pid 0.
	forged := func(id transport.CbID, seq uint32) []byte {
		b, err := transport.AppendDatagram(nil, &transport.Message{ID: id, Seq: seq}, seq, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	type want struct {
		accepted []uint32 // seqs handled, in order
		rejected uint64
	}
	wants := map[transport.CbID]want{
		kernelOnly: {[]uint32{1}, 3},
		ports:      {[]uint32{5}, 2},
		uids:       {[]uint32{9}, 3},
		anyone:     {[]uint32{13, 14, 15, 16}, 0},
	}
	// kernel-only: the kernel passes; the forged kernel, a uid-0 user
	// and an ordinary user do not.
	send(t, kernel, transport.Addr{Port: c.Port()}, &transport.Message{ID: kernelOnly, Seq: 1})
	inj.inject(alice, transport.Credentials{}, forged(kernelOnly, 2))
	sendTo(t, zero, c, kernelOnly, 3, "")
	sendTo(t, bob, c, kernelOnly, 4, "")
	// ports: alice only; neither bob nor the kernel.
	sendTo(t, alice, c, ports, 5, "")
	sendTo(t, bob, c, ports, 6, "")
	send(t, kernel, transport.Addr{Port: c.Port()}, &transport.Message{ID: ports, Seq: 7})
	// uids: alice's uid only; neither a uid-0 user nor the kernel, whose
	// credentials are zero but which is not a user.
	sendTo(t, zero, c, uids, 8, "")
	sendTo(t, alice, c, uids, 9, "")
	sendTo(t, bob, c, uids, 10, "")
	send(t, kernel, transport.Addr{Port: c.Port()}, &transport.Message{ID: uids, Seq: 11})
	// anyone: everybody, forged or not.
	inj.inject(bob, transport.Credentials{}, forged(anyone, 13))
	sendTo(t, alice, c, anyone, 14, "")
	sendTo(t, bob, c, anyone, 15, "")
	send(t, kernel, transport.Addr{Port: c.Port()}, &transport.Message{ID: anyone, Seq: 16})

	for id, w := range wants {
		r := recs[id]
		waitFor(t, "every message to "+id.String(), func() bool {
			ci := info(t, c, id)
			return ci.Handled == uint64(len(w.accepted)) && ci.Rejected == w.rejected
		})
		var seqs []uint32
		for _, m := range r.messages() {
			seqs = append(seqs, m.Seq)
		}
		// Injected datagrams ride in the batch of the next real one, so
		// their order is not the order of the sends.
		slices.Sort(seqs)
		if !slices.Equal(seqs, w.accepted) {
			t.Errorf("%v handled seqs %v, want %v", id, seqs, w.accepted)
		}
		ci := info(t, c, id)
		if ci.Rejected != w.rejected || ci.Received != uint64(len(w.accepted)) {
			t.Errorf("%v (%s): rejected %d received %d, want %d and %d", id, ci.Policy, ci.Rejected, ci.Received, w.rejected, len(w.accepted))
		}
	}
	if m := recs[kernelOnly].messages(); len(m) == 1 && m[0].From != 0 {
		t.Errorf("kernel message from port %d", m[0].From)
	}
	if r := c.Stats().Reader; r.Rejected != 8 || r.Messages != 15 || r.Unknown != 0 {
		t.Errorf("reader counters %+v, want 15 messages, 8 rejected", r)
	}
}

// kernelOnlyHandler declares that only the kernel may reach it, as the
// proc handler does.
type kernelOnlyHandler struct{ recorder }

func (*kernelOnlyHandler) Senders() dispatch.SenderPolicy { return dispatch.AllowKernel() }

func init() {
	handlers.Register("test-kernel-only", func(handlers.Settings) (handlers.Handler, error) {
		return &kernelOnlyHandler{}, nil
	})
}

// Issue 13, item 2: a handler that declares a sender policy gets it when
// the callback is added without one (AddCallback without
// WithSenderPolicy, a configuration entry without senders:), so that a
// user process cannot forge what only the kernel sends; an explicit
// policy, the entry's or the connector's default, wins.
func TestDeclaredSenderPolicy(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	kernel := net.Kernel()
	user := dialPeer(t, net, memory.WithCredentials(transport.Credentials{PID: 10, UID: 1000, GID: 1000}))

	declared := transport.CbID{Idx: 0x7410, Val: 1}
	overridden := transport.CbID{Idx: 0x7410, Val: 2}
	h := &kernelOnlyHandler{}
	if err := c.AddCallback(declared, "declared", h); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCallback(overridden, "overridden", &kernelOnlyHandler{}, cnactor.WithSenderPolicy(dispatch.AllowAnyone())); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("c.yaml", []byte(`
callbacks:
  - {id: "0x7410:3", handler: test-kernel-only}
  - {id: "0x7410:4", handler: test-kernel-only, senders: anyone}
  - {id: "0x7410:5", handler: echo}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(c, cfg, handlers.Env{}); err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{1: "kernel", 2: "anyone", 3: "kernel", 4: "anyone", 5: "anyone"}
	for val, p := range want {
		if got := info(t, c, transport.CbID{Idx: 0x7410, Val: val}).Policy; got != p {
			t.Errorf("0x7410:%d: policy %s, want %s", val, got, p)
		}
	}
	// A connector-wide default is explicit too.
	cfg2, err := config.Parse("d.yaml", []byte("connector: {senders: {uids: [1000]}}\ncallbacks:\n  - {id: \"0x7410:6\", handler: test-kernel-only}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(c, cfg2, handlers.Env{}); err != nil {
		t.Fatal(err)
	}
	if got := info(t, c, transport.CbID{Idx: 0x7410, Val: 6}).Policy; got != "uids=1000" {
		t.Errorf("with connector.senders: policy %s, want uids=1000", got)
	}

	// The forgery is refused, the kernel's message is handled.
	sendTo(t, user, c, declared, 1, "forged exit")
	send(t, kernel, transport.Addr{Port: c.Port()}, &transport.Message{ID: declared, Seq: 2})
	waitFor(t, "the kernel's message handled and the forgery refused", func() bool {
		ci := info(t, c, declared)
		return ci.Handled == 1 && ci.Rejected == 1
	})
	if m := h.messages(); len(m) != 1 || m[0].Seq != 2 {
		t.Errorf("handled %+v, want only the kernel's seq 2", m)
	}
}

// Callbacks are bounded (WithMaxCallbacks): one past the bound is refused
// with ErrTooManyCallbacks, counted and logged, and the connector keeps
// serving; removing one makes room again.
func TestMaxCallbacks(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	c, net := newMemConnector(t, cnactor.WithMaxCallbacks(3), cnactor.WithLogger(zap.New(core)))
	id := func(v uint32) transport.CbID { return transport.CbID{Idx: 0x7420, Val: v} }
	for v := range uint32(3) {
		if err := c.AddCallback(id(v), "cb", handlers.Echo()); err != nil {
			t.Fatal(err)
		}
	}
	for v := uint32(3); v < 6; v++ {
		if err := c.AddCallback(id(v), "cb", handlers.Sink()); !errors.Is(err, cnactor.ErrTooManyCallbacks) {
			t.Fatalf("callback %d past the bound: %v", v, err)
		}
	}
	if n := c.Stats().CallbacksRefused; n != 3 {
		t.Errorf("CallbacksRefused = %d, want 3", n)
	}
	if n := logs.FilterMessage("callback refused: too many callbacks").Len(); n != 1 {
		t.Errorf("%d warnings for 3 refusals within a second, want 1", n)
	}
	// Still serving: an echo answers.
	peer := dialPeer(t, net)
	sendTo(t, peer, c, id(0), 7, "hi")
	if r := recvFrom(t, peer, c.Port()); r.Seq != 7 || string(r.Data) != "hi" {
		t.Errorf("echo = %+v", r)
	}
	if err := c.DelCallback(id(0)); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCallback(id(3), "cb", handlers.Sink()); err != nil {
		t.Errorf("after a removal: %v", err)
	}
	if _, err := cnactor.New(cnactor.WithTransport(dialPeer(t, net)), cnactor.WithMaxCallbacks(0)); err == nil {
		t.Error("New accepted a bound of 0 callbacks")
	}
}
