//go:build linux

package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"golang.org/x/sys/unix"
)

// Run runs cfg's scenario. The Result is returned whenever something was
// measured, also with an error; an error wrapping ErrAccounting means the
// books did not balance.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	res := &Result{Config: cfg, Machine: machine(), Start: time.Now().Format(time.RFC3339)}
	var err error
	switch cfg.Scenario {
	case Throughput:
		err = runThroughput(ctx, &cfg, res)
	case Latency:
		err = runLatency(ctx, &cfg, res)
	case Overload:
		err = runOverload(ctx, &cfg, res)
	case Proc:
		err = runProc(ctx, &cfg, res)
	}
	if aerr := checkAll(res.Accounting); aerr != nil {
		err = errors.Join(err, aerr)
	}
	return res, err
}

// benchIdx is the callback idx of unicast traffic: above 32, so that no
// group is joined for it.
const benchIdx = 0xb0001

func benchIDs(group uint32, n int) []transport.CbID {
	idx := uint32(benchIdx)
	if group != 0 {
		idx = group // cnactor joins group idx for the ids' callbacks
	}
	ids := make([]transport.CbID, n)
	for i := range ids {
		ids[i] = transport.CbID{Idx: idx, Val: uint32(i + 1)}
	}
	return ids
}

// chunkFor is how many messages a drain queues at once: 20,000, or fewer
// where that would take more than 128 MB of socket buffer (the kernel
// charges a power-of-two allocation plus about 768 bytes per datagram).
func chunkFor(payload int) int {
	dg := transport.NlmsgHeaderLen + transport.CnMsgHeaderLen + payload
	truesize := 768
	for p := 64; ; p *= 2 {
		if p >= dg {
			truesize += p
			break
		}
	}
	return max(min(20000, (128<<20)/truesize), 500)
}

// traffic is a sender and the receivers it is measured against.
type traffic struct {
	cfg     *Config
	snd     sender
	recvs   []receiver
	cn      *cnRecv
	sent    map[receiver]*atomic.Uint64
	release func()
	// timed, if set, brackets each timed drain (Go benchmarks start and
	// stop their timer with it).
	timed func(start bool)
}

func newTraffic(cfg *Config, baselines bool, stall bool) (t *traffic, err error) {
	t = &traffic{cfg: cfg, sent: map[receiver]*atomic.Uint64{}, release: func() {}}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	nrecv := 1
	if baselines {
		nrecv = 3
		if cfg.Transport == Memory {
			nrecv = 2
		}
	}
	groups := make([]uint32, nrecv)
	if cfg.Mode == Multicast {
		if len(cfg.Groups) >= nrecv {
			copy(groups, cfg.Groups)
		} else if cfg.Transport == Memory || cfg.SenderInProcess {
			for i := range groups {
				groups[i] = uint32(32 - i) // a private network: any group is free
			}
		} else {
			var gs []uint32
			if gs, t.release, err = ReserveGroups(nrecv); err != nil {
				return t, err
			}
			copy(groups, gs)
		}
	}
	cnGroup := groups[nrecv-1]
	ids := benchIDs(cnGroup, cfg.Handlers)
	if cfg.Chunk == 0 {
		cfg.Chunk = chunkFor(cfg.Payload)
	}
	cnOpts := cnOptions{ids: ids, group: cnGroup, readBuffer: readBufferFor(cfg), mailbox: cfg.Mailbox, stall: stall, batch: cfg.Batch}
	if cfg.Transport == Memory {
		net := memory.NewNetwork(memory.WithQueueLen(cfg.Chunk))
		if t.snd, err = newMemSender(net, ids, cfg.Payload); err != nil {
			return t, err
		}
		if baselines {
			r, err := newMemRecv(net, groups[0])
			if err != nil {
				return t, err
			}
			t.recvs = append(t.recvs, r)
		}
		cnOpts.network = net
	} else {
		if cfg.Method == Drain || cfg.SenderInProcess {
			rs, err := newRawSender(ids, cfg.Payload)
			if err != nil {
				return t, err
			}
			t.snd = netSender{rs}
		} else if t.snd, err = newProcSender(ids, cfg.Payload); err != nil {
			return t, err
		}
		if baselines {
			r, err := newRawRecv(groups[0], readBufferFor(cfg))
			if err != nil {
				return t, err
			}
			t.recvs = append(t.recvs, r)
			m, err := newMdlRecv(groups[1], readBufferFor(cfg))
			if err != nil {
				return t, err
			}
			t.recvs = append(t.recvs, m)
		}
	}
	if t.cn, err = newCnRecv(cnOpts); err != nil {
		return t, err
	}
	t.recvs = append(t.recvs, t.cn)
	for _, r := range t.recvs {
		t.sent[r] = new(atomic.Uint64)
	}
	return t, nil
}

func (t *traffic) close() error {
	var errs []error
	for _, r := range t.recvs {
		errs = append(errs, r.close())
	}
	if t.snd != nil {
		t.snd.close()
	}
	t.release()
	return errors.Join(errs...)
}

// phase is what the progress reporter shows. The reporter shows what
// happened since the phase began: set takes the counters' values then.
type phase struct {
	name  string
	r     receiver
	sent  func() uint64
	start time.Time
	rss   func() uint64

	sent0, recv0, drops0 uint64
}

// reporter calls cfg.Progress four times a second with the current phase.
type reporter struct {
	cfg  *Config
	cur  atomic.Pointer[phase]
	stop chan struct{}
	done chan struct{}
}

func startReporter(cfg *Config) *reporter {
	rp := &reporter{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Progress == nil {
		close(rp.done)
		return rp
	}
	go func() {
		defer close(rp.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var last *phase
		var lastN uint64
		lastT := time.Now()
		for {
			select {
			case <-rp.stop:
				return
			case now := <-tick.C:
				ph := rp.cur.Load()
				if ph == nil {
					continue
				}
				n := ph.r.counter().n.Load()
				if ph != last {
					last, lastN, lastT = ph, ph.recv0, ph.start
				}
				sent, drops := ph.sent(), ph.r.kernelDrops()+ph.r.otherLoss()
				p := Progress{
					Scenario: cfg.Scenario, Phase: ph.name, Elapsed: max(now.Sub(ph.start), 0),
					Received: n - min(n, ph.recv0), Sent: sent - min(sent, ph.sent0), Drops: drops - min(drops, ph.drops0),
				}
				// The sender process reports its count every 50 ms; what was
				// received or dropped was sent, whatever it reported last.
				p.Sent = max(p.Sent, p.Received+p.Drops)
				if dt := now.Sub(lastT).Seconds(); dt > 0 {
					p.Rate = float64(n-lastN) / dt
				}
				if ph.rss != nil {
					p.RSS = ph.rss()
				}
				lastN, lastT = n, now
				cfg.Progress(p)
			}
		}
	}()
	return rp
}

func (rp *reporter) set(ph *phase) {
	if ph != nil {
		ph.sent0, ph.recv0 = ph.sent(), ph.r.counter().n.Load()
		ph.drops0 = ph.r.kernelDrops() + ph.r.otherLoss()
	}
	rp.cur.Store(ph)
}
func (rp *reporter) close() {
	select {
	case <-rp.stop:
	default:
		close(rp.stop)
	}
	<-rp.done
}

// waitSettled waits until r has delivered or counted as lost everything
// but the kernel's drops of the total sent to it. It returns the time of
// the last delivery.
func waitSettled(ctx context.Context, r receiver, sent uint64) (time.Time, error) {
	c := r.counter()
	expect := sent - min(sent, r.kernelDrops())
	c.expect(expect - min(expect, r.otherLoss()))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	last, lastT := c.n.Load(), time.Now()
	for i := 0; ; i++ {
		select {
		case <-c.reach:
			if c.n.Load()+r.otherLoss() >= expect {
				return time.Now(), nil
			}
		case now := <-tick.C:
			cur := c.n.Load()
			if cur != last {
				last, lastT = cur, now
			}
			if i%10 == 0 {
				expect = sent - min(sent, r.kernelDrops())
				if cur+r.otherLoss() >= expect {
					return lastT, nil
				}
			}
			if now.Sub(lastT) > 10*time.Second {
				return lastT, fmt.Errorf("benchmarks: %s stalled: %d of %d messages accounted for after 10s without progress",
					r.name(), cur+r.otherLoss(), expect)
			}
		case <-ctx.Done():
			return time.Now(), ctx.Err()
		}
	}
}

type measure struct {
	msgs, sent     uint64
	spent          time.Duration
	mallocs, bytes uint64
	// cpu is the receiver's CPU time over windows that delivered cpuMsgs
	// messages; senderCPU the sender thread's, taken out of cpu.
	cpu, senderCPU time.Duration
	cpuMsgs        uint64
}

func memStats() (mallocs, bytes uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs, ms.TotalAlloc
}

// cpuUsage is user + system time from getrusage(who): RUSAGE_SELF (every
// thread of the process, live and exited) or RUSAGE_THREAD (the calling
// thread). Their sum is the scheduler's exact runtime (the kernel only
// estimates the split between user and system), reported to the
// microsecond; a running thread's own figure may lag by less than a
// scheduler tick, which is small beside slots of a tenth of a second and
// more.
func cpuUsage(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuWindow measures the CPU a receiver uses in one slot. Live on the
// kernel's socket the sender is a process of its own (procSender) and the
// process's usage (RUSAGE_SELF) is the receiver's. On the in-memory
// transport the sender runs in this process, so its usage includes it:
// the sender's goroutine is locked to its own OS thread for the slot
// (runSender) and that thread's RUSAGE_THREAD delta is taken out, so what
// remains is the receiver (its goroutines, the runtime and GC work they
// cause, their system calls) plus the harness's own small bookkeeping (a
// waiting main goroutine, the progress reporter). The sender's kernel work
// (sendmmsg, which for netlink also queues the datagram on the receiving
// socket and wakes its reader) is the sender's. Drain needs no
// subtraction: the sender only fills the queue before the window opens.
type cpuWindow struct {
	self0 time.Duration
}

func startCPU() cpuWindow { return cpuWindow{self0: cpuUsage(unix.RUSAGE_SELF)} }

// end adds the window to m: the process's CPU since start less sender
// (the sender thread's CPU within the window) if the sender ran in this
// process, for delivered messages.
func (w cpuWindow) end(m *measure, sender time.Duration, inProcess bool, delivered uint64) {
	self := cpuUsage(unix.RUSAGE_SELF) - w.self0
	if inProcess {
		self -= sender
	}
	m.cpu += max(self, 0)
	m.senderCPU += sender
	m.cpuMsgs += delivered
}

// drainOnce queues a chunk for r while it is held back, then times how
// long r takes to deliver it.
func (t *traffic) drainOnce(ctx context.Context, r receiver, m *measure) error {
	t.snd.target(r.addr())
	kd0 := r.kernelDrops()
	n := t.snd.fill(t.cfg.Chunk)
	if err := t.snd.err(); err != nil {
		return fmt.Errorf("benchmarks: sending to %s: %w", r.name(), err)
	}
	if n == 0 {
		return fmt.Errorf("benchmarks: %s's queue took no message", r.name())
	}
	t.sent[r].Add(uint64(n))
	queued := uint64(n) - (r.kernelDrops() - kd0)
	d0 := r.counter().n.Load()
	mal0, b0 := memStats()
	if t.timed != nil {
		t.timed(true)
	}
	cw := startCPU()
	start := time.Now()
	r.gate().allow(int64(queued))
	end, err := waitSettled(ctx, r, t.sent[r].Load())
	d1 := r.counter().n.Load()
	cw.end(m, 0, false, d1-d0)
	if t.timed != nil {
		t.timed(false)
	}
	mal1, b1 := memStats()
	m.spent += end.Sub(start)
	m.msgs += d1 - d0
	m.sent += uint64(n)
	m.mallocs += mal1 - mal0
	m.bytes += b1 - b0
	return err
}

// liveOnce runs the sender at full rate against r for d, then waits until
// r has caught up. The rate counts what r delivered while the sender ran;
// the CPU window lasts until r has settled, and counts what r delivered
// until then.
func (t *traffic) liveOnce(ctx context.Context, r receiver, d time.Duration, m *measure) error {
	r.gate().open()
	t.snd.target(r.addr())
	s0, d0 := t.snd.sent(), r.counter().n.Load()
	mal0, b0 := memStats()
	var stop atomic.Bool
	var senderCPU time.Duration
	var inProcess bool
	done := make(chan struct{})
	cw := startCPU()
	start := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(done); senderCPU, inProcess = runSender(t.snd, &stop, stopped) }()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	close(stopped)
	<-done
	spent := time.Since(start)
	d1 := r.counter().n.Load()
	mal1, b1 := memStats()
	s1 := t.snd.sent()
	t.sent[r].Add(s1 - s0)
	m.spent += spent
	m.msgs += d1 - d0
	m.sent += s1 - s0
	m.mallocs += mal1 - mal0
	m.bytes += b1 - b0
	if err := t.snd.err(); err != nil {
		return fmt.Errorf("benchmarks: sending to %s: %w", r.name(), err)
	}
	_, err := waitSettled(ctx, r, t.sent[r].Load())
	cw.end(m, senderCPU, inProcess, r.counter().n.Load()-d0)
	return err
}

// runSender runs s until stop is set and returns the sending thread's CPU
// time meanwhile, and whether that thread is in this process (and so in
// its getrusage; see cpuWindow). An in-process sender runs on an OS thread
// of its own: a locked thread runs no other goroutine, and when the sender
// blocks in sendmmsg the thread sleeps in the kernel, so the delta is the
// sender's alone.
func runSender(s sender, stop *atomic.Bool, stopped <-chan struct{}) (cpu time.Duration, inProcess bool) {
	if p, ok := s.(*procSender); ok {
		p.run(stop, stopped)
		return p.lastCPU(), false
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := cpuUsage(unix.RUSAGE_THREAD)
	s.run(stop, stopped)
	return cpuUsage(unix.RUSAGE_THREAD) - c0, true
}

func runThroughput(ctx context.Context, cfg *Config, res *Result) error {
	t, err := newTraffic(cfg, true, false)
	if err != nil {
		return err
	}
	res.Config = *cfg
	rp := startReporter(cfg)
	defer rp.close()
	ms := make([]measure, len(t.recvs))
	start := time.Now()
	var runErr error
	slot := cfg.Duration / time.Duration(3*len(t.recvs))
rounds:
	for round := 0; round < 3 || cfg.Method == Drain && time.Since(start) < cfg.Duration; round++ {
		for k := range t.recvs {
			i := (k + round) % len(t.recvs) // rotate the order: drift hits everyone alike
			r := t.recvs[i]
			if cfg.Method == Live {
				// Each slot starts with the garbage of the slot before
				// it collected: mdlayher's receive loop allocates 36
				// times a message, and its GC work must not run on the
				// next receiver's time.
				runtime.GC()
			}
			rp.set(&phase{name: r.name(), r: r, start: time.Now(), sent: t.sent[r].Load})
			if cfg.Method == Drain {
				runErr = t.drainOnce(ctx, r, &ms[i])
			} else {
				sent0 := t.sent[r].Load()
				s0 := t.snd.sent()
				rp.set(&phase{name: r.name(), r: r, start: time.Now(), sent: func() uint64 { return sent0 + t.snd.sent() - s0 }})
				runErr = t.liveOnce(ctx, r, slot, &ms[i])
			}
			if runErr != nil || ctx.Err() != nil {
				break rounds
			}
		}
	}
	rp.set(nil)
	for i, r := range t.recvs {
		m := ms[i]
		rr := ReceiverResult{Name: r.name(), Messages: m.msgs, Seconds: m.spent.Seconds()}
		if m.spent > 0 {
			rr.Rate = float64(m.msgs) / m.spent.Seconds()
			rr.MBps = rr.Rate * float64(cfg.Payload) / 1e6
			if cfg.Method == Live {
				rr.SentRate = float64(m.sent) / m.spent.Seconds()
			}
		}
		if m.msgs > 0 {
			rr.AllocsPerMsg = float64(m.mallocs) / float64(m.msgs)
			rr.BytesPerMsg = float64(m.bytes) / float64(m.msgs)
		}
		rr.CPUSeconds = m.cpu.Seconds()
		rr.SenderCPUSeconds = m.senderCPU.Seconds()
		if m.cpuMsgs > 0 {
			rr.CPUNsPerMsg = float64(m.cpu.Nanoseconds()) / float64(m.cpuMsgs)
		}
		a := r.books(t.sent[r].Load())
		rr.Drops = a.KernelDrops + a.MailboxDrops
		res.Receivers = append(res.Receivers, rr)
		res.Accounting = append(res.Accounting, a)
	}
	for _, r := range t.recvs {
		if m, ok := r.(interface{ loopMoves() uint64 }); ok {
			res.Notes = append(res.Notes, fmt.Sprintf("cnactor: receive loop moves %d (each is a handler run that held the loop past its limit; the loop goes on on another goroutine and that handler runs on its own for a second)", m.loopMoves()))
		}
	}
	cn := res.Receivers[len(res.Receivers)-1]
	res.Ratios = map[string]float64{}
	res.CPURatios = map[string]float64{}
	for _, rr := range res.Receivers[:len(res.Receivers)-1] {
		if rr.Rate > 0 {
			res.Ratios[NameCnactor+"/"+rr.Name] = cn.Rate / rr.Rate
		}
		if rr.CPUNsPerMsg > 0 && cn.CPUNsPerMsg > 0 {
			res.CPURatios[NameCnactor+"/"+rr.Name] = cn.CPUNsPerMsg / rr.CPUNsPerMsg
		}
	}
	res.Targets = throughputTargets(cfg, res)
	if cfg.Method == Drain {
		res.Notes = append(res.Notes, fmt.Sprintf("drain: %d-message chunks queued with the receiver held, then timed until delivered; receivers rotate each round", cfg.Chunk))
	} else {
		res.Notes = append(res.Notes, fmt.Sprintf("live: sender at full rate against each receiver in turn, %v per slot, 3 rounds", slot.Round(time.Millisecond)))
	}
	if cfg.Method == Drain {
		res.Notes = append(res.Notes, "cpu/msg: process CPU (getrusage user+system) from releasing each chunk until it was delivered, over the messages delivered; the sender is idle then")
	} else if cfg.Transport == Memory || cfg.SenderInProcess {
		if cfg.Transport != Memory {
			res.Notes = append(res.Notes, "live: the sender runs on a locked thread of this process (-sender-in-process), where it holds one of the Go runtime's Ps")
		}
		res.Notes = append(res.Notes, "cpu/msg: process CPU (getrusage RUSAGE_SELF user+system) less the sender's own locked thread (RUSAGE_THREAD), from each slot's start until the receiver settled, over the messages delivered in that time")
	} else {
		res.Notes = append(res.Notes, "live: the sender is a process of its own (this program run again), as a user's would be")
		res.Notes = append(res.Notes, "cpu/msg: process CPU (getrusage RUSAGE_SELF user+system; the sender is not in it), from each slot's start until the receiver settled, over the messages delivered in that time")
	}
	return errors.Join(runErr, t.close())
}

func throughputTargets(cfg *Config, res *Result) []Target {
	if cfg.Transport == Memory && cfg.Method == Drain && cfg.Payload == 64 && len(res.Receivers) > 0 {
		// The runtime alone: the in-memory transport must leave the
		// kernel far behind.
		want := map[int]float64{1: 5e6, 16: 3e6}[cfg.Handlers]
		if cn := res.Receivers[len(res.Receivers)-1]; want > 0 && cn.Name == NameCnactor {
			return []Target{{Name: fmt.Sprintf("cnactor msg/s in memory, %d handler(s)", cfg.Handlers),
				Want: fmt.Sprintf(">= %gM", want/1e6), Got: cn.Rate / 1e6, Unit: "M", Met: cn.Rate >= want}}
		}
	}
	if cfg.Transport != Netlink || cfg.Payload != 64 {
		return nil
	}
	var ts []Target
	if r, ok := res.Ratios[NameCnactor+"/"+NameRecvmmsg]; ok {
		name := fmt.Sprintf("cnactor/recvmmsg, %d handlers", cfg.Handlers)
		if cfg.Handlers == 1 {
			name = "cnactor/recvmmsg, 1 handler"
		}
		var want float64
		switch {
		case cfg.Method == Live && cfg.Mode == Multicast:
			name, want = "cnactor/recvmmsg, multicast"+strings.TrimPrefix(name, "cnactor/recvmmsg"), 0.9
		case cfg.Method == Live && cfg.Handlers == 1:
			want = 0.9
		case cfg.Method == Live:
			want = 0.85 // 16 handlers, and any other count
		case cfg.Handlers == 1: // drain
			want = 0.8
		case cfg.Handlers == 16:
			want = 0.7
		}
		if want > 0 {
			ts = append(ts, Target{Name: name, Want: fmt.Sprintf(">= %g", want), Got: r, Unit: "x", Met: r >= want})
		}
	}
	if r, ok := res.CPURatios[NameCnactor+"/"+NameRecvmmsg]; ok {
		ts = append(ts, Target{Name: "CPU per message cnactor/recvmmsg", Want: "<= 1.5", Got: r, Unit: "x", Met: r <= 1.5})
	}
	if r, ok := res.Ratios[NameCnactor+"/"+NameMdlayher]; ok {
		ts = append(ts, Target{Name: "cnactor/mdlayher", Want: ">= 4", Got: r, Unit: "x", Met: r >= 4})
	}
	cn := res.Receivers[len(res.Receivers)-1]
	ts = append(ts, Target{Name: "allocations per message (cnactor)", Want: "<= 1", Got: cn.AllocsPerMsg, Met: cn.AllocsPerMsg <= 1})
	if cfg.Method == Live && cfg.Mode == Unicast {
		for _, a := range res.Accounting {
			if a.Receiver == NameCnactor {
				d := float64(a.MailboxDrops)
				ts = append(ts, Target{Name: "dropped in userspace (cnactor)", Want: "== 0", Got: d, Met: d == 0})
			}
		}
	}
	return ts
}
