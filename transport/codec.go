package transport

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// Host byte order: the connector ABI is native-endian. cnactor supports the
// little-endian Linux architectures Go runs on; see codec_test.go.
var order = binary.NativeEndian

// Validate reports whether the message can be sent: its payload must fit in
// MaxPayload bytes.
func (m *Message) Validate() error {
	if len(m.Data) > MaxPayload {
		return &DecodeError{Err: ErrOversize}
	}
	return nil
}

// AppendBinary appends the cn_msg encoding of m (header and data) to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return b, err
	}
	b = order.AppendUint32(b, m.ID.Idx)
	b = order.AppendUint32(b, m.ID.Val)
	b = order.AppendUint32(b, m.Seq)
	b = order.AppendUint32(b, m.Ack)
	b = order.AppendUint16(b, uint16(len(m.Data)))
	b = order.AppendUint16(b, m.Flags)
	return append(b, m.Data...), nil
}

// MarshalBinary returns the cn_msg encoding of m.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, CnMsgHeaderLen+len(m.Data)))
}

// UnmarshalBinary decodes exactly one cn_msg from b. Data aliases b. Bytes
// after the cn_msg's len are ignored, as the kernel does.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < CnMsgHeaderLen {
		return &DecodeError{Err: ErrShortCnMsg}
	}
	n := int(order.Uint16(b[16:]))
	if n > MaxPayload {
		return &DecodeError{Err: ErrOversize}
	}
	if CnMsgHeaderLen+n > len(b) {
		return &DecodeError{Err: ErrCnMsgLen}
	}
	m.ID.Idx = order.Uint32(b[0:])
	m.ID.Val = order.Uint32(b[4:])
	m.Seq = order.Uint32(b[8:])
	m.Ack = order.Uint32(b[12:])
	m.Flags = order.Uint16(b[18:])
	m.Data = b[CnMsgHeaderLen : CnMsgHeaderLen+n : CnMsgHeaderLen+n]
	return nil
}

// AppendDatagram appends a complete datagram, an nlmsghdr of type NLMSG_DONE
// followed by the cn_msg, to b. nlSeq and nlPort fill the header's
// nlmsg_seq and nlmsg_pid; the kernel uses the cn_msg seq, so nlSeq is
// conventionally the same value.
func AppendDatagram(b []byte, m *Message, nlSeq, nlPort uint32) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return b, err
	}
	b = order.AppendUint32(b, uint32(NlmsgHeaderLen+CnMsgHeaderLen+len(m.Data)))
	b = order.AppendUint16(b, nlmsgDone)
	b = order.AppendUint16(b, 0)
	b = order.AppendUint32(b, nlSeq)
	b = order.AppendUint32(b, nlPort)
	return m.AppendBinary(b)
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// DecodeDatagram appends every cn_msg of datagram b to dst and returns it.
// Data of each message aliases b. On malformed input it returns the messages
// decoded before the fault and a *DecodeError; it never panics. NLM_F_MULTI
// and the other header flags do not change how a message is read.
func DecodeDatagram(dst []Message, b []byte) ([]Message, error) {
	err := walkDatagram(b, func(m Message) { dst = append(dst, m) })
	return dst, err
}

// walkDatagram calls fn for each cn_msg in datagram b, stopping at the first
// fault. A datagram may hold several nlmsgs, each aligned to 4 bytes.
func walkDatagram(b []byte, fn func(Message)) error {
	if len(b) < NlmsgHeaderLen {
		return &DecodeError{Err: ErrShortDatagram}
	}
	for off := 0; off+NlmsgHeaderLen <= len(b); {
		nlLen := int(order.Uint32(b[off:]))
		if nlLen < NlmsgHeaderLen {
			return &DecodeError{Err: ErrNlmsgLen, Offset: off,
				Detail: fmt.Sprintf("nlmsg_len %d is shorter than its %d-byte header", nlLen, NlmsgHeaderLen)}
		}
		if nlLen > len(b)-off {
			return &DecodeError{Err: ErrNlmsgLen, Offset: off,
				Detail: fmt.Sprintf("nlmsg_len %d runs past the %d bytes left", nlLen, len(b)-off)}
		}
		switch order.Uint16(b[off+4:]) {
		case nlmsgNoop:
			return &DecodeError{Err: ErrNlmsgNoop, Offset: off}
		case nlmsgOverrun:
			return &DecodeError{Err: ErrNlmsgOverrun, Offset: off}
		case nlmsgError:
			e := &DecodeError{Err: ErrNlmsgError, Offset: off}
			if nlLen >= NlmsgHeaderLen+4 {
				if code := int32(order.Uint32(b[off+NlmsgHeaderLen:])); code < 0 {
					e.Errno = syscall.Errno(-code)
				}
			}
			return e
		}
		if err := walkCnMsgs(b[off+NlmsgHeaderLen:off+nlLen], off+NlmsgHeaderLen, fn); err != nil {
			return err
		}
		off += nlmsgAlign(nlLen)
	}
	return nil
}

// walkCnMsgs decodes the cn_msgs packed back to back in one nlmsg payload,
// as the kernel's cn_netlink_send_mult writes them.
func walkCnMsgs(p []byte, base int, fn func(Message)) error {
	if len(p) < CnMsgHeaderLen {
		return &DecodeError{Err: ErrShortCnMsg, Offset: base}
	}
	// Fewer trailing bytes than a header after the last cn_msg are padding,
	// which the kernel accepts too.
	for off := 0; len(p)-off >= CnMsgHeaderLen; {
		var m Message
		if err := m.UnmarshalBinary(p[off:]); err != nil {
			err.(*DecodeError).Offset = base + off
			return err
		}
		fn(m)
		off += CnMsgHeaderLen + len(m.Data)
	}
	return nil
}
