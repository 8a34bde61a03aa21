package cnactor

import (
	"errors"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/dispatch"
	"github.com/cnactor/cnactor/transport"
)

var (
	// ErrClosed is returned by a closed Connector.
	// It is transport.ErrClosed, which wraps net.ErrClosed.
	ErrClosed = transport.ErrClosed
	// ErrCoreCallback: the connector core's own id cannot be removed.
	ErrCoreCallback = errors.New("cnactor: the connector core callback cannot be removed")
	// ErrTooManyCallbacks: AddCallback past the connector's bound
	// (WithMaxCallbacks).
	ErrTooManyCallbacks = errors.New("cnactor: too many callbacks")

	// ErrDuplicate and ErrNotFound come from the routing table.
	ErrDuplicate = dispatch.ErrDuplicate
	ErrNotFound  = dispatch.ErrNotFound
)

// ErrNoSupervisor: a callback or supervisor names a supervisor that does
// not exist.
var ErrNoSupervisor = errors.New("cnactor: no such supervisor")

// ErrTimeout is wrapped by the error of a Request that got no reply before
// its last attempt's wait ran out.
var ErrTimeout = actors.ErrTimeout

// ErrPending: a Request chose a seq and ack that an exchange in flight uses.
var ErrPending = actors.ErrPending
