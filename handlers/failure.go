package handlers

import (
	"errors"
	"fmt"
)

// ErrStop, returned by Receive, ends the handler normally: the message
// counts as handled, and the callback's supervisor restarts the handler only
// if its restart type is Permanent; otherwise the callback is removed.
var ErrStop = errors.New("handlers: handler stopped normally")

// PanicError is the failure reason of a handler that panicked.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Unwrap returns the panic value if it was an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Stopper is implemented by handlers that hold resources: OnStop is called
// once when the handler's actor stops for good (DelCallback, Close, or its
// supervisor giving up), not on restarts. A panic in OnStop is logged and
// ignored: it never brings the handler back.
type Stopper interface {
	OnStop()
}

// Restarter is implemented by handlers whose state must be reset when their
// supervisor restarts them; Restart is called before the next message.
type Restarter interface {
	Restart()
}

// LossSource says where messages were lost: the one taxonomy of loss, for
// local callbacks and for remote ones (package remote), whose messages
// pass through a node's socket and mailbox, a queue and a connection.
type LossSource uint8

const (
	// LossSocket: the kernel dropped datagrams because the socket's receive
	// queue was full (its drop counter). They may have been for any id. For
	// a remote callback, the socket is the node's.
	LossSocket LossSource = iota
	// LossMailbox: the handler's mailbox was full and dropped messages (for
	// a remote callback, the mailbox of the node's forwarding callback).
	LossMailbox
	// LossQueue: a remote subscription's queue on its node was full.
	LossQueue
	// LossTransport: sent by a node and never received (the connection
	// broke).
	LossTransport
)

func (s LossSource) String() string {
	switch s {
	case LossSocket:
		return "socket"
	case LossMailbox:
		return "mailbox"
	case LossQueue:
		return "queue"
	case LossTransport:
		return "transport"
	}
	return "unknown"
}

// LossObserver is implemented by handlers that want to know, in stream
// order, that messages were lost before the next one they receive, so that
// they can resynchronise. Lost is called from the handler's actor, like
// Receive. A loss with no message after it is told too: a mailbox's drops
// once the handler has handled the messages it kept, the socket's once the
// reader has read what the kernel queued. Stats (and cnactor's Callback)
// count the same losses at any time.
type LossObserver interface {
	Lost(n uint64, source LossSource)
}
