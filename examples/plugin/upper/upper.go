// Package upper is a cnactor handler plugin: it answers every message with
// its payload upper-cased (same id and seq, ack + 1, back to the sender).
// Importing it, even blank, registers it under the name "upper", as
// database/sql drivers register themselves:
//
//	import _ "github.com/cnactor/cnactor/examples/plugin/upper"
//
// and a configuration file can then use it:
//
//	callbacks:
//	  - id: "100:1"
//	    handler: upper
//	    settings: {prefix: "> ", max_len: 1024}
package upper

import (
	"bytes"
	"errors"
	"sync/atomic"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

func init() {
	handlers.Register("upper", New)
}

// Settings are the handler's settings.
type Settings struct {
	// Prefix is put before every reply.
	Prefix string `yaml:"prefix"`
	// MaxLen refuses (fails) messages longer than this; 0 accepts all.
	MaxLen int `yaml:"max_len"`
}

// ErrTooLong fails a message longer than max_len.
var ErrTooLong = errors.New("upper: message too long")

// New is the factory: it checks the settings and builds the handler.
func New(s handlers.Settings) (handlers.Handler, error) {
	var st Settings
	if err := s.Decode(&st); err != nil {
		return nil, err
	}
	if st.MaxLen < 0 || st.MaxLen > transport.MaxPayload {
		return nil, s.Errorf("max_len", "must be between 0 and %d, got %d", transport.MaxPayload, st.MaxLen)
	}
	if len(st.Prefix)+st.MaxLen > transport.MaxPayload {
		return nil, s.Errorf("prefix", "too long for replies of max_len bytes")
	}
	return &handler{prefix: []byte(st.Prefix), maxLen: st.MaxLen}, nil
}

type handler struct {
	prefix  []byte
	maxLen  int
	buf     []byte // reused: a handler runs one message at a time
	replied atomic.Uint64
}

// Receive replies with the prefix and the payload upper-cased.
func (h *handler) Receive(ctx handlers.Context, m *transport.Message) error {
	if h.maxLen > 0 && len(m.Data) > h.maxLen {
		return ErrTooLong
	}
	h.buf = append(h.buf[:0], h.prefix...)
	h.buf = append(h.buf, bytes.ToUpper(m.Data)...)
	if err := ctx.Reply(h.buf); err != nil {
		return err
	}
	h.replied.Add(1)
	return nil
}

// Stats shows the handler's own counter in listings.
func (h *handler) Stats() map[string]uint64 {
	return map[string]uint64{"replied": h.replied.Load()}
}
