package dispatch_test

import (
	"testing"

	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
)

func TestSenderPolicy(t *testing.T) {
	t.Parallel()
	var (
		zero  = transport.Credentials{}
		root  = transport.Credentials{PID: 10, UID: 0, GID: 0}
		alice = transport.Credentials{PID: 11, UID: 1000, GID: 1000}
		bob   = transport.Credentials{PID: 12, UID: 1001, GID: 1001}
	)
	type sender struct {
		from  uint32
		creds transport.Credentials
		want  bool
	}
	for _, tc := range []struct {
		name    string
		policy  dispatch.SenderPolicy
		str     string
		senders []sender
	}{
		{"zero value", dispatch.SenderPolicy{}, "anyone", []sender{
			{0, zero, true}, {4000, alice, true}, {1, root, true},
		}},
		{"anyone", dispatch.AllowAnyone(), "anyone", []sender{
			{0, zero, true}, {4000, bob, true},
		}},
		{"kernel only", dispatch.AllowKernel(), "kernel", []sender{
			{0, zero, true},
			// A user port is refused even when its credentials are all
			// zero, as a forged "kernel" message's would be claimed to be.
			{4000, zero, false},
			{4000, root, false},
			{1, alice, false},
		}},
		{"ports", dispatch.AllowPorts(4000, 4001), "ports=4000,4001", []sender{
			{4000, alice, true}, {4001, bob, true}, {4002, alice, false}, {0, zero, false},
		}},
		{"ports with the kernel", dispatch.AllowPorts(0, 4000), "ports=0,4000", []sender{
			{0, zero, true}, {4000, zero, true}, {4001, zero, false},
		}},
		// An empty allow-list admits nobody; it must not fail open.
		{"no ports", dispatch.AllowPorts(), "ports=", []sender{
			{4000, alice, false}, {0, zero, false},
		}},
		{"no uids", dispatch.AllowUIDs(), "uids=", []sender{
			{4000, root, false}, {0, zero, false},
		}},
		{"uids", dispatch.AllowUIDs(1000), "uids=1000", []sender{
			{4000, alice, true}, {4001, bob, false},
			// The kernel reports uid 0 but is not a user.
			{0, zero, false},
		}},
		{"uid 0", dispatch.AllowUIDs(0), "uids=0", []sender{
			{4000, root, true}, {4000, zero, true}, {0, zero, false}, {4000, alice, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if s := tc.policy.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			for _, s := range tc.senders {
				if got := tc.policy.Allows(s.from, s.creds); got != s.want {
					t.Errorf("Allows(port %d, %+v) = %v, want %v", s.from, s.creds, got, s.want)
				}
			}
		})
	}
}

// The policy keeps its own copy of the ports and uids it was given.
func TestSenderPolicyCopies(t *testing.T) {
	t.Parallel()
	ports := []uint32{4000}
	uids := []uint32{1000}
	pp, up := dispatch.AllowPorts(ports...), dispatch.AllowUIDs(uids...)
	ports[0], uids[0] = 5000, 2000
	if !pp.Allows(4000, transport.Credentials{}) || pp.Allows(5000, transport.Credentials{}) {
		t.Error("AllowPorts follows a later change of its argument")
	}
	if !up.Allows(1, transport.Credentials{UID: 1000}) || up.Allows(1, transport.Credentials{UID: 2000}) {
		t.Error("AllowUIDs follows a later change of its argument")
	}
}
