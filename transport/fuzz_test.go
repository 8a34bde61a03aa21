package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"
)

// FuzzDecodeDatagram proves the decoder total and checks what it returns
// against the bytes it was given, not against the codec itself:
//
//   - every decoded message lies inside the datagram, after a netlink
//     header, in order and without overlap;
//   - the 20 bytes before each payload are its cn_msg header, and their
//     fields (len included) agree with the decoded message;
//   - a failure is a typed *DecodeError matching exactly one sentinel,
//     whose offset lies inside the datagram (or at its end), and a
//     datagram shorter than a netlink header never decodes;
//   - messages re-encoded into a datagram of their own decode to the same
//     values, without error.
//
// The seed corpus in testdata/fuzz holds datagrams captured from the
// kernel; run `go test -run '^$' -fuzz FuzzDecodeDatagram` to explore.
func FuzzDecodeDatagram(f *testing.F) {
	f.Add(mustHex(f, capturedProcAck))
	f.Add(mustHex(f, capturedFork))
	f.Add(append(nlmsg(nlmsgDone, 2, append(cn(2, 1, "bb"), cn(3, 1, "ccc")...)), nlmsg(nlmsgError, 0, []byte{0xff, 0xff, 0xff, 0xff})...))
	sentinels := []error{ErrShortDatagram, ErrNlmsgLen, ErrShortCnMsg, ErrCnMsgLen, ErrOversize,
		ErrNlmsgError, ErrNlmsgNoop, ErrNlmsgOverrun}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeDatagram(nil, b)
		if err != nil {
			checkDecodeError(t, err, b, sentinels)
		}
		if len(b) < NlmsgHeaderLen && (err == nil || len(msgs) > 0) {
			t.Fatalf("a %d-byte datagram decoded to %d messages, err %v", len(b), len(msgs), err)
		}
		end := NlmsgHeaderLen // no cn_msg header starts before the first netlink header ends
		for i, m := range msgs {
			hdr := headerOffset(t, b, m, end)
			if hdr+CnMsgHeaderLen+len(m.Data) > len(b) {
				t.Fatalf("message %d: cn_msg at [%d,%d) of a %d-byte datagram, previous message ended at %d",
					i, hdr, hdr+CnMsgHeaderLen+len(m.Data), len(b), end)
			}
			if len(m.Data) > MaxPayload || cap(m.Data) != len(m.Data) {
				t.Fatalf("message %d: payload len %d cap %d", i, len(m.Data), cap(m.Data))
			}
			end = hdr + CnMsgHeaderLen + len(m.Data)
		}
		var enc []byte
		for i := range msgs {
			if enc, err = AppendDatagram(enc, &msgs[i], 0, 0); err != nil {
				t.Fatal(err)
			}
			enc = append(enc, make([]byte, nlmsgAlign(len(enc))-len(enc))...)
		}
		if len(msgs) == 0 {
			return
		}
		back, err := DecodeDatagram(nil, enc)
		if err != nil || len(back) != len(msgs) {
			t.Fatalf("re-encoded %d messages decode to %d, err %v", len(msgs), len(back), err)
		}
		for i, m := range msgs {
			o := back[i]
			if o.ID != m.ID || o.Seq != m.Seq || o.Ack != m.Ack || o.Flags != m.Flags || !bytes.Equal(o.Data, m.Data) {
				t.Fatalf("re-encoding changed %+v into %+v", m, o)
			}
		}
	})
}

// headerOffset is where m's cn_msg header starts inside b: its payload
// follows the header, and the header's fields (len included) must be m's.
// It fails the test if no such header is where m's payload points, at or
// after end (where the previous message ended). An empty
// payload may point at its header rather than past it (Go keeps a slice of
// capacity 0 at its base), so both places are tried for it.
func headerOffset(t *testing.T, b []byte, m Message, end int) int {
	t.Helper()
	if len(b) == 0 {
		t.Fatal("a message decoded from nothing")
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))
	if p < base || p > base+uintptr(len(b)) {
		t.Fatalf("payload at %#x outside the datagram [%#x,%#x)", p, base, base+uintptr(len(b)))
	}
	off := int(p - base)
	candidates := []int{off - CnMsgHeaderLen}
	if len(m.Data) == 0 {
		candidates = []int{off, off - CnMsgHeaderLen}
	}
	for _, hdr := range candidates {
		if hdr >= end && hdr+CnMsgHeaderLen <= len(b) && headerIs(b[hdr:hdr+CnMsgHeaderLen], m) {
			return hdr
		}
	}
	t.Fatalf("message %+v: no matching cn_msg header before its payload at %d", m, off)
	return 0
}

// headerIs reports whether the 20 bytes h encode m's header.
func headerIs(h []byte, m Message) bool {
	u32 := func(o int) uint32 { return binary.NativeEndian.Uint32(h[o:]) }
	return u32(0) == m.ID.Idx && u32(4) == m.ID.Val && u32(8) == m.Seq && u32(12) == m.Ack &&
		int(binary.NativeEndian.Uint16(h[16:])) == len(m.Data) && binary.NativeEndian.Uint16(h[18:]) == m.Flags
}

func checkDecodeError(t *testing.T, err error, b []byte, sentinels []error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("untyped error %v", err)
	}
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v matches %d sentinels, want exactly one", err, n)
	}
	// A missing cn_msg header is reported where it would start, which may
	// be the end of the datagram.
	if de.Offset < 0 || de.Offset > len(b) {
		t.Fatalf("error offset %d outside a %d-byte datagram", de.Offset, len(b))
	}
	if errors.Is(err, ErrShortDatagram) != (len(b) < NlmsgHeaderLen) {
		t.Fatalf("%v for a %d-byte datagram", err, len(b))
	}
}

// FuzzAddDatagram: Batch.AddDatagram, which decodes the common datagram
// (one nlmsg, one cn_msg) in place, gives exactly what the general decoder
// gives for every input: the same messages, aliasing the same bytes, with
// the sender's metadata, or one malformed record with the same error.
func FuzzAddDatagram(f *testing.F) {
	f.Add(mustHex(f, capturedFork))
	f.Add(nlmsg(nlmsgDone, 1, cn(7, 9, "hello")))
	f.Add(nlmsg(nlmsgDone, 1, cn(7, 9, "")))
	f.Add(nlmsg(nlmsgError, 1, cn(7, 9, "x")))
	f.Add(nlmsg(nlmsgDone, 1, append(cn(2, 1, "bb"), cn(3, 1, "ccc")...)))
	creds := Credentials{PID: 3, UID: 4, GID: 5}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := DecodeDatagram(nil, data)
		b := NewBatch(1)
		b.AddDatagram(data, 11, 2, creds)
		if b.Datagrams != 1 || b.Bytes != len(data) {
			t.Fatalf("datagrams %d bytes %d, want 1 and %d", b.Datagrams, b.Bytes, len(data))
		}
		if werr != nil {
			if len(b.Malformed) != 1 || b.Malformed[0].Err.Error() != werr.Error() || len(b.Messages) != len(want) {
				t.Fatalf("AddDatagram gave %d messages and %+v; the decoder %d messages and %v", len(b.Messages), b.Malformed, len(want), werr)
			}
		} else if len(b.Malformed) != 0 || len(b.Messages) != len(want) {
			t.Fatalf("AddDatagram gave %d messages and %+v; the decoder %d messages", len(b.Messages), b.Malformed, len(want))
		}
		for i, m := range want {
			got := b.Messages[i]
			if got.From != 11 || got.Group != 2 || got.Creds != creds {
				t.Fatalf("message %d: metadata %d %d %+v", i, got.From, got.Group, got.Creds)
			}
			if got.ID != m.ID || got.Seq != m.Seq || got.Ack != m.Ack || got.Flags != m.Flags ||
				len(got.Data) != len(m.Data) || cap(got.Data) != cap(m.Data) ||
				(len(m.Data) > 0 && unsafe.SliceData(got.Data) != unsafe.SliceData(m.Data)) {
				t.Fatalf("message %d: %+v, want %+v (aliasing the same bytes)", i, got.Message, m)
			}
		}
	})
}
