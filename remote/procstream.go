package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
)

// ProcNode is one node of a fleet proc stream: its address and the host
// label its events carry.
type ProcNode struct {
	Host string // default Addr
	Addr string
}

// ParseProcNodes parses a comma-separated list of [HOST=]ADDR, as `cnctl
// proc -remote` takes it. A missing port is DefaultPort.
func ParseProcNodes(list string) ([]ProcNode, error) {
	var nodes []ProcNode
	seen := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		host, addr, labelled := strings.Cut(f, "=")
		if !labelled {
			addr, host = host, ""
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), fmt.Sprint(DefaultPort))
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, fmt.Errorf("remote: node %q: %w", f, err)
			}
		}
		if host == "" {
			host = addr
		}
		if seen[host] {
			return nil, fmt.Errorf("remote: host %q listed twice", host)
		}
		seen[host] = true
		nodes = append(nodes, ProcNode{Host: host, Addr: addr})
	}
	if len(nodes) == 0 {
		return nil, errors.New("remote: no node given")
	}
	return nodes, nil
}

// ProcEvent is one event of a fleet proc stream.
type ProcEvent struct {
	// Host is the label of the node the event comes from.
	Host string
	// Event is the proc event, as proc.Monitor delivers them (with the
	// process information the node read from its /proc), or *proc.Lost
	// where events from that node went missing (its Source is a
	// handlers.LossSource: "socket" or "mailbox" on the node, "queue",
	// "transport"; or "sequence" for a gap nothing reported); nil for a
	// status change.
	Event proc.Event
	// Wall is when the event happened, on the wall clock (the node's boot
	// time plus the kernel's timestamp).
	Wall time.Time
	// Status, for status changes: "disconnected: REASON", "reconnected",
	// or "removed: REASON" (the node refused to take the host back).
	Status string
}

// A ProcOption configures ListenProc.
type ProcOption interface{ applyProc(*procConfig) }

type procConfig struct {
	mask   proc.What
	buffer int
	opts   []Option
}

type procOptionFunc func(*procConfig)

func (f procOptionFunc) applyProc(c *procConfig) { f(c) }

// WithProcEvents keeps the given kinds only (default proc.WhatAll). The
// nodes subscribe to everything and the filter applies here, after the
// sequence checks, so that losses are still counted.
func WithProcEvents(mask proc.What) ProcOption {
	return procOptionFunc(func(c *procConfig) { c.mask = mask })
}

// WithProcBuffer sets the capacity of the Events channel (default 4096).
// A consumer that falls behind holds back the nodes' deliveries, and their
// queues drop, counted, in the stream as Lost events.
func WithProcBuffer(n int) ProcOption {
	return procOptionFunc(func(c *procConfig) { c.buffer = n })
}

// WithProcRemote passes options to the remote callbacks (window, queue).
func WithProcRemote(opts ...Option) ProcOption {
	return procOptionFunc(func(c *procConfig) { c.opts = append(c.opts, opts...) })
}

// ProcStream is the proc connector of several nodes as one stream.
type ProcStream struct {
	s      *Subscriber
	out    chan ProcEvent
	done   chan struct{}
	hs     []*procHandler
	closed sync.Once
	err    error
}

// ListenProc registers a remote proc handler on each node (which must
// export proc.ID(), see ProcExport) and merges their events into one stream,
// each labelled with its host. Every node's stream is checked on its own:
// the kernel numbers events per CPU, so a gap (across a node restart too)
// becomes a *proc.Lost event of that host at the point where the events
// went missing, each lost event counted once, whatever reported it first
// (the node's socket or queue, the transport, or the sequence numbers).
// It returns when every node accepted, or the first refusal.
func ListenProc(ctx context.Context, s *Subscriber, nodes []ProcNode, opts ...ProcOption) (*ProcStream, error) {
	cfg := procConfig{mask: proc.WhatAll, buffer: 4096}
	for _, o := range opts {
		o.applyProc(&cfg)
	}
	if cfg.mask == 0 {
		cfg.mask = proc.WhatAll
	}
	ps := &ProcStream{s: s, out: make(chan ProcEvent, cfg.buffer), done: make(chan struct{})}
	for _, n := range nodes {
		if n.Host == "" {
			n.Host = n.Addr
		}
		h := &procHandler{ps: ps, node: n, mask: cfg.mask, lastSeq: map[uint32]uint32{}}
		if err := s.AddCallback(ctx, n.Addr, proc.ID(), "proc@"+n.Host, h, cfg.opts...); err != nil {
			ps.Close()
			return nil, fmt.Errorf("%s: %w", n.Host, err)
		}
		ps.hs = append(ps.hs, h)
	}
	return ps, nil
}

// Events is the merged stream; it is closed by Close.
func (ps *ProcStream) Events() <-chan ProcEvent { return ps.out }

// ProcStats count one host's part of the stream.
type ProcStats struct {
	Host, Addr string
	Events     uint64 // delivered on Events (status changes excluded)
	Lost       uint64 // reported in Lost events
	Filtered   uint64 // received but not asked for
	Dropped    uint64 // not delivered because the stream was closing
	Remote     RegistrationStats
}

// Stats returns the counters of each host, in the order given.
func (ps *ProcStream) Stats() []ProcStats {
	out := make([]ProcStats, 0, len(ps.hs))
	for _, h := range ps.hs {
		st := ProcStats{Host: h.node.Host, Addr: h.node.Addr, Events: h.events.Load(), Lost: h.lost.Load(),
			Filtered: h.filtered.Load(), Dropped: h.dropped.Load()}
		st.Remote, _ = ps.s.Callback(h.node.Addr, proc.ID())
		out = append(out, st)
	}
	return out
}

// Close removes the remote proc handlers (the nodes send IGNORE when they
// have no other subscriber) and closes Events.
func (ps *ProcStream) Close() error {
	ps.closed.Do(func() {
		close(ps.done)
		var errs []error
		for _, h := range ps.hs {
			if err := ps.s.DelCallback(h.node.Addr, proc.ID()); err != nil && !errors.Is(err, cnactor.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		close(ps.out)
		ps.err = errors.Join(errs...)
	})
	return ps.err
}

// procHandler is the remote proc handler of one node.
type procHandler struct {
	ps      *ProcStream
	node    ProcNode
	mask    proc.What
	lastSeq map[uint32]uint32 // per CPU, kept across subscriptions
	// Loss reported by the stream and not yet seen as a sequence gap
	// (credit), and gaps seen before the report that explains them
	// (excess): every lost event is counted once.
	credit, excess uint64

	events, lost, filtered, dropped atomic.Uint64
}

var (
	_ handlers.LossObserver = (*procHandler)(nil)
	_ EventObserver         = (*procHandler)(nil)
)

func (h *procHandler) Receive(ctx handlers.Context, m *transport.Message) error {
	ev, err := proc.Decode(m.Data, m.Seq, m.Ack)
	if err != nil {
		return err
	}
	hd := ev.Head()
	if last, ok := h.lastSeq[hd.CPU]; ok {
		if gap := hd.Seq - last - 1; gap != 0 && gap < 1<<31 {
			h.gap(uint64(gap), hd)
		}
	}
	h.lastSeq[hd.CPU] = hd.Seq
	if !wantedProc(h.mask, ev) {
		h.filtered.Add(1)
		return nil
	}
	var boot int64
	if rc, ok := ctx.(*remoteContext); ok {
		if p := rc.d.Process; p != nil {
			attachProcess(ev, &proc.Process{TGID: p.Tgid, Comm: p.Comm, Cmdline: p.Cmdline, Exe: p.Exe,
				StartNS: p.StartNs, Duration: time.Duration(p.DurationNs)})
		}
		if info := rc.r.info.Load(); info != nil {
			boot = info.boot
		}
	}
	h.emit(ProcEvent{Host: h.node.Host, Event: ev, Wall: time.Unix(0, boot+int64(hd.TimestampNS))})
	return nil
}

func attachProcess(ev proc.Event, p *proc.Process) {
	switch e := ev.(type) {
	case *proc.Fork:
		e.Process = p
	case *proc.Exec:
		e.Process = p
	case *proc.Exit:
		e.Process = p
	}
}

// wantedProc applies a filter as the kernel's cn_filter does;
// acknowledgements always pass.
func wantedProc(mask proc.What, ev proc.Event) bool {
	hd := ev.Head()
	if hd.What == proc.WhatNone {
		return true
	}
	if e, ok := ev.(*proc.Exit); ok && mask&proc.WhatNonzeroExit != 0 && e.ExitCode != 0 {
		return true
	}
	return mask&hd.What != 0
}

// Lost reports losses the node or the transport counted.
func (h *procHandler) Lost(n uint64, source handlers.LossSource) {
	matched := min(n, h.excess)
	h.excess -= matched
	if n -= matched; n > 0 {
		h.credit += n
		h.emit(ProcEvent{Host: h.node.Host, Event: &proc.Lost{Count: n, Source: source.String()}, Wall: time.Now()})
	}
}

func (h *procHandler) gap(n uint64, at *proc.Header) {
	matched := min(n, h.credit)
	h.credit -= matched
	if n -= matched; n > 0 {
		h.excess += n
		h.emit(ProcEvent{Host: h.node.Host, Wall: time.Now(), Event: &proc.Lost{
			Header: proc.Header{CPU: at.CPU, TimestampNS: at.TimestampNS, Seq: at.Seq}, Count: n, Source: "sequence"}})
	}
}

// RemoteEvent turns the node's comings and goings into status events.
func (h *procHandler) RemoteEvent(ev Event) {
	var status string
	switch {
	case ev.Kind == EventAdded && ev.Resubscribed:
		status = "reconnected"
	case ev.Kind == EventRemoved && ev.Retrying:
		status = "disconnected: " + ev.Reason.Error()
	case ev.Kind == EventRemoved && ev.Reason != nil:
		status = "removed: " + ev.Reason.Error()
	default:
		return
	}
	h.emit(ProcEvent{Host: h.node.Host, Wall: time.Now(), Status: status})
}

func (h *procHandler) emit(ev ProcEvent) {
	select {
	case h.ps.out <- ev:
		switch e := ev.Event.(type) {
		case nil:
		case *proc.Lost:
			h.lost.Add(e.Count)
		default:
			h.events.Add(1)
		}
	case <-h.ps.done:
		h.dropped.Add(1)
	}
}
