package cnactor

import (
	"context"
	"time"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/transport"
)

// Reply is the answer to a Request: the message as it arrived (its Data is
// the Reply's own), the round-trip time since the first send, and the
// number of sends.
type Reply = actors.Reply

// RequesterStats count request/reply exchanges; see Stats.Requester.
type RequesterStats = actors.RequesterStats

// Match is a Request's rule for recognising its reply.
type Match = actors.Match

// Matching policies.
const (
	// MatchSeqAck is the seed protocol's rule and the default: same id,
	// same seq, ack + 1, from the port the request went to; for a request
	// to a group, from any sender.
	MatchSeqAck = actors.MatchSeqAck
	// MatchAck accepts same id and ack + 1 from the kernel whatever the
	// seq, for the proc connector, whose acks overwrite seq. The socket must
	// be in the group the kernel answers on (group 1 for cn_proc, joined by
	// any callback with idx 1).
	MatchAck = actors.MatchAck
)

// Request defaults.
const (
	DefaultRequestTimeout = actors.DefaultRequestTimeout
	DefaultBackoff        = actors.DefaultBackoff
)

// A RequestOption configures one Request.
type RequestOption interface {
	// applyRequest returns a changed copy: a pointer passed to an
	// interface method escapes, and would cost every Request an
	// allocation.
	applyRequest(actors.RequestOptions) actors.RequestOptions
}

type requestOptionFunc func(actors.RequestOptions) actors.RequestOptions

func (f requestOptionFunc) applyRequest(o actors.RequestOptions) actors.RequestOptions { return f(o) }

// WithRequestTimeout sets how long the first attempt waits for its reply
// (default DefaultRequestTimeout). The ctx given to Request bounds the
// whole exchange independently.
func WithRequestTimeout(d time.Duration) RequestOption {
	return requestOptionFunc(func(o actors.RequestOptions) actors.RequestOptions { o.Timeout = d; return o })
}

// WithRetries resends the request up to n times, with the same seq and ack
// so that the peer can recognise a duplicate, when an attempt's wait runs
// out. Each retry waits Backoff times longer than the attempt before it.
func WithRetries(n int) RequestOption {
	return requestOptionFunc(func(o actors.RequestOptions) actors.RequestOptions { o.Retries = n; return o })
}

// WithBackoff sets the factor by which each retry's wait grows (default
// DefaultBackoff; 1 keeps it constant) and the cap of one wait (0 keeps the
// default of 30s).
func WithBackoff(factor float64, maxWait time.Duration) RequestOption {
	return requestOptionFunc(func(o actors.RequestOptions) actors.RequestOptions { o.Backoff, o.MaxWait = factor, maxWait; return o })
}

// WithMatch sets how the reply is recognised (default MatchSeqAck).
func WithMatch(m Match) RequestOption {
	return requestOptionFunc(func(o actors.RequestOptions) actors.RequestOptions { o.Match = m; return o })
}

// Request sends m to a port (0 is the kernel) or, with to.Group set, to a
// multicast group, and waits for the reply the seed protocol defines: same
// id, same seq, ack + 1. A zero m.Seq goes out as the connector's next
// seq and a zero m.Ack as a random one; m itself is not modified (the
// Reply's Seq and Ack show what was used).
//
// Errors can be told apart with errors.Is: ErrTimeout (every attempt went
// unanswered), ErrClosed (the connector closed first), context.Canceled or
// context.DeadlineExceeded (ctx ended first; the exchange is forgotten at
// once), ErrPending (a caller-chosen seq and ack already in flight), or the
// send error. A message that answers no pending exchange goes to normal
// dispatch. A reply arriving after its exchange timed out or was cancelled,
// or a second reply to one already answered, is consumed and counted in
// Stats().Requester (Late, Duplicates) for a while (10s by default).
func (c *Connector) Request(ctx context.Context, to transport.Addr, m *transport.Message, opts ...RequestOption) (*Reply, error) {
	var o actors.RequestOptions
	for _, opt := range opts {
		o = opt.applyRequest(o)
	}
	return c.reqs.Request(ctx, to, *m, o)
}
