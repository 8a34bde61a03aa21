package transport

import (
	"fmt"
	"strconv"
	"strings"
)

// Wire sizes of the kernel ABI.
const (
	NlmsgHeaderLen = 16    // struct nlmsghdr
	CnMsgHeaderLen = 20    // struct cn_msg without data
	MaxPayload     = 16384 // CONNECTOR_MAX_MSG_SIZE: the kernel drops anything larger
	MaxGroup       = 32    // groups 1..32 can be joined

	// MaxDatagram is the largest datagram holding one cn_msg with a full payload.
	MaxDatagram = NlmsgHeaderLen + CnMsgHeaderLen + MaxPayload
)

// Netlink message types that carry no cn_msg.
const (
	nlmsgNoop    = 0x1
	nlmsgError   = 0x2
	nlmsgDone    = 0x3
	nlmsgOverrun = 0x4
)

// CbID is a connector callback id, struct cb_id in the kernel.
type CbID struct {
	Idx uint32
	Val uint32
}

// String formats the id as "idx:val", the notation cnctl accepts.
func (id CbID) String() string {
	return strconv.FormatUint(uint64(id.Idx), 10) + ":" + strconv.FormatUint(uint64(id.Val), 10)
}

// ParseCbID parses "IDX:VAL" where each number is decimal or 0x hex.
func ParseCbID(s string) (CbID, error) {
	idx, val, ok := strings.Cut(s, ":")
	if !ok {
		return CbID{}, fmt.Errorf("transport: callback id %q: want IDX:VAL", s)
	}
	i, err := parseUint32(idx)
	if err != nil {
		return CbID{}, fmt.Errorf("transport: callback id %q: idx: %w", s, err)
	}
	v, err := parseUint32(val)
	if err != nil {
		return CbID{}, fmt.Errorf("transport: callback id %q: val: %w", s, err)
	}
	return CbID{Idx: i, Val: v}, nil
}

// parseUint32 parses a decimal or 0x-prefixed hexadecimal 32-bit number.
func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

// Message is one cn_msg: the id it is routed by, the seq/ack pair of the
// connector's request/reply protocol, flags, and the payload.
type Message struct {
	ID    CbID
	Seq   uint32
	Ack   uint32
	Flags uint16
	Data  []byte
}

// Addr is where a message goes: a port id (0 is the kernel) or, when Group is
// non-zero, every member of that multicast group.
type Addr struct {
	Port  uint32
	Group uint32
}

// Kernel is the address of the kernel's connector socket (port 0, no
// group): a function, so that no package can redirect everyone's sends.
func Kernel() Addr { return Addr{} }

// String formats the address as "port=P" or "group=G".
func (a Addr) String() string {
	if a.Group != 0 {
		return "group=" + strconv.FormatUint(uint64(a.Group), 10)
	}
	return "port=" + strconv.FormatUint(uint64(a.Port), 10)
}

// Credentials are the sender's pid, uid and gid as the kernel reported them
// (SCM_CREDENTIALS). Messages from the kernel carry zeros.
type Credentials struct {
	PID uint32
	UID uint32
	GID uint32
}

// Received is a message as it arrived, with what the receiving socket knows
// about its origin. Data aliases the Batch it came in and is valid until that
// Batch is reused.
type Received struct {
	Message
	// From is the sender's port id as the kernel saw it (0 = the kernel).
	// Unlike the nlmsg_pid header field it cannot be forged.
	From uint32
	// Group is the multicast group the message was sent to, 0 for unicast.
	Group uint32
	// Creds are the sender's credentials.
	Creds Credentials
}
