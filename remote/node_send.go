package remote

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/remote/wire"
	"github.com/cnactor/cnactor/transport"
)

// answers the sender with a SendResult.
func (a *nodeActor) send(ctx actor.Context, m *wire.SendRequest) {
	from := ctx.Sender()
	if from == nil {
		return
	}
	res := &wire.SendResult{Request: m.Request}
	s := a.subs[m.Subscription]
	id := transport.CbID{Idx: m.Idx, Val: m.Val}
	switch {
	case s == nil:
		res.Code, res.Error = wire.Code_CODE_UNKNOWN_SUBSCRIPTION, "no subscription "+subHex(m.Subscription)
	case from.Address != s.ctl.Address:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, "not the subscription's subscriber"
	case s.exp.ReadOnly:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, s.cbid.String()+" is exported read-only"
	case id != s.cbid:
		res.Code, res.Error = wire.Code_CODE_NOT_ALLOWED, "a subscription for "+s.cbid.String()+" cannot send with id "+id.String()
	}
	if res.Code != wire.Code_CODE_OK {
		ctx.Send(from, res)
		return
	}
	a.n.sends.Add(1)
	go func() {
		defer a.n.sends.Done()
		msg := transport.Message{ID: id, Seq: m.Seq, Ack: m.Ack, Flags: uint16(m.Flags), Data: m.Data}
		sctx, cancel := context.WithTimeout(context.Background(), 2*transport.DefaultSendTimeout)
		err := a.n.c.Send(sctx, transport.Addr{Port: m.Port, Group: m.Group}, &msg)
		cancel()
		res.Seq = msg.Seq
		if err != nil {
			res.Code, res.Error = wire.Code_CODE_SEND_FAILED, err.Error()
		}
		a.n.root.Send(from, res)
	}()
}

// forwarder is the local callback of an exported id: it copies each
