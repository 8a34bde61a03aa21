package transport

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Malformed input. Every DecodeError unwraps to exactly one of these.
var (
	// ErrShortDatagram: fewer bytes than a netlink header.
	ErrShortDatagram = errors.New("transport: datagram shorter than a netlink header")
	// ErrNlmsgLen: nlmsg_len is shorter than its header or runs past the datagram.
	ErrNlmsgLen = errors.New("transport: bad nlmsg_len")
	// ErrShortCnMsg: the nlmsg payload is too short for a cn_msg header.
	ErrShortCnMsg = errors.New("transport: nlmsg too short for a cn_msg header")
	// ErrCnMsgLen: cn_msg len runs past the nlmsg.
	ErrCnMsgLen = errors.New("transport: cn_msg len beyond the nlmsg")
	// ErrOversize: a payload larger than MaxPayload.
	ErrOversize = errors.New("transport: payload larger than 16384 bytes")
	// ErrTruncated: the datagram was larger than the receive buffer slot.
	ErrTruncated = errors.New("transport: datagram truncated by the receive buffer")
	// ErrNlmsgError: an NLMSG_ERROR message; the DecodeError carries its errno.
	ErrNlmsgError = errors.New("transport: NLMSG_ERROR message")
	// ErrNlmsgNoop: an NLMSG_NOOP message.
	ErrNlmsgNoop = errors.New("transport: NLMSG_NOOP message")
	// ErrNlmsgOverrun: an NLMSG_OVERRUN message.
	ErrNlmsgOverrun = errors.New("transport: NLMSG_OVERRUN message")
)

// Usage errors.
var (
	// ErrClosed is returned by operations on a closed Conn, and by every
	// other closed thing of cnactor (Connector, proc Monitor, remote Node
	// and Subscriber): it is the one ErrClosed, and it wraps net.ErrClosed,
	// so errors.Is(err, net.ErrClosed) holds too.
	ErrClosed = fmt.Errorf("cnactor: closed: %w", net.ErrClosed)
	// ErrInvalidGroup: a group outside 1..MaxGroup.
	ErrInvalidGroup = errors.New("transport: group outside 1..32")
	// ErrSendTimeout: a unicast receiver stayed full for the whole send timeout.
	ErrSendTimeout = errors.New("transport: send timed out: receiver queue full")
	// ErrNotSupported: the kernel connector is not available on this platform.
	ErrNotSupported = errors.New("transport: netlink connector not supported on this platform")
)

// DecodeError describes a malformed datagram: what is wrong and where.
type DecodeError struct {
	Err    error         // one of the Err* values above
	Offset int           // byte offset of the offending header in the datagram
	Errno  syscall.Errno // for ErrNlmsgError, the error code it carried
	Detail string        // the numbers behind the fault, for people
}

func (e *DecodeError) Error() string {
	msg := fmt.Sprintf("%v at offset %d", e.Err, e.Offset)
	if e.Errno != 0 {
		msg += ": " + e.Errno.Error()
	}
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Unwrap returns the sentinel and, for NLMSG_ERROR, the errno.
func (e *DecodeError) Unwrap() []error {
	if e.Errno != 0 {
		return []error{e.Err, e.Errno}
	}
	return []error{e.Err}
}

// OpError is the error type of failed socket operations, modelled on
// net.OpError: Op names the operation ("dial", "send", "receive", "join", ...)
// and Err is the cause.
type OpError struct {
	Op   string
	Addr *Addr // destination of a send, if any
	Err  error
}

func (e *OpError) Error() string {
	if e.Addr != nil {
		return "cnactor " + e.Op + " " + e.Addr.String() + ": " + e.Err.Error()
	}
	return "cnactor " + e.Op + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout.
func (e *OpError) Timeout() bool {
	t, ok := e.Err.(interface{ Timeout() bool })
	return errors.Is(e.Err, ErrSendTimeout) || ok && t.Timeout()
}
