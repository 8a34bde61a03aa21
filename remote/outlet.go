package remote

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cnactor/cnactor/remote/wire"
)

// credit window, heartbeats it, and notices when it falls silent.
type outletActor struct {
	n         *Node
	s         *subscription
	sent      uint64 // deliveries sent
	received  uint64 // acknowledged by the subscriber
	lastHeard time.Time
	lastBeat  time.Time
	silent    bool
	done      bool
	buf       []entry
}

func (o *outletActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		o.lastHeard = time.Now()
	case *flush:
		o.s.scheduled.Store(false)
		o.drain(ctx)
	case *wire.Credit:
		if m.Subscription != o.s.id {
			return
		}
		o.lastHeard = time.Now()
		if m.Received > o.received {
			o.received = m.Received
			o.s.acked.Store(m.Received)
			o.drain(ctx)
		}
	case *tick:
		if o.done {
			return
		}
		now := time.Now()
		if now.Sub(o.lastBeat) >= o.s.hb {
			o.lastBeat = now
			ctx.Send(o.s.ctl, &wire.Heartbeat{Subscription: o.s.id, Counters: o.s.q.counters()})
		}
		if !o.silent && now.Sub(o.lastHeard) > missedHeartbeats*o.s.hb+tickInterval {
			o.silent = true
			ctx.Send(o.n.pid, &silent{sub: o.s.id})
		}
	case *endSub:
		o.done = true
		o.drain(ctx) // the queue is closed: nothing more is taken
		if m.ended != nil {
			ctx.Send(o.s.ctl, m.ended)
		}
		ctx.Stop(ctx.Self())
	}
}

// drain sends what is queued, as far as the credit window allows, in
// batches.
func (o *outletActor) drain(ctx actor.Context) {
	for {
		room := int64(o.s.window) - int64(o.sent-o.received)
		if room <= 0 {
			return
		}
		o.buf = o.s.q.take(o.buf[:0], int(min(room, maxBatchItems)), maxBatchBytes)
		if len(o.buf) == 0 {
			return
		}
		d := &wire.Deliveries{Subscription: o.s.id, Items: make([]*wire.Delivery, len(o.buf))}
		for i, e := range o.buf {
			it := e.it
			d.Items[i] = &wire.Delivery{
				Seq: e.seq, Dropped: e.dropped, SocketLost: e.socketLost, MailboxLost: e.mailboxLost,
				From: it.from, Group: it.group, Pid: it.creds.PID, Uid: it.creds.UID, Gid: it.creds.GID,
				CnSeq: it.seq, Ack: it.ack, Flags: uint32(it.flags), Data: it.data, Process: it.process, Stamp: it.stamp,
			}
		}
		clear(o.buf)
		o.sent += uint64(len(d.Items))
		ctx.Send(o.s.inlet, d)
	}
}
