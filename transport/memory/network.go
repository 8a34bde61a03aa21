package memory

import (
	"sync"
	"sync/atomic"

	"github.com/cnactor/cnactor/transport"
)

// firstPort is the port id of the first endpoint a Network dials; later
// ones count up from it. Port 0 is the kernel.
const firstPort = 1000

// Network is an in-memory connector: the endpoints dialed on it can reach
// each other by port id and by multicast group, and the endpoint at port 0
// plays the kernel. Networks are independent of each other; the zero value
// is not usable, call NewNetwork. All methods are safe for concurrent use.
type Network struct {
	cfg networkConfig

	mu       sync.RWMutex
	ports    map[uint32]*Conn
	members  [transport.MaxGroup + 1][]*Conn // by group; index 0 unused
	nextPort uint32
	kernel   *Conn // nil until Kernel or HandleKernel is called

	handler atomic.Pointer[kernelHandler]
}

type kernelHandler func(k *Conn, m transport.Received)

// NewNetwork returns an empty network.
func NewNetwork(opts ...Option) *Network {
	return &Network{
		cfg:      newNetworkConfig(opts),
		ports:    make(map[uint32]*Conn),
		nextPort: firstPort,
	}
}

// Dial creates an endpoint with a port id of its own (never 0, never reused
// by this network while the endpoint is open) and the given options; it
// fails only when a group is outside 1..32 (transport.ErrInvalidGroup).
func (n *Network) Dial(opts ...DialOption) (*Conn, error) {
	cfg := n.newDialConfig(opts)
	for _, g := range cfg.groups {
		if err := transport.CheckGroup(g); err != nil {
			return nil, &transport.OpError{Op: "dial", Err: err}
		}
	}
	c := newConn(n, cfg.queueLen, cfg.sendTimeout, cfg.creds)
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		p := n.nextPort
		n.nextPort++
		if _, used := n.ports[p]; p != 0 && !used {
			c.port = p
			break
		}
	}
	n.ports[c.port] = c
	for _, g := range cfg.groups {
		n.join(c, g)
	}
	return c, nil
}

// Kernel returns the endpoint at port 0, creating it on the first call. It
// receives what is sent to port 0 (transport.Kernel()), including the
// unicast half of a multicast sent with Port 0, unless HandleKernel takes
// those messages; what it sends arrives From port 0 with zero credentials.
// Its receive queue never blocks a sender: when full, it drops. Closing it
// makes sends to port 0 fail with ECONNREFUSED, as in a network namespace
// without the connector.
func (n *Network) Kernel() *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kernel == nil {
		k := newConn(n, n.cfg.queueLen, n.cfg.sendTimeout, transport.Credentials{})
		k.isKernel = true
		n.kernel = k
		n.ports[0] = k
	}
	return n.kernel
}

// HandleKernel scripts the kernel: fn is called for every message sent to
// port 0, instead of queueing it at the Kernel endpoint, and may answer with
// k.Send. It runs synchronously on the sending goroutine, so it may run
// concurrently with itself when several goroutines send; it must not wait for
// the sender to receive. m.Data is a copy that fn may keep. A nil fn restores
// queueing.
func (n *Network) HandleKernel(fn func(k *Conn, m transport.Received)) {
	n.Kernel()
	if fn == nil {
		n.handler.Store(nil)
		return
	}
	h := kernelHandler(fn)
	n.handler.Store(&h)
}

// lookup finds the endpoint at port. It returns ok == false when port is 0
// and the kernel endpoint was never created: such messages are discarded.
// A nil Conn with ok == true means nobody is bound there.
func (n *Network) lookup(port uint32) (c *Conn, ok bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if port == 0 && n.kernel == nil {
		return nil, false
	}
	return n.ports[port], true
}

// multicast offers d to every member of d.group but the sender. Offers never
// block, so holding the read lock here is short.
func (n *Network) multicast(from *Conn, d *datagram) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, m := range n.members[d.group] {
		if m != from {
			m.offer(d, true)
		}
	}
}

// join adds c to group g; n.mu must be held for writing.
func (n *Network) join(c *Conn, g uint32) {
	bit := uint64(1) << g
	if c.groups&bit != 0 {
		return
	}
	c.groups |= bit
	n.members[g] = append(n.members[g], c)
}

// leave removes c from group g; n.mu must be held for writing.
func (n *Network) leave(c *Conn, g uint32) {
	bit := uint64(1) << g
	if c.groups&bit == 0 {
		return
	}
	c.groups &^= bit
	ms := n.members[g]
	for i, m := range ms {
		if m == c {
			last := len(ms) - 1
			ms[i] = ms[last]
			ms[last] = nil
			n.members[g] = ms[:last]
			return
		}
	}
}
