package memory

import (
	"os"
	"time"

	"github.com/cnactor/cnactor/transport"
)

// DefaultQueueLen is the receive queue capacity, in datagrams, of an
// endpoint dialed without WithQueueLen: about as many proc events as the
// kernel's default socket buffer holds.
const DefaultQueueLen = 512

// An Option configures NewNetwork.
type Option interface{ applyNetwork(*networkConfig) }

// A DialOption configures Network.Dial.
type DialOption interface{ applyDial(*dialConfig) }

// A SharedOption configures either a Network, where it sets the default for
// every endpoint, or a single endpoint in Dial.
type SharedOption interface {
	Option
	DialOption
}

type networkConfig struct {
	queueLen    int
	sendTimeout time.Duration
}

type dialConfig struct {
	queueLen    int
	sendTimeout time.Duration
	creds       transport.Credentials
	groups      []uint32
}

type queueLenOption int

func (o queueLenOption) applyNetwork(c *networkConfig) { c.queueLen = max(int(o), 1) }
func (o queueLenOption) applyDial(c *dialConfig)       { c.queueLen = max(int(o), 1) }

// WithQueueLen sets the receive queue capacity in datagrams (default
// DefaultQueueLen); n < 1 is taken as 1.
func WithQueueLen(n int) SharedOption { return queueLenOption(n) }

type sendTimeoutOption time.Duration

func (o sendTimeoutOption) applyNetwork(c *networkConfig) { c.sendTimeout = time.Duration(o) }
func (o sendTimeoutOption) applyDial(c *dialConfig)       { c.sendTimeout = time.Duration(o) }

// WithSendTimeout bounds how long a unicast Send waits for a full receiver
// when its context has no deadline (default transport.DefaultSendTimeout),
// as transport.WithSendTimeout does for the kernel socket.
func WithSendTimeout(d time.Duration) SharedOption { return sendTimeoutOption(d) }

type dialFunc func(*dialConfig)

func (f dialFunc) applyDial(c *dialConfig) { f(c) }

// WithCredentials sets the credentials receivers see on the endpoint's
// messages (default: this process's pid, uid and gid, as the kernel would
// report them).
func WithCredentials(creds transport.Credentials) DialOption {
	return dialFunc(func(c *dialConfig) { c.creds = creds })
}

// WithGroups joins multicast groups at dial time.
func WithGroups(groups ...uint32) DialOption {
	return dialFunc(func(c *dialConfig) { c.groups = append(c.groups, groups...) })
}

func newNetworkConfig(opts []Option) networkConfig {
	cfg := networkConfig{queueLen: DefaultQueueLen, sendTimeout: transport.DefaultSendTimeout}
	for _, o := range opts {
		o.applyNetwork(&cfg)
	}
	return cfg
}

func (n *Network) newDialConfig(opts []DialOption) dialConfig {
	cfg := dialConfig{
		queueLen:    n.cfg.queueLen,
		sendTimeout: n.cfg.sendTimeout,
		creds:       transport.Credentials{PID: uint32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())},
	}
	for _, o := range opts {
		o.applyDial(&cfg)
	}
	return cfg
}
