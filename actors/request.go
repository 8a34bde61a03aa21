package actors

import (
	"errors"
	"time"

	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// What a request is: its options, its reply, how a reply is matched, and
// the errors and counters of the exchanges (requester.go runs them).

// Match says which received message answers a request.
type Match uint8

const (
	// MatchSeqAck is the seed's rule: same id, same seq, ack + 1, from the
	// port the request went to (from any sender for a group request).
	MatchSeqAck Match = iota
	// MatchAck is for the kernel's proc connector, whose acks overwrite
	// seq: same id and ack + 1, from the kernel (port 0), whatever the seq.
	MatchAck
)

func (m Match) String() string {
	if m == MatchAck {
		return "ack"
	}
	return "seq-ack"
}

var (
	// ErrTimeout: no reply came before the last attempt's wait ran out.
	ErrTimeout = errors.New("actors: request timed out")
	// ErrPending: the caller chose a seq and ack (or, for MatchAck, an ack)
	// that an exchange in flight already uses.
	ErrPending = errors.New("actors: an exchange with this seq and ack is in flight")
)

// Request defaults.
const (
	DefaultRequestTimeout = time.Second
	DefaultBackoff        = 2.0
	DefaultMaxWait        = 30 * time.Second
	// DefaultDupWindow is how long a finished exchange is remembered, so
	// that a late or duplicate reply is recognised instead of dispatched.
	DefaultDupWindow = 10 * time.Second
	// DefaultDupCapacity bounds how many finished exchanges are remembered.
	DefaultDupCapacity = 1 << 16
)

// timerResolution: the timer never fires more often than this; a timeout
// is late by at most about this much.
const timerResolution = time.Millisecond

// RequestOptions configure one exchange. The zero value is the default.
type RequestOptions struct {
	// Timeout is how long the first attempt waits for its reply
	// (DefaultRequestTimeout if 0).
	Timeout time.Duration
	// Retries is how many times the request is sent again, with the same seq
	// and ack, when an attempt's wait runs out.
	Retries int
	// Backoff multiplies the wait of each retry (DefaultBackoff if 0; values
	// below 1 are taken as 1). MaxWait caps one attempt's wait
	// (DefaultMaxWait if 0).
	Backoff float64
	MaxWait time.Duration
	// Match is the matching policy.
	Match Match
}

func (o RequestOptions) withDefaults() RequestOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRequestTimeout
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	o.Backoff = max(o.Backoff, 1)
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	o.Retries = max(o.Retries, 0)
	return o
}

// Reply is the answer to a request.
type Reply struct {
	// Received is the reply as it arrived; its Data is the Reply's own copy.
	transport.Received
	// RTT is the time from the first send of the request to the reply's
	// arrival at the socket reader.
	RTT time.Duration
	// Attempts is how many times the request had been sent.
	Attempts int
}

// RequesterConfig configures StartRequester.
type RequesterConfig struct {
	// Sender sends requests (as they are) and numbers them.
	Sender Sender
	Logger *zap.Logger
	// DupWindow and DupCapacity bound how long and how many finished
	// exchanges are remembered (DefaultDupWindow, DefaultDupCapacity; an
	// odd capacity is rounded up). At capacity the oldest half is
	// forgotten at once.
	DupWindow   time.Duration
	DupCapacity int
}

// RequesterStats are the requester's counters.
type RequesterStats struct {
	InFlight   uint64 // exchanges waiting for their reply now
	Requests   uint64 // exchanges started
	Replies    uint64 // replies delivered
	Timeouts   uint64 // exchanges that ended with ErrTimeout
	Retries    uint64 // resends after a wait ran out
	Cancelled  uint64 // exchanges ended by their context
	Failed     uint64 // exchanges ended by a send error or Close
	Duplicates uint64 // further replies to an exchange already answered; consumed
	Late       uint64 // replies to an exchange that timed out or was cancelled; consumed
	// RTT is the histogram of the delivered replies' round-trip times.
	RTT RTTHistogram
}
