package cnactor_test

import (
	"encoding/binary"
	"testing"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// A stuck handler costs only its own messages: the others keep receiving
// everything, and what the stuck one cannot take is dropped and counted
// exactly.
func TestStuckHandlerCostsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	c, net := newMemConnector(t)
	peer := dialPeer(t, net)
	stuckID, healthyID := transport.CbID{Idx: 0x7700, Val: 1}, transport.CbID{Idx: 0x7700, Val: 2}

	const mailbox = 16
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(gate)
		}
	}()
	stuck := handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
		return nil
	})
	if err := c.AddCallback(stuckID, "stuck", stuck, cnactor.WithMailbox(mailbox, cnactor.DropNewest)); err != nil {
		t.Fatal(err)
	}
	const n = 2000 // to the healthy handler
	healthy := &handlers.Counter{}
	if err := c.AddCallback(healthyID, "healthy", healthy, cnactor.WithMailbox(n, cnactor.DropNewest)); err != nil {
		t.Fatal(err)
	}

	// The stuck handler takes its first message and blocks in it.
	sendTo(t, peer, c, stuckID, 0, "first")
	<-entered
	var toStuck uint64 = 1
	for i := range uint32(n) {
		sendTo(t, peer, c, healthyID, i, "ok")
		if i%8 == 0 {
			sendTo(t, peer, c, stuckID, i+1, "more")
			toStuck++
		}
	}
	waitFor(t, "the healthy handler to get everything", func() bool { return info(t, c, healthyID).Handled == n })
	waitFor(t, "every message to the stuck handler routed", func() bool { return info(t, c, stuckID).Received == toStuck })

	h, s := info(t, c, healthyID), info(t, c, stuckID)
	if h.Handled != n || h.Dropped != 0 || h.Failed != 0 {
		t.Errorf("healthy handler: %+v, want all %d handled", h.CallbackStats, n)
	}
	// The mailbox's capacity counts the message in progress too.
	if want := toStuck - mailbox; s.Dropped != want {
		t.Errorf("stuck handler dropped %d, want %d sent - %d queued (1 in progress) = %d", s.Dropped, toStuck, mailbox, want)
	}
	if s.Queued != mailbox || s.Handled != 0 || s.Mailbox != mailbox || s.Overflow != cnactor.DropNewest {
		t.Errorf("stuck handler: %+v (mailbox %d %v), want %d queued with the one in progress", s.CallbackStats, s.Mailbox, s.Overflow, mailbox)
	}

	// Released, it handles what it kept, and nothing is unaccounted.
	close(gate)
	released = true
	waitFor(t, "the stuck handler to catch up", func() bool { return info(t, c, stuckID).Handled == mailbox })
	s = info(t, c, stuckID)
	if s.Received != s.Handled+s.Dropped || s.Queued != 0 {
		t.Errorf("released: %+v", s.CallbackStats)
	}
}

// Malformed datagrams are counted and rejected without disturbing the
// connector; valid messages before the fault in the same datagram count.
func TestMalformedDatagrams(t *testing.T) {
	t.Parallel()
	c, net, inj := newInjectConnector(t)
	peer := dialPeer(t, net)
	id := transport.CbID{Idx: 0x7701, Val: 1}
	rec := &recorder{}
	if err := c.AddCallback(id, "rec", rec); err != nil {
		t.Fatal(err)
	}
	good, err := transport.AppendDatagram(nil, &transport.Message{ID: id, Seq: 100, Data: []byte("good")}, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(length uint32, typ uint16) []byte {
		b := binary.NativeEndian.AppendUint32(nil, length)
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = binary.NativeEndian.AppendUint16(b, 0)
		return append(b, make([]byte, 8)...)
	}
	bad := map[string][]byte{
		"empty":                  {},
		"shorter than a header":  {1, 2, 3},
		"nlmsg_len beyond":       append(hdr(200, 3), make([]byte, 24)...),
		"nlmsg_len below header": append(hdr(4, 3), make([]byte, 24)...),
		"no cn_msg":              hdr(16, 3),
		"cn_msg len beyond": func() []byte {
			b := append([]byte(nil), good...)
			binary.NativeEndian.PutUint16(b[16+16:], 200)
			return b
		}(),
		"NLMSG_ERROR": append(hdr(20, 2), 0xfe, 0xff, 0xff, 0xff),
		"NLMSG_NOOP":  hdr(16, 1),
		"valid, then garbage": func() []byte {
			b := append([]byte(nil), good...)
			binary.NativeEndian.PutUint32(b[8:], 101) // seq in the nlmsghdr only
			return append(b, hdr(300, 3)...)
		}(),
	}
	for name, data := range bad {
		inj.inject(peer, transport.Credentials{}, data)
		sendTo(t, peer, c, id, 1, name) // carries the injected datagram in
	}
	n := uint64(len(bad))
	waitFor(t, "the malformed datagrams", func() bool { return c.Stats().Reader.Malformed == n })
	// One valid message per send, plus the one before the garbage.
	waitFor(t, "the valid messages", func() bool { return rec.count() == int(n)+1 })
	if r := c.Stats().Reader; r.Datagrams != 2*n || r.Messages != n+1 || r.Unknown != 0 {
		t.Errorf("reader counters %+v, want %d datagrams, %d messages", r, 2*n, n+1)
	}

	// Still serving.
	sendTo(t, peer, c, id, 2, "after")
	waitFor(t, "a message after the bad ones", func() bool { return rec.count() == int(n)+2 })
}
