package transport

import (
	"math"
	"time"
)

// A DialOption configures Dial.
type DialOption interface{ apply(*dialConfig) }

type dialConfig struct {
	readBuffer  int
	groups      []uint32
	sendTimeout time.Duration
	noCreds     bool
}

type optionFunc func(*dialConfig)

func (f optionFunc) apply(c *dialConfig) { f(c) }

// DefaultSendTimeout bounds how long Send waits for a full unicast receiver
// when the context has no deadline: long enough for a busy peer to drain
// a burst, short enough that one stuck peer does not hold its sender.
const DefaultSendTimeout = time.Second

// MaxReadBuffer is the largest receive buffer the kernel takes: it clamps
// larger values to INT_MAX/2 (then doubles it), and a value over INT_MAX
// wraps in the 32-bit socket option to a negative one, which gives the
// 2,304-byte minimum.
const MaxReadBuffer = math.MaxInt32 / 2

// MaxBatchSize is the most datagrams one receive can take: recvmmsg
// accepts at most UIO_MAXIOV (1,024) messages per call.
const MaxBatchSize = 1024

// WithReadBuffer sets the socket's receive buffer in bytes. As root it uses
// SO_RCVBUFFORCE and so is not capped by net.core.rmem_max; the kernel
// doubles the value for bookkeeping. Values over MaxReadBuffer are taken
// as MaxReadBuffer, as the kernel would, instead of wrapping to its
// minimum; callers that take the value from a user should refuse them.
func WithReadBuffer(bytes int) DialOption {
	return optionFunc(func(c *dialConfig) { c.readBuffer = min(bytes, MaxReadBuffer) })
}

// WithGroups joins multicast groups at dial time.
func WithGroups(groups ...uint32) DialOption {
	return optionFunc(func(c *dialConfig) { c.groups = append(c.groups, groups...) })
}

// WithSendTimeout bounds how long Send waits for a full unicast receiver
// when the context carries no deadline (default DefaultSendTimeout).
func WithSendTimeout(d time.Duration) DialOption {
	return optionFunc(func(c *dialConfig) { c.sendTimeout = d })
}

// WithCredentials controls SO_PASSCRED (on by default). Turned off, every
// Received.Creds is zero and each receive costs the kernel less; sender
// policies by uid need it on.
func WithCredentials(enable bool) DialOption {
	return optionFunc(func(c *dialConfig) { c.noCreds = !enable })
}

func newDialConfig(opts []DialOption) dialConfig {
	cfg := dialConfig{sendTimeout: DefaultSendTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return cfg
}

// CheckGroup returns ErrInvalidGroup unless 1 <= group <= MaxGroup.
func CheckGroup(group uint32) error {
	if group < 1 || group > MaxGroup {
		return ErrInvalidGroup
	}
	return nil
}
