package transport

import (
	"context"
	"time"
)

// Conn is a connector socket: the kernel's (Dial) or an in-memory one
// (package memory). Send may be called concurrently; ReceiveBatch is meant for
// a single receive loop and serialises concurrent callers.
type Conn interface {
	// Port is the port id the socket is bound to, assigned by the kernel
	// (or the in-memory network).
	Port() uint32
	// JoinGroup and LeaveGroup change multicast membership; group must be in
	// 1..MaxGroup or the error is ErrInvalidGroup.
	JoinGroup(group uint32) error
	LeaveGroup(group uint32) error
	// Send encodes m and sends it to a port (0 is the kernel) or, when
	// to.Group is set, to a multicast group. A unicast receiver whose queue
	// is full makes Send wait, bounded by ctx and the socket's send timeout.
	// With both Group and a non-zero Port set, the kernel multicasts and then
	// unicasts to Port; if that queue is full, Send fails at once with EAGAIN
	// (the multicast went out, and waiting would mean sending it again).
	Send(ctx context.Context, to Addr, m *Message) error
	// ReceiveBatch resets b and fills it with what is queued, waiting until
	// at least one datagram or a loss report arrives, ctx is done, or the
	// Conn is closed (ErrClosed).
	ReceiveBatch(ctx context.Context, b *Batch) error
	// TryReceiveBatch is ReceiveBatch without waiting: it fills b with
	// what is queued and reports whether there was anything (datagrams or
	// a loss report). Its false means the queue is empty. ReceiveEach
	// receives with both (a wrapper changes both or neither).
	TryReceiveBatch(b *Batch) (bool, error)
	// SetReadDeadline bounds ReceiveBatch as on a net.Conn: once t has
	// passed, it fails with an error wrapping os.ErrDeadlineExceeded (an
	// OpError whose Timeout is true). A zero t means none. Setting it wakes
	// a pending ReceiveBatch.
	SetReadDeadline(t time.Time) error
	// Drops is the cumulative number of datagrams the receive queue dropped.
	Drops() (uint64, error)
	// Close releases the socket and unblocks a pending ReceiveBatch.
	Close() error
}

// DefaultBatchSize is the number of datagrams a Batch from NewBatch holds.
const DefaultBatchSize = 64

// slotSize holds the largest well-formed datagram, rounded to 64 bytes;
// a larger one is reported as ErrTruncated.
const slotSize = (MaxDatagram + 63) &^ 63

// Batch is a caller-owned, reusable receive buffer, in the style of
// cilium/ebpf's ReadInto: ReceiveBatch overwrites it, so the Data of its
// messages is valid until the Batch is passed to ReceiveBatch again. Copy
// what must outlive that.
type Batch struct {
	// Messages are the cn_msgs decoded from every datagram, in arrival order.
	Messages []Received
	// Malformed lists the datagrams (or their tails) that could not be
	// decoded. Messages decoded before a fault in the same datagram are in
	// Messages.
	Malformed []Malformed
	// Lost is the number of datagrams the receive queue dropped since the
	// previous report, taken from the socket's drop counter. Lost > 0 with
	// no messages is a valid batch.
	Lost uint64
	// Datagrams and Bytes count what was read.
	Datagrams int
	Bytes     int

	bufs [][]byte
}

// Malformed is a datagram rejected by the decoder.
type Malformed struct {
	From  uint32
	Group uint32
	Creds Credentials
	Err   error  // a *DecodeError
	Data  []byte // the whole datagram, aliasing the Batch
}

// NewBatch returns a Batch that receives up to n datagrams per call
// (DefaultBatchSize if n <= 0).
func NewBatch(n int) *Batch {
	if n <= 0 {
		n = DefaultBatchSize
	}
	b := &Batch{bufs: make([][]byte, n), Messages: make([]Received, 0, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, slotSize)
	}
	return b
}

// Cap is the number of datagrams the batch can hold.
func (b *Batch) Cap() int { return len(b.bufs) }

// Slot returns the buffer for datagram i; transports fill it before calling
// AddDatagram.
func (b *Batch) Slot(i int) []byte { return b.bufs[i] }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.Messages) // drop references to old payloads
	b.Messages = b.Messages[:0]
	clear(b.Malformed)
	b.Malformed = b.Malformed[:0]
	b.Lost, b.Datagrams, b.Bytes = 0, 0, 0
}

// AddDatagram decodes one datagram received from port from and group into
// the batch. Transports call it; it is exported for transports outside this
// package.
func (b *Batch) AddDatagram(data []byte, from, group uint32, creds Credentials) {
	b.Datagrams++
	b.Bytes += len(data)
	// The common datagram, one nlmsg holding one cn_msg and nothing else,
	// is decoded in place; anything else takes the general walk, which
	// gives the same result for this one.
	if len(data) >= NlmsgHeaderLen+CnMsgHeaderLen && int(order.Uint32(data)) == len(data) {
		switch order.Uint16(data[4:]) {
		case nlmsgNoop, nlmsgOverrun, nlmsgError:
		default:
			p := data[NlmsgHeaderLen:]
			if CnMsgHeaderLen+int(order.Uint16(p[16:])) == len(p) {
				b.Messages = append(b.Messages, Received{From: from, Group: group, Creds: creds})
				if b.Messages[len(b.Messages)-1].UnmarshalBinary(p) == nil {
					return
				}
				b.Messages = b.Messages[:len(b.Messages)-1] // the general walk reports why
			}
		}
	}
	if err := walkDatagram(data, func(m Message) {
		b.Messages = append(b.Messages, Received{Message: m, From: from, Group: group, Creds: creds})
	}); err != nil {
		b.AddMalformed(data, from, group, creds, err)
	}
}

// AddMalformed records a rejected datagram.
func (b *Batch) AddMalformed(data []byte, from, group uint32, creds Credentials, err error) {
	b.Malformed = append(b.Malformed, Malformed{From: from, Group: group, Creds: creds, Err: err, Data: data})
}
