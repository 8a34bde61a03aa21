package remote

import (
	"fmt"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Origin is where a remotely delivered message comes from.
type Origin struct {
	Node         string // the node's address
	Name         string // the node's name (its host name unless configured)
	Instance     string // the node process's instance
	Subscription uint64
	Seq          uint64    // the message's number in the subscription
	Received     time.Time // when the node's callback received it (node clock)
}

// OriginOf returns the origin of the message a remote handler is handling,
// given the handlers.Context its Receive got; false for a local handler.
func OriginOf(ctx handlers.Context) (Origin, bool) {
	rc, ok := ctx.(*remoteContext)
	if !ok {
		return Origin{}, false
	}
	return rc.origin(), true
}

// remoteContext is the handlers.Context of the message an inlet is
// handling: Reply and Send go through the origin node's connector.
type remoteContext struct {
	r   *registration
	d   *wire.Delivery
	sub uint64
}

var _ handlers.Context = (*remoteContext)(nil)

func (c *remoteContext) Deadline() (time.Time, bool) { return c.r.ctx.Deadline() }
func (c *remoteContext) Done() <-chan struct{}       { return c.r.ctx.Done() }
func (c *remoteContext) Err() error                  { return c.r.ctx.Err() }
func (c *remoteContext) Value(key any) any           { return c.r.ctx.Value(key) }
func (c *remoteContext) Logger() *zap.Logger         { return c.r.log }
func (c *remoteContext) Callback() (transport.CbID, string) {
	return c.r.key.id, c.r.name
}
func (c *remoteContext) From() uint32  { return c.d.From }
func (c *remoteContext) Group() uint32 { return c.d.Group }
func (c *remoteContext) Creds() transport.Credentials {
	return transport.Credentials{PID: c.d.Pid, UID: c.d.Uid, GID: c.d.Gid}
}

func (c *remoteContext) origin() Origin {
	o := Origin{Node: c.r.key.node, Subscription: c.sub}
	if info := c.r.info.Load(); info != nil {
		o.Name, o.Instance = info.name, info.instance
	}
	if c.d != nil {
		o.Seq = c.d.Seq
		o.Received = time.Unix(0, c.d.Stamp)
	}
	return o
}

// Reply answers the message through the origin node, as the connector
// protocol wants: same id, same seq, ack + 1, to the sender's port.
func (c *remoteContext) Reply(data []byte) error {
	_, err := c.r.s.sendThrough(c.r, &wire.SendRequest{
		Subscription: c.sub, Port: c.d.From, Idx: c.r.key.id.Idx, Val: c.r.key.id.Val,
		Seq: c.d.CnSeq, Ack: c.d.Ack + 1, Data: data, Reply: true,
	})
	return err
}

// Send sends m from the origin node's connector socket, with the callback's
// id; a zero m.Seq goes out as the node connector's next one (m is not modified).
func (c *remoteContext) Send(to transport.Addr, m *transport.Message) error {
	_, err := c.r.s.sendThrough(c.r, &wire.SendRequest{
		Subscription: c.sub, Port: to.Port, Group: to.Group, Idx: m.ID.Idx, Val: m.ID.Val,
		Seq: m.Seq, Ack: m.Ack, Flags: uint32(m.Flags), Data: m.Data,
	})
	return err
}

// sendThrough asks the node to send for a registration and waits for the
// result.
func (s *Subscriber) sendThrough(r *registration, req *wire.SendRequest) (uint32, error) {
	live := r.live.Load()
	if req.Subscription == 0 || live == nil {
		return 0, fmt.Errorf("%w: not subscribed", ErrSendRefused)
	}
	ch := make(chan *wire.SendResult, 1)
	req.Request = s.reqs.Add(1)
	s.pendMu.Lock()
	s.pending[req.Request] = ch
	s.pendMu.Unlock()
	s.root.RequestWithCustomSender(r.node, req, s.pid)
	t := time.NewTimer(sendWait)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Code != wire.Code_CODE_OK {
			return res.Seq, codeError(res.Code, res.Error)
		}
		return res.Seq, nil
	case <-t.C:
	case <-r.ctx.Done():
	case <-*live:
	}
	s.pendMu.Lock()
	delete(s.pending, req.Request)
	s.pendMu.Unlock()
	select {
	case <-r.ctx.Done():
		return 0, fmt.Errorf("remote: send through %s: the remote callback was removed: %w", r.key.node, cnactor.ErrClosed)
	case <-*live:
		return 0, fmt.Errorf("%w: %s: the subscription ended before the node answered", ErrNodeLost, r.key.node)
	default:
	}
	return 0, fmt.Errorf("remote: send through %s: no answer in time: %w", r.key.node, cnactor.ErrTimeout)
}
