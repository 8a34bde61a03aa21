// Package handlers defines what a connector callback is: a Handler that
// receives one message at a time with a Context telling where it came from
// and how to answer. It also holds the built-in handlers (echo, log, count,
// sink, flaky) and the registry that finds handlers by name: Register, in
// the style of database/sql drivers, Lookup, Names and New.
//
// Data flows in from the runtime (package actors): the socket-reader actor
// routes each message to the handler actor of its callback id, which calls
// Receive with a Context bound to that message. Out of a handler, data flows
// through Context.Reply (the seed's answer: same id and seq, ack + 1, back to
// the sender's port) or Context.Send.
//
// Ownership: the *transport.Message and its Data are lent to Receive and are
// recycled as soon as it returns. A handler that keeps bytes beyond the call
// must copy them (bytes.Clone). The Context is also only valid during the call.
package handlers

import (
	"context"

	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// Handler processes the messages of one callback id, one at a time, in
// arrival order. A returned error or a panic is a failure: the message is
// counted as failed and the supervisor of the callback decides what happens
// next.
//
// Receive may run on the connector's receive loop (the runtime does so when
// several messages are waiting, which saves a goroutine hand-off per run) or
// on the callback's own goroutine. It may block, for instance on a Request
// to a peer: a call that keeps the loop for 5 ms makes the loop
// move to another goroutine, and that callback then runs on its own for a
// second (ReaderStats.LoopMoves counts the moves).
type Handler interface {
	Receive(ctx Context, m *transport.Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx Context, m *transport.Message) error

// Receive calls f.
func (f HandlerFunc) Receive(ctx Context, m *transport.Message) error { return f(ctx, m) }

// BatchHandler is a Handler that can also take the messages of one wake-up
// at once: a handler that implements it gets each run of queued messages
// (up to a few hundred, in arrival order) in one call instead of one
// Receive per message, which saves a call and the per-message bookkeeping
// where throughput matters. Loss notices and supervision work as for
// Receive; the built-in count and sink handlers are BatchHandlers.
//
// ReceiveBatch returns how many messages it handled. With a nil error that
// is all of them. With an error, msgs[:n] count as handled, msgs[n] as
// failed (as if Receive had returned the error), and msgs[n+1:] are handed
// to a later call, after the supervisor's decision. A panic fails every
// message of msgs. The messages and their Data are lent for the call only.
type BatchHandler interface {
	Handler
	ReceiveBatch(ctx CallbackContext, msgs []transport.Received) (n int, err error)
}

// CallbackContext is what a handler knows outside of any one message: its
// callback, the connector's logger and cancellation, and how to send. A
// BatchHandler answers a message m with
// ctx.Send(transport.Addr{Port: m.From}, &reply) where reply is
// handlers.ReplyTo(&m.Message, data).
type CallbackContext interface {
	// Context carries cancellation: it is done when the connector closes.
	context.Context
	// Logger is the connector's logger with the callback's id and name.
	Logger() *zap.Logger
	// Callback is the id and name the handler was registered with.
	Callback() (transport.CbID, string)
	// Send sends m from the connector's socket to a port (0: the kernel)
	// or a multicast group. A zero m.Seq goes out as the connector's next
	// sequence number; m itself is not modified.
	Send(to transport.Addr, m *transport.Message) error
}

// Context is what a handler knows about the message it is handling and how
// it can answer. It is valid only during Receive.
type Context interface {
	CallbackContext
	// From is the sender's port id (0 = the kernel), taken from the socket
	// address, never from the message header.
	From() uint32
	// Group is the multicast group the message arrived on, 0 for unicast.
	Group() uint32
	// Creds are the sender's credentials (zero for the kernel).
	Creds() transport.Credentials
	// Reply answers the message as the connector protocol wants: same id,
	// same seq, ack + 1, sent to the sender's port (the kernel if From is 0).
	Reply(data []byte) error
}

// ReplyTo builds the reply the connector protocol expects to m: same id,
// same seq, ack + 1.
func ReplyTo(m *transport.Message, data []byte) transport.Message {
	return transport.Message{ID: m.ID, Seq: m.Seq, Ack: m.Ack + 1, Data: data}
}
