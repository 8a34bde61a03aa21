package cnactor

import (
	"cmp"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// An Option configures New.
type Option interface{ apply(*config) }

type config struct {
	conn       transport.Conn
	connSet    bool // WithTransport was given, nil or not
	logger     *zap.Logger
	readBuffer int
	batchSize  int
	fallback   handlers.Handler
	mailbox    int
	overflow   actors.Overflow
	stall      time.Duration
	rootSpec   supervisor.Spec
	topPolicy  TopPolicy

	maxCallbacks int
}

type optionFunc func(*config)

// check refuses the settings that no socket can honour.
func (c *config) check() error {
	if c.connSet && c.conn == nil {
		return errors.New("cnactor: WithTransport(nil): want a transport.Conn (without the option, New dials the kernel)")
	}
	if c.readBuffer < 0 || c.readBuffer > MaxReadBuffer {
		return fmt.Errorf("cnactor: receive buffer %d bytes: want 0..%d (the most the kernel takes)", c.readBuffer, MaxReadBuffer)
	}
	if c.maxCallbacks < 1 {
		return fmt.Errorf("cnactor: at most %d callbacks: want at least 1", c.maxCallbacks)
	}
	if err := checkMailbox(c.mailbox); err != nil {
		return err
	}
	if c.batchSize < 0 || c.batchSize > MaxBatchSize {
		return fmt.Errorf("cnactor: batch size %d: want 0..%d (recvmmsg takes no more per call)", c.batchSize, MaxBatchSize)
	}
	return nil
}

func (f optionFunc) apply(c *config) { f(c) }

// DefaultReadBuffer is the receive buffer New asks for when it dials the
// kernel (doubled by the kernel's bookkeeping): about 10,000 proc events.
const DefaultReadBuffer = 4 << 20

// WithTransport uses conn (for example a transport/memory endpoint) instead
// of dialing the kernel. The Connector owns it and closes it in Close.
func WithTransport(conn transport.Conn) Option {
	return optionFunc(func(c *config) { c.conn, c.connSet = conn, true })
}

// WithLogger sets the logger; protoactor's own logs go to it too. The
// default discards everything.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// MaxReadBuffer is the largest receive buffer New accepts: the most the
// kernel takes (transport.MaxReadBuffer, about 1 GiB).
const MaxReadBuffer = transport.MaxReadBuffer

// MaxBatchSize is the largest batch size New accepts: recvmmsg never takes
// more than 1,024 datagrams per call, and each slot of a batch is a 16 KiB
// buffer allocated up front (twice: the reader fills one batch while it
// routes the other).
const MaxBatchSize = transport.MaxBatchSize

// WithReadBuffer sets the socket receive buffer in bytes when New dials the
// kernel (default DefaultReadBuffer). New refuses a size over
// MaxReadBuffer or negative.
func WithReadBuffer(bytes int) Option {
	return optionFunc(func(c *config) { c.readBuffer = bytes })
}

// WithBatchSize sets how many datagrams one receive call can return
// (default transport.DefaultBatchSize). New refuses a size over
// MaxBatchSize or negative.
func WithBatchSize(n int) Option {
	return optionFunc(func(c *config) { c.batchSize = n })
}

// DefaultMaxCallbacks bounds the callbacks of one connector: each is an
// actor with a mailbox, and a configuration file or a stdin feed could
// otherwise add them without end.
const DefaultMaxCallbacks = 65536

// WithMaxCallbacks sets how many callbacks the connector takes (the core's
// own not counted; default DefaultMaxCallbacks). Past it AddCallback fails
// with ErrTooManyCallbacks, counted in Stats and logged.
func WithMaxCallbacks(n int) Option {
	return optionFunc(func(c *config) { c.maxCallbacks = n })
}

// WithFallback sets a handler for messages whose id has no callback. They
// are counted as unknown either way.
func WithFallback(h handlers.Handler) Option {
	return optionFunc(func(c *config) { c.fallback = h })
}

// MaxMailboxSize bounds a callback's mailbox (WithMailbox,
// WithDefaultMailbox): at 64-byte messages a full one holds about 256 MB.
const MaxMailboxSize = 1 << 22

func checkMailbox(size int) error {
	if size < 0 || size > MaxMailboxSize {
		return fmt.Errorf("cnactor: mailbox of %d messages: want 0 (the default, %d) to %d", size, actors.DefaultMailboxSize, MaxMailboxSize)
	}
	return nil
}

// WithDefaultMailbox sets the mailbox size and overflow policy of callbacks
// that do not choose their own.
func WithDefaultMailbox(size int, overflow Overflow) Option {
	return optionFunc(func(c *config) { c.mailbox, c.overflow = size, overflow })
}

// WithDefaultStallTimeout sets the stall timeout (see WithStallTimeout) of
// callbacks that do not choose their own.
func WithDefaultStallTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.stall = d })
}

// Overflow is what a full callback mailbox does with one more message.
type Overflow = actors.Overflow

// Overflow policies; every one counts what it drops. Backpressure, the
// default, holds the socket instead of dropping (see actors.Backpressure).
const (
	Backpressure = actors.Backpressure
	DropNewest   = actors.DropNewest
	DropOldest   = actors.DropOldest
)

// DefaultStallTimeout bounds how long one callback's full mailbox may hold
// the socket under Backpressure before the callback sheds its messages.
const DefaultStallTimeout = actors.DefaultStallTimeout

// A CallbackOption configures one callback.
type CallbackOption interface{ applyCallback(*callbackConfig) }

type callbackConfig struct {
	mailbox    int
	overflow   actors.Overflow
	stall      time.Duration
	policy     dispatch.SenderPolicy
	policySet  bool // by WithSenderPolicy: else the handler's declared one
	supervisor string
	child      supervisor.ChildSpec
	deadLetter func(m *transport.Received, reason error)
	// registrations counts the callback's registrations, shared by every
	// restart of its supervisor (set by addCallback).
	registrations *atomic.Int32
}

type callbackOptionFunc func(*callbackConfig)

func (f callbackOptionFunc) applyCallback(c *callbackConfig) { f(c) }

// WithMailbox sets the callback's mailbox capacity (messages queued or being
// handled) and overflow policy.
func WithMailbox(size int, overflow Overflow) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.mailbox, c.overflow = size, overflow })
}

// WithStallTimeout bounds how long the callback's full mailbox may hold the
// socket-reader, and with it every other callback, under Backpressure
// (default DefaultStallTimeout). Past it the callback sheds its messages
// (counted as Dropped and Shed, with a loss notice) until its mailbox has
// drained to half.
func WithStallTimeout(d time.Duration) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.stall = d })
}

// WithSenderPolicy restricts who may reach the callback. Without it the
// callback takes the policy its handler declares (handlers.SenderDeclarer:
// the proc handler admits the kernel only), or admits anyone.
func WithSenderPolicy(p dispatch.SenderPolicy) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.policy, c.policySet = p, true })
}

// WithShutdownTimeout bounds how long DelCallback waits for the handler to
// process what is queued; what is left then is counted as dropped.
func WithShutdownTimeout(d time.Duration) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.child.ShutdownTimeout = d })
}

// WithSupervisor places the callback under the named supervisor (see
// AddSupervisor) instead of the root one.
func WithSupervisor(name string) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.supervisor = name })
}

// WithRestart sets the callback's restart type (default Permanent).
func WithRestart(t supervisor.RestartType) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.child.Restart = t })
}

// WithDeadLetter hands every message whose handling failed to fn, with the
// reason, before it is dropped. The message is valid only during the call.
func WithDeadLetter(fn func(m *transport.Received, reason error)) CallbackOption {
	return callbackOptionFunc(func(c *callbackConfig) { c.deadLetter = fn })
}

// WithRootSupervisor configures the root supervisor, under which callbacks
// and named supervisors go unless told otherwise (default
// supervisor.DefaultSpec).
func WithRootSupervisor(spec supervisor.Spec) Option {
	return optionFunc(func(c *config) { c.rootSpec = spec })
}

// TopPolicy is what happens when a failure escalates past the root
// supervisor.
type TopPolicy uint8

const (
	// KeepRunning (the default) keeps the connector serving without the
	// handlers that were stopped; the failure is logged and reported as an
	// escalated supervision event.
	KeepRunning TopPolicy = iota
	// FailConnector also fails the connector: Done is closed and Err
	// returns the failure. The socket keeps running until Close.
	FailConnector
)

func (p TopPolicy) String() string {
	if p == FailConnector {
		return "fail-connector"
	}
	return "keep-running"
}

// WithTopPolicy sets what an escalation past the root supervisor does.
func WithTopPolicy(p TopPolicy) Option {
	return optionFunc(func(c *config) { c.topPolicy = p })
}

// Settings are the connector-level settings a Connector runs with, fixed
// by New; a configuration reload compares against them.
type Settings struct {
	// ReadBuffer is the receive buffer asked of the kernel in bytes; 0
	// when the transport was given (WithTransport).
	ReadBuffer   int
	BatchSize    int // datagrams per receive call (WithBatchSize, else transport.DefaultBatchSize)
	MaxCallbacks int // WithMaxCallbacks
	TopPolicy    TopPolicy
	Root         supervisor.Spec // the root supervisor's spec
}

// Settings returns the settings c runs with.
func (c *Connector) Settings() Settings {
	s := Settings{BatchSize: cmp.Or(c.cfg.batchSize, transport.DefaultBatchSize), MaxCallbacks: c.cfg.maxCallbacks, TopPolicy: c.cfg.topPolicy, Root: c.cfg.rootSpec}
	if c.cfg.conn == nil {
		s.ReadBuffer = c.cfg.readBuffer
	}
	return s
}
