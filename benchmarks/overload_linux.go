//go:build linux

package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// RSS returns the process's resident memory in bytes (VmRSS in
// /proc/self/status), or 0 if it cannot be read.
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				return 0
			}
			kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rssSampler samples RSS every 100ms and keeps the maximum.
type rssSampler struct {
	max, last atomic.Uint64
	samples   atomic.Int64
	stop      chan struct{}
	done      chan struct{}
}

func startRSS() *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		v := RSS()
		s.last.Store(v)
		s.samples.Add(1)
		for {
			m := s.max.Load()
			if v <= m || s.max.CompareAndSwap(m, v) {
				break
			}
		}
	}
	sample()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) close() {
	close(s.stop)
	<-s.done
}

// overloadRSSLimit is the target.
const overloadRSSLimit = 100 << 20

func runOverload(ctx context.Context, cfg *Config, res *Result) error {
	t, err := newTraffic(cfg, false, true)
	if err != nil {
		return err
	}
	res.Config = *cfg
	cn := t.cn
	rss := startRSS()
	rssStart := rss.last.Load()
	rp := startReporter(cfg)
	defer rp.close()
	cn.gate().open()
	t.snd.target(cn.addr())
	var stop atomic.Bool
	done := make(chan struct{})
	start := time.Now()
	rp.set(&phase{name: "stalled handler " + cn.ids[0].String(), r: cn, start: start, sent: t.snd.sent, rss: rss.last.Load})
	stopped := make(chan struct{})
	go func() { defer close(done); t.snd.run(&stop, stopped) }()
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
	}
	stop.Store(true)
	close(stopped)
	<-done
	spent := time.Since(start)
	rss.close()
	sent := t.snd.sent()
	t.sent[cn].Store(sent)
	perSent := t.snd.perID()
	// What the running handlers delivered while one was stalled.
	delivered := make([]uint64, len(cn.ids))
	for i, c := range cn.perID {
		delivered[i] = c.n.Load()
	}
	var others uint64
	for _, d := range delivered[1:] {
		others += d
	}
	during := cn.booksNow(0)
	info, _ := cn.c.Callback(cn.ids[0])
	o := &OverloadResult{
		Seconds: spent.Seconds(), Sent: sent, SentRate: float64(sent) / spent.Seconds(),
		RSSStart: rssStart, RSSMax: rss.max.Load(), RSSEnd: rss.last.Load(), RSSSamples: int(rss.samples.Load()),
		StalledDrops: info.Dropped, StalledQueue: info.Queued, KernelDrops: during.KernelDrops,
		OthersRate: float64(others) / spent.Seconds(),
	}
	// Release the stalled handler and let everything settle: then the
	// books must balance, and the running handlers must have received
	// everything sent to them that the kernel did not drop.
	rp.set(nil)
	cn.release()
	_, werr := waitSettled(ctx, cn, sent)
	var othersDropped uint64
	if st, ok := cn.c.Callback(cn.ids[0]); ok {
		o.StalledDrops = st.Dropped
	}
	for i := 1; i < len(cn.ids); i++ {
		st, _ := cn.c.Callback(cn.ids[i])
		othersDropped += st.Dropped
		// Delivered is what the handler itself counted: the
		// callback's Handled moves just after it returns.
		sh := HandlerShare{ID: cn.ids[i].String(), Sent: perSent[i], Delivered: cn.perID[i].n.Load()}
		if sh.Sent > 0 {
			sh.Fraction = float64(sh.Delivered) / float64(sh.Sent)
		}
		o.Others = append(o.Others, sh)
	}
	res.Overload = o
	a := cn.books(sent)
	for i := range o.Others {
		sh := &o.Others[i]
		if queued := float64(sh.Sent) - float64(a.KernelDrops)*float64(sh.Sent)/float64(max(sent, 1)); queued > 0 {
			sh.QueuedFraction = float64(sh.Delivered) / queued
		}
	}
	res.Accounting = append(res.Accounting, a)
	res.Targets = append(res.Targets, Target{
		Name: "overload: max RSS", Want: "< 100 MB", Got: float64(o.RSSMax) / 1e6, Unit: "MB", Met: o.RSSMax < overloadRSSLimit,
	})
	var lostToOthers uint64
	for _, sh := range o.Others {
		lostToOthers += sh.Sent - min(sh.Sent, sh.Delivered)
	}
	// Only the kernel may have dropped messages for the running handlers
	// (it does not know ids); their mailboxes must not have dropped any.
	o.OthersMailboxDrops = othersDropped
	minFrac := 1.0
	for _, sh := range o.Others {
		minFrac = min(minFrac, sh.Fraction)
	}
	o.OthersMinFraction = minFrac
	res.Notes = append(res.Notes, fmt.Sprintf("handler %s blocks for the whole run; %d others count; RSS sampled every 100ms", cn.ids[0], len(cn.ids)-1))
	var errs []error
	if err := t.snd.err(); err != nil {
		errs = append(errs, err)
	}
	// Nothing sent to a running handler may be missing but for what the
	// kernel dropped (it does not know ids) and what its own mailbox
	// dropped, counted.
	if lostToOthers > a.KernelDrops+othersDropped {
		errs = append(errs, fmt.Errorf("%w: running handlers miss %d messages, more than kernel drops %d + their mailbox drops %d",
			ErrAccounting, lostToOthers, a.KernelDrops, othersDropped))
	}
	if othersDropped > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the running handlers' own mailboxes dropped %d messages (counted): they did not keep up with the reader at this rate on %d CPUs", othersDropped, runtime.NumCPU()))
	}
	return errors.Join(append(errs, werr, t.close())...)
}
