package cnactor

import (
	"context"

	"github.com/cnactor/cnactor/transport"
)

// nextSeq returns the next sequence number of this connector. Every message
// the connector sends without a seq of its own gets one.
func (c *Connector) nextSeq() uint32 {
	for {
		if s := c.seq.Add(1) - 1; s != 0 {
			return s
		}
	}
}

// Send sends m from the connector's socket to a port (transport.Addr{Port:
// P}; 0 is the kernel) or a multicast group (transport.Addr{Group: G}, as
// the kernel's cn_netlink_send, which multicasts an id's messages on group
// id.Idx). A zero m.Seq goes out as the connector's next sequence number;
// m itself is never modified, by Send or by any other send of cnactor.
func (c *Connector) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	if m.Seq == 0 {
		numbered := *m
		numbered.Seq = c.nextSeq()
		m = &numbered
	}
	return c.sendRaw(ctx, to, m)
}

func (c *Connector) sendRaw(ctx context.Context, to transport.Addr, m *transport.Message) error {
	return c.conn.Send(ctx, to, m) // a closed socket's error is ErrClosed already
}

// connSender is the Sender handler actors reply through: replies keep the
// seq they answer; new messages get the connector's numbering.
type connSender struct{ c *Connector }

func (s connSender) Send(ctx context.Context, to transport.Addr, m *transport.Message) error {
	return s.c.sendRaw(ctx, to, m)
}

func (s connSender) NextSeq() uint32 { return s.c.nextSeq() }
