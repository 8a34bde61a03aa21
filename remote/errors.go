package remote

import (
	"errors"
	"fmt"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/remote/wire"
)

// Errors of remote callbacks; test them with errors.Is. Remote
// callbacks also fail with the connector's own errors, wrapped:
// cnactor.ErrDuplicate (the subscriber already has a callback for the node
// and id, or the node has a local callback for the id), cnactor.ErrNotFound
// (DelCallback of a callback that is not registered), cnactor.ErrTimeout
// (the node did not answer a subscription or a send in time) and
// cnactor.ErrClosed (the Node, Subscriber or Host is closed).
var (
	// ErrNotExported: the node does not export the callback id.
	ErrNotExported = errors.New("remote: the node does not export this callback id")
	// ErrUnauthenticated: the node refused this subscriber's credentials:
	// mutual TLS without (or with an untrusted) client certificate, or
	// plaintext to a node that requires TLS.
	ErrUnauthenticated = errors.New("remote: the node refused the connection's credentials")
	// ErrTLS: the TLS handshake failed on this side: the node's certificate
	// is not trusted, or the node does not speak TLS.
	ErrTLS = errors.New("remote: TLS handshake failed")
	// ErrUnreachable: no connection could be made to the node.
	ErrUnreachable = errors.New("remote: node unreachable")
	// ErrNodeLost is the Reason of the EventRemoved of callbacks whose
	// node vanished: its connection broke or its heartbeats stopped. They
	// are subscribed again when it comes back.
	ErrNodeLost = errors.New("remote: node lost")
	// ErrSubscriberLost is the reason of a node's EventRemoved (NodeEvent)
	// when the subscriber's connection broke or its acknowledgements and
	// heartbeats stopped.
	ErrSubscriberLost = errors.New("remote: subscriber lost")
	// ErrNodeClosed is the reason when the node shut down in an orderly
	// way; its callbacks are subscribed again when it comes back.
	ErrNodeClosed = errors.New("remote: node closed")
	// ErrSendRefused: the node refused to send on the subscriber's behalf
	// (a read-only export, or an id other than the subscription's).
	ErrSendRefused = errors.New("remote: send through the node refused")
	// ErrSendFailed: the node's connector failed to send.
	ErrSendFailed = errors.New("remote: the node failed to send")
)

// codeError maps a refusal code from the node to the error users test.
func codeError(code wire.Code, reason string) error {
	var base error
	switch code {
	case wire.Code_CODE_NOT_EXPORTED:
		base = ErrNotExported
	case wire.Code_CODE_DUPLICATE:
		base = fmt.Errorf("remote: refused by the node: %w", cnactor.ErrDuplicate)
	case wire.Code_CODE_CLOSED:
		base = ErrNodeClosed
	case wire.Code_CODE_NOT_ALLOWED, wire.Code_CODE_UNKNOWN_SUBSCRIPTION:
		base = ErrSendRefused
	case wire.Code_CODE_SEND_FAILED:
		base = ErrSendFailed
	case wire.Code_CODE_SUBSCRIBER_LOST:
		base = ErrNodeLost
	default:
		base = errors.New("remote: node error")
	}
	if reason == "" {
		return base
	}
	return fmt.Errorf("%w: %s", base, reason)
}
