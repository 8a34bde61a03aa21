package faulty

import (
	"context"
	"sync"

	"github.com/cnactor/cnactor/transport"
)

// receiver is the receive path's state. The wrapped Conn fills stage; its
// contents are re-framed into owned datagrams (one cn_msg each), the batch
// transforms run on those, and the survivors wait in pending until a
// caller's Batch takes them, up to its capacity per call.
type receiver struct {
	mu      sync.Mutex // serialises receives, as the wrapped Conn does
	stage   *transport.Batch
	pending []datagram
	held    []datagram // a Reorder'd batch, delivered after the next one
	lost    uint64     // loss not yet reported in a Batch
}

type datagram struct {
	data        []byte // owned
	from, group uint32
	creds       transport.Credentials
	err         error // non-nil: reported in Batch.Malformed as is
}

// ReceiveBatch fills b from the wrapped Conn, applying the Receive faults.
// Errors of the wrapped Conn are returned unchanged.
func (c *Conn) ReceiveBatch(ctx context.Context, b *transport.Batch) error {
	r := &c.recv
	r.mu.Lock()
	defer r.mu.Unlock()
	b.Reset()
	if _, err := c.before(ctx, Receive, transport.Addr{}, nil); err != nil {
		return &transport.OpError{Op: "receive", Err: err}
	}
	// A batch that was held back or dropped entirely leaves nothing to
	// deliver: receive again, as a socket would still be waiting.
	for len(r.pending) == 0 && r.lost == 0 {
		if err := c.inner.ReceiveBatch(ctx, r.stage); err != nil {
			return err
		}
		c.take(r.stage)
	}
	r.emit(b)
	return nil
}

// TryReceiveBatch is ReceiveBatch without waiting. When the wrapped Conn
// has nothing, a batch held back by Reorder is delivered: nothing else is
// coming to overtake it.
func (c *Conn) TryReceiveBatch(b *transport.Batch) (bool, error) {
	r := &c.recv
	r.mu.Lock()
	defer r.mu.Unlock()
	b.Reset()
	if _, err := c.before(context.Background(), Receive, transport.Addr{}, nil); err != nil {
		return false, &transport.OpError{Op: "receive", Err: err}
	}
	if len(r.pending) == 0 && r.lost == 0 {
		got, err := c.inner.TryReceiveBatch(r.stage)
		if err != nil {
			return false, err
		}
		if got {
			c.take(r.stage)
		} else {
			r.pending, r.held = append(r.pending, r.held...), nil
		}
	}
	r.emit(b)
	return b.Datagrams > 0 || b.Lost > 0, nil
}

// take moves what the wrapped Conn returned into pending, through the
// batch transforms that hit it.
func (c *Conn) take(s *transport.Batch) {
	r := &c.recv
	r.lost += s.Lost
	if s.Datagrams == 0 {
		return
	}
	ds := make([]datagram, 0, len(s.Messages)+len(s.Malformed))
	for i := range s.Messages {
		m := &s.Messages[i]
		data, err := transport.AppendDatagram(nil, &m.Message, m.Seq, m.From)
		ds = append(ds, datagram{data: data, from: m.From, group: m.Group, creds: m.Creds, err: err})
	}
	for _, m := range s.Malformed {
		ds = append(ds, datagram{data: append([]byte(nil), m.Data...), from: m.From, group: m.Group, creds: m.Creds, err: m.Err})
	}
	reorder := false
	for _, f := range c.match(Receive, true, transport.Addr{}, nil) {
		for i := range ds {
			d := &ds[i]
			if f.Corrupt != nil && d.err == nil {
				d.data = f.Corrupt(d.data)
			}
			if f.Truncate > 0 && len(d.data) > f.Truncate {
				d.data, d.err = d.data[:f.Truncate], &transport.DecodeError{Err: transport.ErrTruncated}
			}
		}
		if f.Drop {
			r.lost += uint64(len(ds))
			ds = nil
		}
		reorder = reorder || f.Reorder
	}
	// A batch held earlier goes out right after this one.
	release := r.held
	r.held = nil
	if reorder {
		r.held = ds
	} else {
		r.pending = append(r.pending, ds...)
	}
	r.pending = append(r.pending, release...)
}

// emit moves up to b.Cap() pending datagrams, and the loss not yet
// reported, into b.
func (r *receiver) emit(b *transport.Batch) {
	n := min(len(r.pending), b.Cap())
	for i, d := range r.pending[:n] {
		slot := b.Slot(i)
		data := slot[:copy(slot, d.data)]
		switch {
		case len(data) < len(d.data): // Corrupt grew it past a slot
			d.err = &transport.DecodeError{Err: transport.ErrTruncated}
			fallthrough
		case d.err != nil:
			b.Datagrams++
			b.Bytes += len(data)
			b.AddMalformed(data, d.from, d.group, d.creds, d.err)
		default:
			b.AddDatagram(data, d.from, d.group, d.creds)
		}
	}
	clear(r.pending[:n])
	r.pending = r.pending[n:]
	b.Lost, r.lost = r.lost, 0
}
