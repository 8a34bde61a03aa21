package proc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// ID is the proc connector's callback id, 1:1 (CN_IDX_PROC, CN_VAL_PROC);
// its events arrive on group 1. A function, so that it cannot be reassigned.
func ID() transport.CbID { return transport.CbID{Idx: 1, Val: 1} }

// Subscription operations (enum proc_cn_mcast_op), for SubscriptionMessage.
const (
	OpListen uint32 = 1
	OpIgnore uint32 = 2
)

// Mode is how the monitor gets the events it was asked for.
type Mode uint8

const (
	// ModeAuto picks ModeAll for every event kind, ModeKernelFilter on
	// kernels 6.6 and later, ModeUserspaceFilter before.
	ModeAuto Mode = iota
	// ModeAll subscribes to every event (the 4-byte LISTEN); losses also
	// show as gaps in the per-CPU sequence numbers, which are checked.
	ModeAll
	// ModeKernelFilter sends the 8-byte proc_input of kernels 6.6+: the
	// kernel sends only the asked-for kinds, and no acknowledgement.
	ModeKernelFilter
	// ModeUserspaceFilter subscribes to everything and filters here, for
	// kernels before 6.6, which ignore the 8-byte form.
	ModeUserspaceFilter
)

func (m Mode) String() string {
	return [...]string{"auto", "all", "kernel-filter", "userspace-filter"}[m]
}

// An Option configures Listen.
type Option interface{ apply(*config) }

type config struct {
	mask       What
	mode       Mode
	enrich     bool
	buffer     int
	mailbox    int
	readBuffer int
	conn       *cnactor.Connector
	logger     *zap.Logger
	table      []TableOption
	taskstats  bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithEvents asks for the given kinds only (default WhatAll). WhatNonzeroExit
// asks for exits with a non-zero code.
func WithEvents(mask What) Option { return optionFunc(func(c *config) { c.mask = mask }) }

// WithMode forces a subscription mode (default ModeAuto).
func WithMode(m Mode) Option { return optionFunc(func(c *config) { c.mode = m }) }

// WithEnrichment turns the process table on or off (default on). With it,
// every event but acks and losses carries its Process (names, parent,
// duration on exits), and the monitor subscribes to the forks, execs, comm
// changes and exits the table needs even when WithEvents asks for fewer,
// delivering only the asked-for kinds.
func WithEnrichment(on bool) Option { return optionFunc(func(c *config) { c.enrich = on }) }

// WithBuffer sets the capacity of the Events channel (default 4096).
func WithBuffer(n int) Option { return optionFunc(func(c *config) { c.buffer = n }) }

// WithMailbox sets how many received events may wait for the monitor's
// handler (default 65536); beyond that they are lost, and reported.
func WithMailbox(n int) Option { return optionFunc(func(c *config) { c.mailbox = n }) }

// WithReadBuffer sets the socket receive buffer of the connector Listen
// creates (default cnactor.DefaultReadBuffer: about 10,000 events).
func WithReadBuffer(bytes int) Option { return optionFunc(func(c *config) { c.readBuffer = bytes }) }

// WithConnector subscribes on an existing connector instead of creating
// one; the connector must not have a callback for ID. Close leaves it open.
func WithConnector(c *cnactor.Connector) Option {
	return optionFunc(func(cfg *config) { cfg.conn = c })
}

// WithLogger sets the logger of the monitor and of the connector Listen
// creates.
func WithLogger(l *zap.Logger) Option { return optionFunc(func(c *config) { c.logger = l }) }

// WithTable configures the process table (on unless WithEnrichment(false))
// with the options NewTable takes: WithTableLimit, WithRetention,
// WithReadFilter. The monitor logs the table's rejections with its own
// logger unless WithTableLogger says otherwise.
func WithTable(opts ...TableOption) Option {
	return optionFunc(func(c *config) { c.table = append(c.table, opts...) })
}

// WithTaskstats turns off (or on: the default) the taskstats listener of
// the process table, which names processes gone before their exec could be
// read (see Names in the package documentation).
func WithTaskstats(on bool) Option { return optionFunc(func(c *config) { c.taskstats = on }) }

// ErrPermission explains a refused subscription.
var ErrPermission = errors.New("proc: this kernel lets only root (CAP_NET_ADMIN) listen to process events; kernels 6.6 and later allow everyone")

// Monitor is a subscription to the proc connector. Events are delivered in
// the kernel's order on Events, with *Lost events where some went missing.
type Monitor struct {
	c     *cnactor.Connector
	owns  bool
	mode  Mode
	mask  What
	h     *handler
	added bool // our AddCallback succeeded: Close removes the callback
	ts    *taskstatsListener

	stop     chan struct{} // closed when Events closes: ends watch
	removed  chan struct{} // the connector removed our callback
	unwatch  func()
	closed   sync.Once
	cleanErr error // what Close returns
	reason   atomic.Pointer[error]
}

// Why Events closed, as Err reports it.
var (
	// ErrConnectorFailed: the connector failed (a failure escalated past
	// its root supervisor); it wraps the connector's error.
	ErrConnectorFailed = errors.New("proc: connector failed")
	// ErrCallbackRemoved: the connector removed the proc callback (its
	// supervisor gave up on it, or someone called DelCallback).
	ErrCallbackRemoved = errors.New("proc: callback removed from the connector")
)

// Listen subscribes to process events: it registers the proc handler for
// ID (joining group 1) on its own connector (or the one given), and sends
// LISTEN to the kernel, to port 0 with no groups, as the kernel wants it.
// It does not wait for the kernel's acknowledgement (filtered subscriptions
// get none); the Ack event shows up in the stream when there is one.
func Listen(ctx context.Context, opts ...Option) (*Monitor, error) {
	cfg := config{mask: WhatAll, enrich: true, buffer: 4096, mailbox: 1 << 16,
		readBuffer: cnactor.DefaultReadBuffer, logger: zap.NewNop(), taskstats: true}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.mask == 0 {
		cfg.mask = WhatAll
	}
	m := &Monitor{c: cfg.conn, mask: cfg.mask, mode: resolveMode(cfg.mode, subscribed(cfg.mask, cfg.enrich)),
		stop: make(chan struct{}), removed: make(chan struct{}, 1)}
	if m.c == nil {
		c, err := cnactor.New(cnactor.WithReadBuffer(cfg.readBuffer), cnactor.WithLogger(cfg.logger))
		if err != nil {
			return nil, fmt.Errorf("proc: %w", err)
		}
		m.c, m.owns = c, true
	}
	m.h = newHandler(m, cfg)
	if m.h.table != nil && cfg.taskstats {
		m.listenTaskstats(cfg.logger)
	}
	m.unwatch = m.c.Watch(func(ev cnactor.Event) {
		if ev.ID == ID() && ev.Kind == dispatch.EventRemoved && ev.Name == "proc" {
			select {
			case m.removed <- struct{}{}:
			default:
			}
		}
	})
	err := m.c.AddCallback(ID(), "proc", m.h,
		cnactor.WithSenderPolicy(dispatch.AllowKernel()), cnactor.WithMailbox(cfg.mailbox, cnactor.DropNewest))
	if err == nil {
		m.added = true
		err = m.send(ctx, OpListen)
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			err = fmt.Errorf("%w: %w", ErrPermission, err)
		}
		m.finish(err, false)
		return nil, err
	}
	go m.watch(ctx)
	cfg.logger.Info("proc: listening", zap.Stringer("mode", m.mode), zap.Stringer("events", m.mask))
	return m, nil
}

// listenTaskstats gives the table the exit records of taskstats, before
// the subscription so that no process's exit is missed; without them
// (no privilege, no CONFIG_TASKSTATS), the table works as before.
func (m *Monitor) listenTaskstats(log *zap.Logger) {
	if log == nil {
		log = zap.NewNop()
	}
	x := newExitNames()
	l, err := listenTaskstats(x, log)
	if err != nil {
		log.Info("proc: no taskstats exit records (they need CAP_NET_ADMIN in the initial namespaces, and CONFIG_TASKSTATS): processes gone before their exec is read keep their earlier names, marked stale",
			zap.Error(err))
		return
	}
	m.ts = l
	m.h.table.exits = x
}

// tableNeeds are the kinds the process table is kept current from.
const tableNeeds = WhatFork | WhatExec | WhatComm | WhatExit

// subscribed is what to ask the kernel for when mask is wanted: with the
// table on, also what it needs, and every exit (the kernel's nonzero-exit
// filter would hide the others from the table).
func subscribed(mask What, enrich bool) What {
	if enrich && (mask&tableNeeds != tableNeeds || mask&WhatNonzeroExit != 0) {
		return (mask | tableNeeds) &^ WhatNonzeroExit
	}
	return mask
}

// watch closes Events when ctx is done, the connector fails or our
// callback is removed under us.
func (m *Monitor) watch(ctx context.Context) {
	var reason error
	select {
	case <-m.stop:
		return
	case <-ctx.Done():
		reason = context.Cause(ctx)
	case <-m.c.Done():
		reason = fmt.Errorf("%w: %w", ErrConnectorFailed, m.c.Err())
	case <-m.removed:
		reason = ErrCallbackRemoved
	}
	m.closed.Do(func() { m.cleanErr = m.finish(reason, true) })
}

// resolveMode picks the mode for mask on this kernel.
func resolveMode(m Mode, mask What) Mode {
	if m != ModeAuto {
		return m
	}
	if mask&WhatAll == WhatAll {
		return ModeAll
	}
	if kernelAtLeast(6, 6) {
		return ModeKernelFilter
	}
	return ModeUserspaceFilter
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, _ := strconv.Atoi(parts[0])
	mnr, _ := strconv.Atoi(leadingDigits(parts[1]))
	return maj > major || maj == major && mnr >= minor
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// send sends LISTEN or IGNORE in the form of the monitor's mode: to port 0
// with no groups.
func (m *Monitor) send(ctx context.Context, op uint32) error {
	return m.c.Send(ctx, transport.Kernel(), SubscriptionMessage(op, m.mode, m.mask))
}

// Events is the stream of events, in the kernel's order. It is closed when
// the ctx given to Listen is done, when Close is called, when the
// connector fails and when the connector removes the monitor's callback;
// Err then says which. Events still queued when it closes are dropped
// (counted in Stats.Dropped).
func (m *Monitor) Events() <-chan Event { return m.h.out }

// Err is why Events closed: cnactor.ErrClosed (Close was called), the cause of the ctx given to
// Listen (context.Canceled, context.DeadlineExceeded or the cause given to
// a CancelCauseFunc), an error wrapping ErrConnectorFailed and the
// connector's own, or ErrCallbackRemoved (which becomes the connector's
// failure once the connector reports one: a failing connector removes its
// callbacks first). It is nil while Events is open.
func (m *Monitor) Err() error {
	p := m.reason.Load()
	if p == nil {
		return nil
	}
	// A failing connector removes its callbacks before it reports the
	// failure: once it has, the failure is the reason.
	if errors.Is(*p, ErrCallbackRemoved) && m.c.Err() != nil {
		return fmt.Errorf("%w: %w", ErrConnectorFailed, m.c.Err())
	}
	return *p
}

// Table is the monitor's process table, nil without enrichment. Lookups
// may run concurrently with the monitor.
func (m *Monitor) Table() *Table { return m.h.table }

// Taskstats reports whether the process table gets the kernel's taskstats
// exit records, which name processes gone before their exec could be read
// (root, or CAP_NET_ADMIN, in the initial namespaces; see Names in the
// package documentation).
func (m *Monitor) Taskstats() bool { return m.ts != nil }

// Mode is the subscription mode in use.
func (m *Monitor) Mode() Mode { return m.mode }

// Connector is the connector the monitor runs on.
func (m *Monitor) Connector() *cnactor.Connector { return m.c }

// Stats counts what the monitor saw.
type Stats struct {
	Events   uint64 // delivered on Events
	Filtered uint64 // received but not asked for (userspace filtering)
	Lost     uint64 // reported in Lost events
	Dropped  uint64 // not delivered because the monitor was closing
}

// Stats returns the monitor's counters.
func (m *Monitor) Stats() Stats {
	return Stats{Events: m.h.events.Load(), Filtered: m.h.filtered.Load(), Lost: m.h.lost.Load(), Dropped: m.h.dropped.Load()}
}

// Close closes Events (Err is then cnactor.ErrClosed, unless it closed earlier
// for another reason), sends IGNORE (which, since 6.6, affects only this
// socket), removes the proc callback, and closes the connector if Listen
// created it. It may be called more than once; a monitor made with
// WithConnector must be closed before its connector.
func (m *Monitor) Close() error {
	m.closed.Do(func() { m.cleanErr = m.finish(cnactor.ErrClosed, true) })
	return m.cleanErr
}

// ignoreTimeout bounds the IGNORE sent when closing.
const ignoreTimeout = time.Second

// finish closes Events with reason, then unsubscribes and cleans up.
func (m *Monitor) finish(reason error, ignore bool) error {
	m.reason.CompareAndSwap(nil, &reason)
	m.h.closeOut()
	if m.ts != nil {
		m.ts.close() // wakes an exec waiting for its record
	}
	close(m.stop)
	if m.unwatch != nil {
		m.unwatch()
	}
	var errs []error
	if ignore {
		ctx, cancel := context.WithTimeout(context.Background(), ignoreTimeout)
		errs = append(errs, m.send(ctx, OpIgnore))
		cancel()
	}
	if m.added { // never another monitor's callback
		if err := m.c.DelCallback(ID()); err != nil && !errors.Is(err, cnactor.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if m.owns {
		errs = append(errs, m.c.Close(context.Background()))
	}
	return errors.Join(errs...)
}

// handler is the proc callback: it decodes, checks sequence numbers,
// filters, enriches and delivers.
type handler struct {
	m          *Monitor
	out        chan Event
	done       chan struct{}
	userFilter bool
	show       What // the kinds delivered (the subscription may be wider)
	gapCheck   bool
	table      *Table // nil: no enrichment

	// sendMu orders deliveries before closeOut: Events closes while the
	// handler may still run.
	sendMu    sync.Mutex
	outClosed bool

	lastSeq map[uint32]uint32 // per CPU
	// Loss reported by the socket or mailbox and not yet seen as a gap
	// (credit), and gaps reported before the count that explains them
	// arrived (excess): every lost event is reported once.
	credit, excess uint64

	events, filtered, lost, dropped atomic.Uint64

	// sink, when set, takes every event instead of out (the registered
	// "proc" handler, which prints them).
	sink func(Event)
}

// newHandler builds the handler of m, whose mask is what the user asked
// for; with enrichment on it widens m.mask to what the table needs (see
// subscribed) and filters here. The registered "proc" handler relies on
// that: it subscribes with m.mask after this.
func newHandler(m *Monitor, cfg config) *handler {
	show := m.mask
	m.mask = subscribed(show, cfg.enrich)
	if m.mask&WhatAll == WhatAll && m.mode == ModeKernelFilter {
		m.mode = ModeAll // widened to everything: the 4-byte form, with gap checks
	}
	h := &handler{
		m: m, out: make(chan Event, max(cfg.buffer, 0)), done: make(chan struct{}), show: show,
		userFilter: m.mode == ModeUserspaceFilter || show != m.mask || m.mode == ModeKernelFilter && show&WhatNonzeroExit != 0,
		gapCheck:   m.mode == ModeAll || m.mode == ModeUserspaceFilter,
		lastSeq:    map[uint32]uint32{},
	}
	if cfg.enrich {
		logger := cfg.logger
		if logger == nil {
			logger = zap.NewNop()
		}
		h.table = NewTable(append([]TableOption{WithTableLogger(logger)}, cfg.table...)...)
		if _, err := h.table.Seed(); err != nil {
			logger.Warn("proc: process table not seeded from /proc", zap.Error(err))
		}
	}
	return h
}

var _ handlers.LossObserver = (*handler)(nil)

// Receive handles one proc event from the kernel.
func (h *handler) Receive(_ handlers.Context, msg *transport.Message) error {
	// Sequence numbers first: an event this package cannot decode (a kind
	// from a newer kernel) was still received, not lost.
	if h.gapCheck && len(msg.Data) >= 8 {
		cpu := binary.NativeEndian.Uint32(msg.Data[4:])
		if last, ok := h.lastSeq[cpu]; ok {
			if gap := msg.Seq - last - 1; gap != 0 && gap < 1<<31 {
				h.gap(uint64(gap), cpu, msg.Seq)
			}
		}
		h.lastSeq[cpu] = msg.Seq
	}
	ev, err := Decode(msg.Data, msg.Seq, msg.Ack)
	if err != nil {
		return err
	}
	// The table sees everything subscribed, before the filter.
	if h.table != nil {
		h.table.Update(ev)
	}
	if h.userFilter && !wanted(h.show, ev) {
		h.filtered.Add(1)
		return nil
	}
	h.emit(ev)
	return nil
}

// wanted applies a filter mask as the kernel's cn_filter does.
func wanted(mask What, ev Event) bool {
	hd := ev.Head()
	if hd.What == WhatNone {
		return true // acknowledgements always pass in userspace
	}
	if e, ok := ev.(*Exit); ok && mask&WhatNonzeroExit != 0 && e.ExitCode != 0 {
		return true
	}
	return mask&hd.What != 0
}

// Lost is told by the runtime that n messages were lost before the next.
func (h *handler) Lost(n uint64, source handlers.LossSource) {
	matched := min(n, h.excess)
	h.excess -= matched
	if n -= matched; n > 0 {
		h.credit += n
		h.emit(&Lost{Count: n, Source: source.String()})
	}
}

func (h *handler) gap(n uint64, cpu, seq uint32) {
	matched := min(n, h.credit)
	h.credit -= matched
	if n -= matched; n > 0 {
		h.excess += n
		h.emit(&Lost{Header: Header{CPU: cpu, Seq: seq}, Count: n, Source: "sequence"})
	}
}

func (h *handler) emit(ev Event) {
	if h.sink != nil {
		h.sink(ev)
		h.count(ev)
		return
	}
	h.sendMu.Lock()
	defer h.sendMu.Unlock()
	if h.outClosed {
		h.dropped.Add(1)
		return
	}
	select {
	case h.out <- ev:
		h.count(ev)
	case <-h.done:
		h.dropped.Add(1)
	}
}

func (h *handler) count(ev Event) {
	if l, ok := ev.(*Lost); ok {
		h.lost.Add(l.Count)
	} else {
		h.events.Add(1)
	}
}

// closeOut closes Events once: a delivery blocked on a full channel lets
// go first; later ones are dropped.
func (h *handler) closeOut() {
	close(h.done)
	h.sendMu.Lock()
	defer h.sendMu.Unlock()
	h.outClosed = true
	close(h.out)
}
