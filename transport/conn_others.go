//go:build !linux

package transport

import (
	"context"
	"time"
)

// NetlinkConn is a NETLINK_CONNECTOR socket; it exists only on Linux.
type NetlinkConn struct{}

var _ Conn = (*NetlinkConn)(nil)

// Dial returns ErrNotSupported outside Linux.
func Dial(opts ...DialOption) (*NetlinkConn, error) {
	return nil, &OpError{Op: "dial", Err: ErrNotSupported}
}

func (c *NetlinkConn) Port() uint32                               { return 0 }
func (c *NetlinkConn) JoinGroup(uint32) error                     { return ErrNotSupported }
func (c *NetlinkConn) LeaveGroup(uint32) error                    { return ErrNotSupported }
func (c *NetlinkConn) Send(context.Context, Addr, *Message) error { return ErrNotSupported }
func (c *NetlinkConn) ReceiveBatch(context.Context, *Batch) error { return ErrNotSupported }
func (c *NetlinkConn) Drops() (uint64, error)                     { return 0, ErrNotSupported }
func (c *NetlinkConn) TryReceiveBatch(*Batch) (bool, error)       { return false, ErrNotSupported }
func (c *NetlinkConn) SetReadDeadline(time.Time) error            { return ErrNotSupported }
func (c *NetlinkConn) Close() error                               { return nil }
