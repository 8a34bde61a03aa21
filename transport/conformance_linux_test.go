package transport_test

import (
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

func init() {
	implementations = append(implementations, implementation{name: "netlink", setup: netlinkEnv})
}

// netlinkEnv runs the behaviours on real NETLINK_CONNECTOR sockets; it
// needs root or CAP_NET_ADMIN for user-to-user and multicast sends.
func netlinkEnv(t *testing.T) *env {
	testutil.Privileged(t)
	return &env{
		dial: func(t *testing.T, o dialOpts) transport.Conn {
			t.Helper()
			var opts []transport.DialOption
			if o.small {
				opts = append(opts, transport.WithReadBuffer(1)) // rounded up to the kernel's minimum
			}
			if o.sendTimeout > 0 {
				opts = append(opts, transport.WithSendTimeout(o.sendTimeout))
			}
			c, err := transport.Dial(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
		group: func(t *testing.T) uint32 { return testutil.Group(t) },
	}
}
