package transport

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeDatagram proves the decoder total: any input yields messages
// that lie inside the datagram and re-encode to themselves, or a typed
// error, never a panic. The seed corpus in testdata/fuzz holds datagrams
// captured from the kernel; run `go test -fuzz FuzzDecodeDatagram` to explore.
func FuzzDecodeDatagram(f *testing.F) {
	f.Add(mustHex(f, capturedProcAck))
	f.Add(mustHex(f, capturedFork))
	f.Add(append(nlmsg(nlmsgDone, 2, append(cn(2, 1, "bb"), cn(3, 1, "ccc")...)), nlmsg(nlmsgError, 0, []byte{0xff, 0xff, 0xff, 0xff})...))
	sentinels := []error{ErrShortDatagram, ErrNlmsgLen, ErrShortCnMsg, ErrCnMsgLen, ErrOversize,
		ErrNlmsgError, ErrNlmsgNoop, ErrNlmsgOverrun}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := DecodeDatagram(nil, b)
		if err != nil {
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("untyped error %v", err)
			}
		}
		total := 0
		for _, m := range msgs {
			total += CnMsgHeaderLen + len(m.Data)
			if len(m.Data) > MaxPayload {
				t.Fatalf("payload of %d bytes accepted", len(m.Data))
			}
			enc, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var back Message
			if err := back.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			if back.ID != m.ID || back.Seq != m.Seq || back.Ack != m.Ack || back.Flags != m.Flags || !bytes.Equal(back.Data, m.Data) {
				t.Fatalf("re-encoding changed %+v into %+v", m, back)
			}
		}
		if total+NlmsgHeaderLen*min(len(msgs), 1) > len(b) {
			t.Fatalf("decoded %d bytes of messages from a %d-byte datagram", total, len(b))
		}
	})
}
