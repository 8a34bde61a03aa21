package transport

import "context"

// EachReceiver is implemented by a Conn with a receive loop of its own; see
// ReceiveEach. A wrapper around a Conn implements it only if it can keep
// the wrapped Conn's loop (benchmarks' gated Conn does, while its gate is
// open); otherwise ReceiveEach falls back to a loop over ReceiveBatch and
// TryReceiveBatch, so a wrapper that changes one must change the other. A
// wrapper that embeds *NetlinkConn and changes ReceiveBatch must change
// ReceiveEach too: the embedded one is promoted and would bypass it.
type EachReceiver interface {
	ReceiveEach(ctx context.Context, b *Batch, deliver func(*Batch) *Batch, idle func()) error
}

// ReceiveEach receives batch after batch from c: it fills b, hands it to
// deliver and goes on with the batch deliver returns; deliver returning nil
// ends the loop and ReceiveEach returns nil. A receive error or ctx ending
// also ends it, with that error (the batch in hand is then the last one
// deliver returned, or b); so does Close, between batches as well as in a
// wait. A passed read deadline ends a wait; on the kernel's socket it also
// ends the loop between batches, while other Conns see it only when they
// wait. idle, if not nil, is called before every wait that follows a
// batch which filled up, once a receive has found the queue empty, and
// before the first wait of the call if its first receive finds the queue
// empty (the last call may have ended after a full batch); it may be
// called before other waits too. A wait after a batch with room to
// spare needs none: deliver has just seen the batch that emptied the
// queue. deliver must not close c: on the kernel's socket, Close waits for
// the loop to let go of it.
//
// It is ReceiveBatch in a loop, with one difference on the kernel's socket
// (Dial): the loop keeps its place on the Go poller between batches, so
// a batch with room to spare, which emptied the queue, is followed by the
// wait itself instead of one more recvmmsg that finds the queue empty
// (ReceiveBatch cannot skip it: each call starts a fresh wait, which must
// look first). That is one system call fewer per wait: per message, when
// messages come one at a time.
func ReceiveEach(ctx context.Context, c Conn, b *Batch, deliver func(*Batch) *Batch, idle func()) error {
	if e, ok := c.(EachReceiver); ok {
		return e.ReceiveEach(ctx, b, deliver, idle)
	}
	// The first receive does not wait: a caller that ended the last
	// loop after a full batch gets idle before a wait, as it would have
	// inside one loop.
	full := true
	for {
		if err := ctx.Err(); err != nil {
			return &OpError{Op: "receive", Err: err}
		}
		if full {
			got, err := c.TryReceiveBatch(b)
			if err != nil {
				return err
			}
			if !got {
				full = false
				if idle != nil {
					idle()
				}
				continue
			}
		} else if err := c.ReceiveBatch(ctx, b); err != nil {
			return err
		}
		full = b.Datagrams >= b.Cap() || b.Lost > 0
		if b = deliver(b); b == nil {
			return nil
		}
	}
}
