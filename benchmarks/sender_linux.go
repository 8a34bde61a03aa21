//go:build linux

package benchmarks

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// sender is the traffic source: full rate, one thread, the ids in turn.
type sender interface {
	target(to transport.Addr)
	// fill sends n messages, or fewer if the receiver cannot queue them.
	fill(n int) int
	// run sends at full rate until stop is set. stopped is closed at the
	// same moment: a sender that only waits (the sender process's
	// controller) waits on it rather than polling stop, which would wake
	// a thread of the receiver's process every poll.
	run(stop *atomic.Bool, stopped <-chan struct{})
	sent() uint64
	// perID is how many messages went to each id (by index), once the
	// sender has stopped.
	perID() []uint64
	err() error
	close()
}

// netSender adapts rawSender to sender.
type netSender struct{ *rawSender }

func (s netSender) sent() uint64 { return s.rawSender.sent.Load() }
func (s netSender) err() error {
	if s.errno != 0 {
		return s.errno
	}
	return nil
}
func (s netSender) perID() []uint64 { return s.ids }

// memSender sends through a memory endpoint, one Send per message.
type memSender struct {
	conn  *memory.Conn
	msgs  []transport.Message
	to    transport.Addr
	next  int
	count atomic.Uint64
	ids   []uint64
	last  error
}

func newMemSender(n *memory.Network, ids []transport.CbID, payload int) (*memSender, error) {
	conn, err := n.Dial(memory.WithSendTimeout(50 * time.Millisecond))
	if err != nil {
		return nil, err
	}
	s := &memSender{conn: conn, ids: make([]uint64, len(ids))}
	data := make([]byte, payload)
	for i, id := range ids {
		s.msgs = append(s.msgs, transport.Message{ID: id, Seq: uint32(i), Data: data})
	}
	return s, nil
}

func (s *memSender) target(to transport.Addr) { s.to = to }
func (s *memSender) send(n int, stop *atomic.Bool) int {
	ctx := context.Background()
	done := 0
	for done < n && (stop == nil || !stop.Load()) {
		i := s.next
		err := s.conn.Send(ctx, s.to, &s.msgs[i])
		if err != nil {
			if errors.Is(err, transport.ErrSendTimeout) {
				if stop == nil {
					return done
				}
				continue
			}
			s.last = err
			return done
		}
		s.next = (i + 1) % len(s.msgs)
		s.ids[i]++
		s.count.Add(1)
		done++
	}
	return done
}
func (s *memSender) fill(n int) int { return s.send(n, nil) }
func (s *memSender) run(stop *atomic.Bool, _ <-chan struct{}) {
	for !stop.Load() && s.last == nil {
		s.send(1<<30, stop)
	}
}
func (s *memSender) sent() uint64    { return s.count.Load() }
func (s *memSender) perID() []uint64 { return s.ids }
func (s *memSender) err() error      { return s.last }
func (s *memSender) close()          { s.conn.Close() }
