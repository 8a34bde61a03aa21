package cnactor_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/conntest"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// waitTimeout bounds every wait of these tests; nothing legitimately takes
// more than a fraction of it.
const waitTimeout = 5 * time.Second

// waitFor polls cond until it holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// The helpers shared with the packages above the root (internal/conntest).
var (
	newMemConnector = conntest.New
	startConnector  = conntest.Start
	dialPeer        = conntest.DialPeer
	sendTo          = conntest.SendTo
	recvFrom        = conntest.RecvFrom
	info            = conntest.Info
)

func send(t testing.TB, from transport.Conn, to transport.Addr, m *transport.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := from.Send(ctx, to, m); err != nil {
		t.Fatalf("send %v to %v: %v", m.ID, to, err)
	}
}

// received records what a handler saw, by copy.
type received struct {
	ID    transport.CbID
	Seq   uint32
	Ack   uint32
	Data  string
	From  uint32
	Group uint32
	Creds transport.Credentials
	Name  string
}

// recorder is a handler that keeps every message it gets.
type recorder struct {
	mu  sync.Mutex
	got []received
}

func (r *recorder) Receive(ctx handlers.Context, m *transport.Message) error {
	_, name := ctx.Callback()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{
		ID: m.ID, Seq: m.Seq, Ack: m.Ack, Data: string(m.Data),
		From: ctx.From(), Group: ctx.Group(), Creds: ctx.Creds(), Name: name,
	})
	return nil
}

func (r *recorder) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// injectConn is a memory endpoint into whose receive batches a test can
// slip raw datagrams, as a peer writing its own bytes to a netlink socket
// could: the sender port and credentials are the network's, the bytes are
// the peer's.
type injectConn struct {
	*memory.Conn
	mu  sync.Mutex
	raw []rawDatagram
}

type rawDatagram struct {
	data  []byte
	from  uint32
	creds transport.Credentials
}

// inject queues data as if from sent it; it is delivered with the next
// batch the connector receives, so the caller must make one arrive.
func (c *injectConn) inject(from *memory.Conn, creds transport.Credentials, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw = append(c.raw, rawDatagram{data: bytes.Clone(data), from: from.Port(), creds: creds})
}

func (c *injectConn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	if err := c.Conn.ReceiveBatch(ctx, b); err != nil {
		return err
	}
	c.slipIn(b)
	return nil
}

// TryReceiveBatch slips the datagrams in too: transport.ReceiveEach's
// generic loop receives with both.
func (c *injectConn) TryReceiveBatch(b *transport.Batch) (bool, error) {
	got, err := c.Conn.TryReceiveBatch(b)
	if got && err == nil {
		c.slipIn(b)
	}
	return got, err
}

func (c *injectConn) slipIn(b *transport.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.raw) > 0 && b.Datagrams < b.Cap() {
		r := c.raw[0]
		c.raw = c.raw[1:]
		slot := b.Slot(b.Datagrams)
		n := copy(slot, r.data)
		b.AddDatagram(slot[:n], r.from, 0, r.creds)
	}
}

// newInjectConnector is newMemConnector with an injectConn.
func newInjectConnector(t testing.TB, opts ...cnactor.Option) (*cnactor.Connector, *memory.Network, *injectConn) {
	t.Helper()
	net := memory.NewNetwork()
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	ic := &injectConn{Conn: conn}
	return startConnector(t, ic, opts...), net, ic
}
