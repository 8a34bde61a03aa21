package cnactor_test

import (
	"bytes"
	"context"
	"github.com/cnactor/cnactor/internal/testutil"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// waitTimeout bounds every wait of these tests; nothing legitimately takes
// more than a fraction of it.
const waitTimeout = 5 * time.Second

// waitFor polls cond until it holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// newMemConnector starts a Connector on its own in-memory network, closed
// at the end of the test.
func newMemConnector(t testing.TB, opts ...cnactor.Option) (*cnactor.Connector, *memory.Network) {
	t.Helper()
	net := memory.NewNetwork()
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	return startConnector(t, conn, opts...), net
}

func startConnector(t testing.TB, conn transport.Conn, opts ...cnactor.Option) *cnactor.Connector {
	t.Helper()
	c, err := cnactor.New(append([]cnactor.Option{cnactor.WithTransport(conn)}, opts...)...)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func dialPeer(t testing.TB, net *memory.Network, opts ...memory.DialOption) *memory.Conn {
	t.Helper()
	p, err := net.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func send(t testing.TB, from transport.Conn, to transport.Addr, m *transport.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := from.Send(ctx, to, m); err != nil {
		t.Fatalf("send %v to %v: %v", m.ID, to, err)
	}
}

// sendTo unicasts a message with id, seq and data to the connector.
func sendTo(t testing.TB, from transport.Conn, c *cnactor.Connector, id transport.CbID, seq uint32, data string) {
	t.Helper()
	send(t, from, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: seq, Data: []byte(data)})
}

// recvFrom returns the next message conn receives from port, skipping
// others; its Data is a copy.
func recvFrom(t testing.TB, conn transport.Conn, port uint32) transport.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b := transport.NewBatch(1)
	for {
		if err := conn.ReceiveBatch(ctx, b); err != nil {
			t.Fatalf("port %d waiting for a message from port %d: %v", conn.Port(), port, err)
		}
		for _, m := range b.Messages {
			if m.From == port {
				m.Data = bytes.Clone(m.Data)
				return m
			}
		}
	}
}

// info returns the counters of the callback for id, failing if there is
// none.
func info(t testing.TB, c *cnactor.Connector, id transport.CbID) cnactor.CallbackInfo {
	t.Helper()
	ci, ok := c.Callback(id)
	if !ok {
		t.Fatalf("no callback %v", id)
	}
	return ci
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
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.raw) > 0 && b.Datagrams < b.Cap() {
		r := c.raw[0]
		c.raw = c.raw[1:]
		slot := b.Slot(b.Datagrams)
		n := copy(slot, r.data)
		b.AddDatagram(slot[:n], r.from, 0, r.creds)
	}
	return nil
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
