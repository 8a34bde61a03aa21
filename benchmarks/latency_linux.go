//go:build linux

package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"golang.org/x/sys/unix"
)

// Latency side names.
const (
	NameRawPingPong = "raw-pingpong"
	// NameNetpoller is the same ping-pong over Go's netpoller: the
	// runtime's share of a round trip, without cnactor.
	NameNetpoller = "netpoller-pingpong"
	NameRequest   = "cnactor-request"
)

// echoIdx is the idx of the latency scenario's echo callback (unicast).
const echoIdx = 0xe0002

// pingPong is the baseline of the latency scenario: InFlight client
// sockets each doing a blocking send then receive, and one echo socket
// answering like a handler would (decode, same id and seq, ack + 1).
type pingPong interface {
	// start runs the echo side; stop ends it (a goroutine blocked in a
	// syscall holds a P, which would slow the other side down).
	start()
	stop() error
	// roundTrip is one request and its reply from client i.
	roundTrip(i int) error
	close()
}

type rawPingPong struct {
	echo     int
	echoPort uint32
	group    uint32
	clients  []int
	ports    []uint32
	reqs     [][]byte
	bufs     [][]byte
	done     chan struct{}
	err      error
}

func newRawPingPong(n int, id transport.CbID, payload int, group uint32) (*rawPingPong, error) {
	p := &rawPingPong{group: group}
	var err error
	if p.echo, p.echoPort, err = openRawSocket(); err != nil {
		return nil, err
	}
	if group != 0 {
		if err := joinGroup(p.echo, group); err != nil {
			p.close()
			return nil, err
		}
	}
	data := make([]byte, payload)
	for i := range n {
		fd, port, err := openRawSocket()
		if err != nil {
			p.close()
			return nil, err
		}
		setTimeout(fd, unix.SO_RCVTIMEO, time.Second)
		p.clients, p.ports = append(p.clients, fd), append(p.ports, port)
		m := transport.Message{ID: id, Seq: uint32(i + 1), Ack: 7, Data: data}
		dg, _ := transport.AppendDatagram(nil, &m, m.Seq, port)
		p.reqs = append(p.reqs, dg)
		p.bufs = append(p.bufs, make([]byte, transport.MaxDatagram))
	}
	return p, nil
}

func (p *rawPingPong) dest() unix.Sockaddr {
	if p.group != 0 {
		return &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (p.group - 1)}
	}
	return &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p.echoPort}
}

func (p *rawPingPong) start() {
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		buf := make([]byte, transport.MaxDatagram)
		var out []byte
		var msgs []transport.Message
		for {
			n, from, err := unix.Recvfrom(p.echo, buf, 0)
			if err != nil {
				if err == unix.EINTR {
					continue
				}
				p.err = err
				return
			}
			msgs, err = transport.DecodeDatagram(msgs[:0], buf[:n])
			if err != nil || len(msgs) != 1 {
				p.err = fmt.Errorf("echo: bad datagram: %v", err)
				return
			}
			if len(msgs[0].Data) == 0 {
				return // quit
			}
			r := handlers.ReplyTo(&msgs[0], msgs[0].Data)
			out, _ = transport.AppendDatagram(out[:0], &r, r.Seq, p.echoPort)
			if err := retry(func() error { return unix.Sendto(p.echo, out, 0, from) }); err != nil {
				p.err = err
				return
			}
		}
	}()
}

func (p *rawPingPong) stop() error {
	quit, _ := transport.AppendDatagram(nil, &transport.Message{ID: transport.CbID{Idx: 1 << 31}}, 0, p.ports[0])
	if err := retry(func() error {
		return unix.Sendto(p.clients[0], quit, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p.echoPort})
	}); err != nil {
		return err
	}
	<-p.done
	return p.err
}

func (p *rawPingPong) roundTrip(i int) error {
	if err := retry(func() error { return unix.Sendto(p.clients[i], p.reqs[i], 0, p.dest()) }); err != nil {
		return err
	}
	return retry(func() error { _, _, err := unix.Recvfrom(p.clients[i], p.bufs[i], 0); return err })
}

// retry repeats a blocking syscall the Go runtime's preemption signal
// interrupted.
func retry(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

func (p *rawPingPong) close() {
	if p.echo > 0 {
		unix.Close(p.echo)
	}
	for _, fd := range p.clients {
		unix.Close(fd)
	}
}

// memPingPong is the same over bare memory endpoints.
type memPingPong struct {
	echo    *memory.Conn
	group   uint32
	clients []*memory.Conn
	batches []*transport.Batch
	reqs    []transport.Message
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

func newMemPingPong(net *memory.Network, n int, id transport.CbID, payload int, group uint32) (*memPingPong, error) {
	p := &memPingPong{group: group}
	var err error
	if p.echo, err = net.Dial(); err != nil {
		return nil, err
	}
	if group != 0 {
		p.echo.JoinGroup(group)
	}
	data := make([]byte, payload)
	for i := range n {
		c, err := net.Dial()
		if err != nil {
			return nil, err
		}
		p.clients = append(p.clients, c)
		p.batches = append(p.batches, transport.NewBatch(1))
		p.reqs = append(p.reqs, transport.Message{ID: id, Seq: uint32(i + 1), Ack: 7, Data: data})
	}
	return p, nil
}

func (p *memPingPong) start() {
	p.done = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(p.done)
		b := transport.NewBatch(0)
		for {
			if err := p.echo.ReceiveBatch(p.ctx, b); err != nil {
				if p.ctx.Err() == nil {
					p.err = err
				}
				return
			}
			for i := range b.Messages {
				m := &b.Messages[i]
				r := handlers.ReplyTo(&m.Message, m.Data)
				if err := p.echo.Send(p.ctx, transport.Addr{Port: m.From}, &r); err != nil && p.ctx.Err() == nil {
					p.err = err
					return
				}
			}
		}
	}()
}

func (p *memPingPong) stop() error {
	p.cancel()
	<-p.done
	return p.err
}

func (p *memPingPong) roundTrip(i int) error {
	to := transport.Addr{Port: p.echo.Port()}
	if p.group != 0 {
		to = transport.Addr{Group: p.group}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.clients[i].Send(ctx, to, &p.reqs[i]); err != nil {
		return err
	}
	return p.clients[i].ReceiveBatch(ctx, p.batches[i])
}

func (p *memPingPong) close() {
	p.echo.Close()
	for _, c := range p.clients {
		c.Close()
	}
}

// pollPingPong is the raw ping-pong's shape over Go's netpoller, the way
// a plain Go program reads the socket: the echo answers from a
// transport.ReceiveEach loop, and each client sends and then waits in
// ReceiveBatch. Between the raw ping-pong and it lies the Go runtime's
// cost; between it and a Request, cnactor's.
type pollPingPong struct {
	echo    *transport.NetlinkConn
	group   uint32
	clients []*transport.NetlinkConn
	batches []*transport.Batch
	reqs    []transport.Message
	renew   []time.Time // when client i's read deadline is pushed on next
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

func newPollPingPong(n int, id transport.CbID, payload int, group uint32) (*pollPingPong, error) {
	p := &pollPingPong{group: group}
	var err error
	if p.echo, err = transport.Dial(); err != nil {
		return nil, err
	}
	if group != 0 {
		if err := p.echo.JoinGroup(group); err != nil {
			p.close()
			return nil, err
		}
	}
	data := make([]byte, payload)
	for i := range n {
		c, err := transport.Dial()
		if err != nil {
			p.close()
			return nil, err
		}
		p.clients = append(p.clients, c)
		p.batches = append(p.batches, transport.NewBatch(1))
		p.reqs = append(p.reqs, transport.Message{ID: id, Seq: uint32(i + 1), Ack: 7, Data: data})
		p.renew = append(p.renew, time.Time{})
	}
	return p, nil
}

func (p *pollPingPong) start() {
	p.done = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(p.done)
		err := transport.ReceiveEach(p.ctx, p.echo, transport.NewBatch(0), p.answer, nil)
		if p.ctx.Err() == nil && p.err == nil {
			p.err = err
		}
	}()
}

// answer is the echo's deliver: a reply to every message, as the raw
// echo makes it.
func (p *pollPingPong) answer(b *transport.Batch) *transport.Batch {
	for i := range b.Messages {
		m := &b.Messages[i]
		r := handlers.ReplyTo(&m.Message, m.Data)
		if err := p.echo.Send(p.ctx, transport.Addr{Port: m.From}, &r); err != nil && p.ctx.Err() == nil && p.err == nil {
			p.err = err
		}
	}
	return b
}

func (p *pollPingPong) stop() error {
	p.cancel()
	<-p.done
	return p.err
}

// roundTrip waits for the reply under a read deadline of about a second
// (like the raw clients' SO_RCVTIMEO), renewed every half second rather
// than set per round trip, which would arm a runtime timer each time.
func (p *pollPingPong) roundTrip(i int) error {
	c := p.clients[i]
	if now := time.Now(); now.After(p.renew[i]) {
		if err := c.SetReadDeadline(now.Add(time.Second)); err != nil {
			return err
		}
		p.renew[i] = now.Add(time.Second / 2)
	}
	to := transport.Addr{Port: p.echo.Port()}
	if p.group != 0 {
		to = transport.Addr{Group: p.group}
	}
	if err := c.Send(context.Background(), to, &p.reqs[i]); err != nil {
		return err
	}
	return c.ReceiveBatch(context.Background(), p.batches[i])
}

func (p *pollPingPong) close() {
	if p.echo != nil {
		p.echo.Close()
	}
	for _, c := range p.clients {
		c.Close()
	}
}

type rttLog struct {
	mu       sync.Mutex
	rtts     []time.Duration
	timeouts atomic.Uint64
	done     atomic.Uint64
	spent    time.Duration
}

// block runs InFlight clients doing round trips until d has passed.
func (l *rttLog) block(n int, d time.Duration, rt func(i int) error) error {
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			local := make([]time.Duration, 0, 1024)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := rt(i)
				rtt := time.Since(t0)
				if err != nil {
					if errors.Is(err, cnactor.ErrTimeout) || errors.Is(err, unix.EAGAIN) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
						l.timeouts.Add(1)
						continue
					}
					errs[i] = err
					break
				}
				local = append(local, rtt)
				l.done.Add(1)
			}
			l.mu.Lock()
			l.rtts = append(l.rtts, local...)
			l.mu.Unlock()
		})
	}
	wg.Wait()
	l.spent += time.Since(start)
	return errors.Join(errs...)
}

func (l *rttLog) side(name string) LatencySide {
	s := LatencySide{Name: name, Count: len(l.rtts), Timeouts: l.timeouts.Load()}
	if len(l.rtts) == 0 {
		return s
	}
	slices.Sort(l.rtts)
	pct := func(p int) float64 { return micros(l.rtts[(len(l.rtts)*p+99)/100-1]) } // nearest rank
	s.P50, s.P90, s.P99, s.Max = pct(50), pct(90), pct(99), micros(l.rtts[len(l.rtts)-1])
	if l.spent > 0 {
		s.Rate = float64(len(l.rtts)) / l.spent.Seconds()
	}
	return s
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func runLatency(ctx context.Context, cfg *Config, res *Result) (err error) {
	// Multicast: the ping-pong and the connectors each get a group, so
	// that neither answers the other's requests.
	// The netpoller ping-pong (kernel only) needs a third group; given
	// only two, it is left out.
	var rawGroup, group, pollGroup uint32
	withPoller := cfg.Transport == Netlink
	if cfg.Mode == Multicast {
		switch {
		case len(cfg.Groups) >= 3:
			rawGroup, group, pollGroup = cfg.Groups[0], cfg.Groups[1], cfg.Groups[2]
		case len(cfg.Groups) == 2:
			rawGroup, group = cfg.Groups[0], cfg.Groups[1]
			withPoller = false
		case cfg.Transport == Memory:
			rawGroup, group = 31, 32
		default:
			gs, release, err := ReserveGroups(3)
			if err != nil {
				return err
			}
			defer release()
			rawGroup, group, pollGroup = gs[0], gs[1], gs[2]
		}
	}
	id := transport.CbID{Idx: echoIdx, Val: 1}
	if group != 0 {
		id.Idx = group
	}
	// The server: an echo callback on a connector of its own.
	var pp pingPong
	var srvConn, cliConn transport.Conn
	var srvNet *transport.NetlinkConn
	if cfg.Transport == Memory {
		net := memory.NewNetwork()
		if pp, err = newMemPingPong(net, cfg.InFlight, id, cfg.Payload, rawGroup); err != nil {
			return err
		}
		sc, _ := net.Dial()
		cc, _ := net.Dial()
		srvConn, cliConn = sc, cc
	} else {
		if pp, err = newRawPingPong(cfg.InFlight, id, cfg.Payload, rawGroup); err != nil {
			return err
		}
		if srvNet, err = transport.Dial(transport.WithReadBuffer(cnactor.DefaultReadBuffer)); err != nil {
			pp.close()
			return err
		}
		srvConn = srvNet
		if cliConn, err = transport.Dial(transport.WithReadBuffer(cnactor.DefaultReadBuffer)); err != nil {
			pp.close()
			srvNet.Close()
			return err
		}
	}
	defer pp.close()
	baselines := make([]baseline, 1, 2)
	baselines[0].name, baselines[0].pp = NameRawPingPong, pp
	if withPoller {
		poll, err := newPollPingPong(cfg.InFlight, id, cfg.Payload, pollGroup)
		if err != nil {
			srvConn.Close()
			cliConn.Close()
			return err
		}
		defer poll.close()
		baselines = baselines[:2]
		baselines[1].name, baselines[1].pp = NameNetpoller, poll
	}
	srv, err := cnactor.New(cnactor.WithTransport(srvConn))
	if err != nil {
		cliConn.Close()
		return err
	}
	defer srv.Close(context.Background())
	if err := srv.AddCallback(id, "echo", handlers.Echo()); err != nil {
		return err
	}
	cli, err := cnactor.New(cnactor.WithTransport(cliConn))
	if err != nil {
		return err
	}
	defer cli.Close(context.Background())
	to := transport.Addr{Port: srv.Port()}
	if group != 0 {
		to = transport.Addr{Group: group}
	}
	data := make([]byte, cfg.Payload)
	request := func(int) error {
		m := transport.Message{ID: id, Data: data}
		_, err := cli.Request(ctx, to, &m, cnactor.WithRequestTimeout(time.Second))
		return err
	}
	drops0 := uint64(0)
	if srvNet != nil {
		drops0, _ = srvNet.Drops()
	}

	var req rttLog
	// Warm every path up, then alternate blocks so that all see the same
	// machine.
	for i := range baselines {
		b := &baselines[i]
		b.pp.start()
		(&rttLog{}).block(cfg.InFlight, 50*time.Millisecond, b.pp.roundTrip)
		if err := b.pp.stop(); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}
	(&rttLog{}).block(cfg.InFlight, 50*time.Millisecond, request)
	const rounds = 10
	slot := cfg.Duration / time.Duration((len(baselines)+1)*rounds)
	rp := startReporter(cfg)
	defer rp.close()
	warm := cli.Stats().Requester
	for round := 0; round < rounds && ctx.Err() == nil; round++ {
		for i := range baselines {
			b := &baselines[i]
			rp.set(&phase{name: b.name, r: rttCounter{&b.log}, start: time.Now(), sent: b.log.done.Load})
			b.pp.start()
			rerr := b.log.block(cfg.InFlight, slot, b.pp.roundTrip)
			if err := errors.Join(rerr, b.pp.stop()); err != nil {
				return fmt.Errorf("%s: %w", b.name, err)
			}
		}
		rp.set(&phase{name: NameRequest, r: rttCounter{&req}, start: time.Now(), sent: req.done.Load})
		if err := req.block(cfg.InFlight, slot, request); err != nil && ctx.Err() == nil {
			return fmt.Errorf("request: %w", err)
		}
	}
	rp.set(nil)
	lr := &LatencyResult{P50Ratios: map[string]float64{}}
	for i := range baselines {
		lr.Sides = append(lr.Sides, baselines[i].log.side(baselines[i].name))
	}
	lr.Sides = append(lr.Sides, req.side(NameRequest))
	cn := lr.Sides[len(lr.Sides)-1]
	for _, b := range lr.Sides[:len(lr.Sides)-1] {
		if b.P50 > 0 {
			lr.P50Ratios[NameCnactor+"/"+b.Name] = cn.P50 / b.P50
		}
	}
	lr.P50Ratio = lr.P50Ratios[NameCnactor+"/"+NameRawPingPong]
	res.Latency = lr
	if cfg.Transport == Netlink {
		res.Targets = append(res.Targets, Target{Name: "request/reply p50 / raw ping-pong p50", Want: "<= 1.5", Got: lr.P50Ratio, Unit: "x", Met: lr.P50Ratio <= 1.5})
	}
	// Books: every request was answered, timed out or failed; the server
	// got every request (and its retries) sent after the warm-up.
	st := cli.Stats().Requester
	res.Accounting = append(res.Accounting, Accounting{
		Receiver: "requester", Sent: st.Requests - warm.Requests, Delivered: st.Replies - warm.Replies,
		Failed: st.Timeouts - warm.Timeouts + st.Failed - warm.Failed + st.Cancelled - warm.Cancelled,
	})
	// A request that timed out may still be on its way to the server.
	var a Accounting
	for wait := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var echo cnactor.CallbackInfo
		for _, cb := range srv.Stats().Callbacks {
			if cb.ID == id {
				echo = cb
			}
		}
		a = Accounting{Receiver: "echo server", Sent: st.Requests + st.Retries, Delivered: echo.Handled,
			MailboxDrops: echo.Dropped, Failed: echo.Failed, Rejected: echo.Rejected}
		if srvNet != nil {
			d, _ := srvNet.Drops()
			a.KernelDrops = d - drops0
		}
		if a.Accounted() >= a.Sent || time.Now().After(wait) {
			break
		}
	}
	res.Accounting = append(res.Accounting, a)
	names := make([]string, 0, len(lr.Sides))
	for _, sd := range lr.Sides {
		names = append(names, sd.Name)
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d rounds alternating %v of each of %s, %d in flight; RTT is wall time around each round trip", rounds, slot.Round(10*time.Microsecond), strings.Join(names, ", "), cfg.InFlight))
	if cfg.Transport == Netlink && !withPoller {
		res.Notes = append(res.Notes, "the netpoller ping-pong needs a third multicast group and was left out")
	}
	return nil
}

// baseline is one ping-pong the Requests are measured beside.
type baseline struct {
	name string
	pp   pingPong
	log  rttLog
}

// rttCounter lets the progress reporter show round trips.
type rttCounter struct{ l *rttLog }

func (r rttCounter) name() string                 { return "" }
func (r rttCounter) addr() transport.Addr         { return transport.Addr{} }
func (r rttCounter) gate() *gate                  { return nil }
func (r rttCounter) counter() *counter            { c := newCounter(); c.n.Store(r.l.done.Load()); return c }
func (r rttCounter) kernelDrops() uint64          { return 0 }
func (r rttCounter) otherLoss() uint64            { return r.l.timeouts.Load() }
func (r rttCounter) books(sent uint64) Accounting { return Accounting{} }
func (r rttCounter) close() error                 { return nil }
