// Package conntest starts Connectors on the in-memory transport for the
// tests of the packages built on the root (config, metrics, proc, remote):
// each helper fails the test on error and closes what it opened in
// t.Cleanup.
package conntest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// WaitTimeout bounds each send and receive.
const WaitTimeout = 5 * time.Second

// New starts a Connector on a new in-memory network.
func New(t testing.TB, opts ...cnactor.Option) (*cnactor.Connector, *memory.Network) {
	t.Helper()
	net := memory.NewNetwork()
	conn, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, conn, opts...), net
}

// Start starts a Connector on conn.
func Start(t testing.TB, conn transport.Conn, opts ...cnactor.Option) *cnactor.Connector {
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

// DialPeer opens another socket on net.
func DialPeer(t testing.TB, net *memory.Network, opts ...memory.DialOption) *memory.Conn {
	t.Helper()
	p, err := net.Dial(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// AddByName adds a callback whose handler the registry builds.
func AddByName(c *cnactor.Connector, id transport.CbID, name, handler string, s handlers.Settings) error {
	h, err := handlers.New(handler, s)
	if err != nil {
		return err
	}
	return c.AddCallback(id, name, h)
}

// SendTo unicasts a message with id, seq and data to the connector.
func SendTo(t testing.TB, from transport.Conn, c *cnactor.Connector, id transport.CbID, seq uint32, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := from.Send(ctx, transport.Addr{Port: c.Port()}, &transport.Message{ID: id, Seq: seq, Data: []byte(data)}); err != nil {
		t.Fatalf("send %v: %v", id, err)
	}
}

// RecvFrom returns the next message conn receives from port, skipping
// others; its Data is a copy.
func RecvFrom(t testing.TB, conn transport.Conn, port uint32) transport.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
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

// Info returns the counters of the callback for id, failing if there is
// none.
func Info(t testing.TB, c *cnactor.Connector, id transport.CbID) cnactor.CallbackInfo {
	t.Helper()
	ci, ok := c.Callback(id)
	if !ok {
		t.Fatalf("no callback %v", id)
	}
	return ci
}

// Gated is a handler that blocks in Receive until Open, signals Entered
// when a message first arrives, and counts the mailbox losses it is told of.
type Gated struct {
	Entered chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	lost    uint64
}

// NewGated returns a closed gate.
func NewGated() *Gated { return &Gated{Entered: make(chan struct{}, 1), gate: make(chan struct{})} }

// Open lets every Receive, waiting or to come, return.
func (g *Gated) Open() { close(g.gate) }

func (g *Gated) Receive(handlers.Context, *transport.Message) error {
	select {
	case g.Entered <- struct{}{}:
	default:
	}
	<-g.gate
	return nil
}

func (g *Gated) Lost(n uint64, s handlers.LossSource) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s == handlers.LossMailbox {
		g.lost += n
	}
}

// MailboxLost is the mailbox loss Lost was told of.
func (g *Gated) MailboxLost() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lost
}
