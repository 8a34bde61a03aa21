package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// Datagrams captured from the proc connector of the development kernel
// (Linux 6.18, x86-64) with SO_PASSCRED on.
const (
	// Ack of a LISTEN sent with ack 0x1234: what = 0 (NONE), ack + 1, err 0.
	capturedProcAck = "4c000000030000000000000000000000" + // nlmsghdr: len 76, NLMSG_DONE
		"01000000010000000000000035120000" + "28000000" + // cn_msg 1:1 seq 0 ack 0x1235 len 40
		"000000000100000050e3788934000000000000000000000000000000000000000000000000000000"
	// Fork of pid 4511 by 4505: what 1, cpu 1.
	capturedFork = "4c000000030000000200000000000000" +
		"01000000010000000200000000000000" + "28000000" +
		"0100000001000000c5ee7c893400000099110000991100009f1100009f1100000000000000000000"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeCapturedDatagrams(t *testing.T) {
	u32 := binary.LittleEndian.Uint32
	tests := []struct {
		name string
		hex  string
		want Message
		what uint32
		pids []uint32 // the union's first words
	}{
		{"proc ack", capturedProcAck, Message{ID: CbID{1, 1}, Seq: 0, Ack: 0x1235}, 0, []uint32{0}},
		{"fork", capturedFork, Message{ID: CbID{1, 1}, Seq: 2}, 1, []uint32{4505, 4505, 4511, 4511}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustHex(t, tt.hex)
			msgs, err := DecodeDatagram(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.ID != tt.want.ID || m.Seq != tt.want.Seq || m.Ack != tt.want.Ack || m.Flags != 0 || len(m.Data) != 40 {
				t.Fatalf("got %+v", m)
			}
			if got := u32(m.Data); got != tt.what {
				t.Errorf("what = %#x, want %#x", got, tt.what)
			}
			for i, p := range tt.pids {
				if got := u32(m.Data[16+4*i:]); got != p {
					t.Errorf("union word %d = %d, want %d", i, got, p)
				}
			}
			// Re-encoding yields the same bytes.
			again, err := AppendDatagram(nil, &m, order.Uint32(b[8:]), order.Uint32(b[12:]))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("re-encoded\n%x\nwant\n%x", again, b)
			}
		})
	}
}

func TestAppendDatagramLayout(t *testing.T) {
	m := Message{ID: CbID{Idx: 0x0a0b0c0d, Val: 0x01020304}, Seq: 5, Ack: 6, Flags: 0x0102, Data: []byte("hi!")}
	got, err := AppendDatagram(nil, &m, 5, 77)
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, ""+
		"27000000"+"0300"+"0000"+"05000000"+"4d000000"+ // len 39, NLMSG_DONE, flags 0, seq 5, pid 77
		"0d0c0b0a"+"04030201"+"05000000"+"06000000"+"0300"+"0201"+ // cn_msg header
		"686921") // data
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	cn, _ := m.MarshalBinary()
	if !bytes.Equal(cn, want[NlmsgHeaderLen:]) {
		t.Fatalf("MarshalBinary = %x", cn)
	}
	var back Message
	if err := back.UnmarshalBinary(cn); err != nil {
		t.Fatal(err)
	}
	if back.ID != m.ID || back.Seq != 5 || back.Ack != 6 || back.Flags != 0x0102 || string(back.Data) != "hi!" {
		t.Fatalf("round trip = %+v", back)
	}
}

func TestRoundTripSizes(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 64, 4096, MaxPayload} {
		m := Message{ID: CbID{7, 1}, Seq: uint32(n), Ack: ^uint32(0), Flags: 0xffff, Data: bytes.Repeat([]byte{byte(n)}, n)}
		b, err := AppendDatagram(nil, &m, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := DecodeDatagram(nil, b)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("n=%d: %v, %d messages", n, err, len(msgs))
		}
		g := msgs[0]
		if g.ID != m.ID || g.Seq != m.Seq || g.Ack != m.Ack || g.Flags != m.Flags || !bytes.Equal(g.Data, m.Data) {
			t.Fatalf("n=%d: round trip mismatch", n)
		}
	}
}

// nlmsg builds one nlmsg with the given type, flags and payload, padded to 4.
func nlmsg(typ, flags uint16, payload []byte) []byte {
	b := order.AppendUint32(nil, uint32(NlmsgHeaderLen+len(payload)))
	b = order.AppendUint16(b, typ)
	b = order.AppendUint16(b, flags)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 0)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cn(idx, val uint32, data string) []byte {
	m := Message{ID: CbID{idx, val}, Data: []byte(data)}
	b, _ := m.MarshalBinary()
	return b
}

func TestDecodeMultiple(t *testing.T) {
	const nlmF_MULTI = 0x2
	// Two nlmsgs, the second holding two cn_msgs back to back (as
	// cn_netlink_send_mult writes them) and flagged NLM_F_MULTI.
	dgram := append(nlmsg(nlmsgDone, 0, cn(1, 1, "a")),
		nlmsg(nlmsgDone, nlmF_MULTI, append(cn(2, 1, "bb"), cn(3, 1, "ccc")...))...)
	msgs, err := DecodeDatagram(nil, dgram)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.ID.String()+"="+string(m.Data))
	}
	want := []string{"1:1=a", "2:1=bb", "3:1=ccc"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := nlmsg(nlmsgDone, 0, cn(1, 1, "ok"))
	setLen := func(b []byte, off int, n uint32) []byte {
		b = bytes.Clone(b)
		order.PutUint32(b[off:], n)
		return b
	}
	setCnLen := func(b []byte, n uint16) []byte {
		b = bytes.Clone(b)
		order.PutUint16(b[NlmsgHeaderLen+16:], n)
		return b
	}
	errPayload := order.AppendUint32(nil, uint32(0xffffffff-uint32(syscall.EPERM)+1)) // -EPERM
	tests := []struct {
		name     string
		dgram    []byte
		want     error
		errno    syscall.Errno
		goodMsgs int
	}{
		{"empty", nil, ErrShortDatagram, 0, 0},
		{"short header", good[:15], ErrShortDatagram, 0, 0},
		{"nlmsg_len past datagram", setLen(good, 0, uint32(len(good)+1)), ErrNlmsgLen, 0, 0},
		{"nlmsg_len below header", setLen(good, 0, 8), ErrNlmsgLen, 0, 0},
		{"no cn_msg header", nlmsg(nlmsgDone, 0, make([]byte, 19)), ErrShortCnMsg, 0, 0},
		{"cn_msg len past nlmsg", setCnLen(good, 3), ErrCnMsgLen, 0, 0},
		{"oversize cn_msg len", setCnLen(good, MaxPayload+1), ErrOversize, 0, 0},
		{"NLMSG_ERROR", nlmsg(nlmsgError, 0, errPayload), ErrNlmsgError, syscall.EPERM, 0},
		{"NLMSG_NOOP", nlmsg(nlmsgNoop, 0, nil), ErrNlmsgNoop, 0, 0},
		{"NLMSG_OVERRUN", nlmsg(nlmsgOverrun, 0, nil), ErrNlmsgOverrun, 0, 0},
		{"good then bad", append(bytes.Clone(good), setLen(good, 0, 100)...), ErrNlmsgLen, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := DecodeDatagram(nil, tt.dgram)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *DecodeError", err)
			}
			if tt.errno != 0 && !errors.Is(err, tt.errno) {
				t.Errorf("err = %v, want errno %v", err, tt.errno)
			}
			if len(msgs) != tt.goodMsgs {
				t.Errorf("decoded %d messages before the fault, want %d", len(msgs), tt.goodMsgs)
			}
		})
	}
}

func TestDecodeTolerates(t *testing.T) {
	tests := []struct {
		name  string
		dgram []byte
	}{
		// The kernel reads nothing after cn_msg.len; neither do we.
		{"trailing padding", nlmsg(nlmsgDone, 0, append(cn(1, 1, "x"), 0, 0, 0))},
		// Any type other than NOOP/ERROR/OVERRUN carries a cn_msg.
		{"user nlmsg type", nlmsg(0x20, 0, cn(1, 1, "x"))},
		{"request flags", nlmsg(nlmsgDone, 0x1|0x4, cn(1, 1, "x"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := DecodeDatagram(nil, tt.dgram)
			if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "x" {
				t.Fatalf("got %v, %+v", err, msgs)
			}
		})
	}
}

func TestOversizeRefused(t *testing.T) {
	m := Message{Data: make([]byte, MaxPayload+1)}
	if _, err := AppendDatagram(nil, &m, 0, 0); !errors.Is(err, ErrOversize) {
		t.Fatalf("AppendDatagram err = %v", err)
	}
	if _, err := m.MarshalBinary(); !errors.Is(err, ErrOversize) {
		t.Fatalf("MarshalBinary err = %v", err)
	}
}

func TestParseCbID(t *testing.T) {
	tests := []struct {
		in      string
		want    CbID
		wantErr bool
	}{
		{"7:1", CbID{7, 1}, false},
		{"0x10:0xff", CbID{16, 255}, false},
		{"4294967295:4294967295", CbID{^uint32(0), ^uint32(0)}, false},
		{"7", CbID{}, true},
		{"7:", CbID{}, true},
		{"x:1", CbID{}, true},
		{"4294967296:1", CbID{}, true},
	}
	for _, tt := range tests {
		got, err := ParseCbID(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCbID(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && got.String() != tt.in && tt.in[0] != '0' {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestBatchAddDatagramAllocs(t *testing.T) {
	b := NewBatch(4)
	d := mustHex(t, capturedFork)
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		b.AddDatagram(d, 0, 1, Credentials{})
	})
	if allocs != 0 {
		t.Fatalf("AddDatagram allocates %v times per datagram", allocs)
	}
}

// A bad nlmsg_len says which way it is wrong: shorter than its header
// (0 or 8), or longer than what is left of the datagram.
func TestNlmsgLenReported(t *testing.T) {
	good, err := AppendDatagram(nil, &Message{ID: CbID{Idx: 1, Val: 2}, Data: []byte("x")}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		nlLen uint32
		want  string
	}{
		{0, "nlmsg_len 0 is shorter than its 16-byte header"},
		{8, "nlmsg_len 8 is shorter than its 16-byte header"},
		{uint32(len(good)) + 100, fmt.Sprintf("nlmsg_len %d runs past the %d bytes left", len(good)+100, len(good))},
	} {
		d := bytes.Clone(good)
		binary.NativeEndian.PutUint32(d, tc.nlLen)
		_, err := DecodeDatagram(nil, d)
		if !errors.Is(err, ErrNlmsgLen) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nlmsg_len %d: %v, want ErrNlmsgLen saying %q", tc.nlLen, err, tc.want)
		}
	}
}
