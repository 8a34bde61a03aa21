package dispatch

import (
	"slices"
	"strconv"
	"strings"

	"github.com/cnactor/cnactor/transport"
)

// SenderPolicy says who may reach a callback. The zero value admits anyone.
// The sender is identified by the socket address the kernel reports (port 0
// is the kernel itself) and by its credentials, never by header fields a
// peer writes.
type SenderPolicy struct {
	kernelOnly bool
	ports      []uint32
	uids       []uint32
}

// AllowAnyone admits every sender.
func AllowAnyone() SenderPolicy { return SenderPolicy{} }

// AllowKernel admits only the kernel (port 0).
func AllowKernel() SenderPolicy { return SenderPolicy{kernelOnly: true} }

// AllowPorts admits only the given port ids (0 is the kernel). With no
// ports it admits nobody.
func AllowPorts(ports ...uint32) SenderPolicy {
	// Never nil, even when empty: nil means "no port restriction".
	return SenderPolicy{ports: append([]uint32{}, ports...)}
}

// AllowUIDs admits only user-space senders running as one of the given uids
// (from SCM_CREDENTIALS). The kernel is not a user and is refused. With no
// uids it admits nobody.
func AllowUIDs(uids ...uint32) SenderPolicy {
	// Never nil, even when empty: nil means "no uid restriction".
	return SenderPolicy{uids: append([]uint32{}, uids...)}
}

// Allows reports whether a message from port from with creds may be
// delivered.
func (p SenderPolicy) Allows(from uint32, creds transport.Credentials) bool {
	switch {
	case p.kernelOnly:
		return from == 0
	case p.ports != nil:
		return slices.Contains(p.ports, from)
	case p.uids != nil:
		return from != 0 && slices.Contains(p.uids, creds.UID)
	}
	return true
}

// String describes the policy: "anyone", "kernel", "ports=1,2", "uids=0".
func (p SenderPolicy) String() string {
	join := func(kind string, v []uint32) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatUint(uint64(x), 10)
		}
		return kind + "=" + strings.Join(s, ",")
	}
	switch {
	case p.kernelOnly:
		return "kernel"
	case p.ports != nil:
		return join("ports", p.ports)
	case p.uids != nil:
		return join("uids", p.uids)
	}
	return "anyone"
}
