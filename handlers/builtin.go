package handlers

import (
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cnactor/cnactor/transport"
)

// Echo replies to every message with its own payload.
func Echo() Handler {
	return HandlerFunc(func(ctx Context, m *transport.Message) error { return ctx.Reply(m.Data) })
}

// Sink accepts every message and does nothing with it. It is a
// BatchHandler: a run of messages costs it one call.
func Sink() Handler { return sink{} }

type sink struct{}

func (sink) Receive(Context, *transport.Message) error { return nil }
func (sink) ReceiveBatch(_ CallbackContext, msgs []transport.Received) (int, error) {
	return len(msgs), nil
}

// Counter counts the messages and bytes it receives.
type Counter struct {
	messages atomic.Uint64
	bytes    atomic.Uint64
}

// Receive counts m.
func (c *Counter) Receive(_ Context, m *transport.Message) error {
	c.messages.Add(1)
	c.bytes.Add(uint64(len(m.Data)))
	return nil
}

// ReceiveBatch counts a run of messages with one update of each counter.
func (c *Counter) ReceiveBatch(_ CallbackContext, msgs []transport.Received) (int, error) {
	var bytes uint64
	for i := range msgs {
		bytes += uint64(len(msgs[i].Data))
	}
	c.messages.Add(uint64(len(msgs)))
	c.bytes.Add(bytes)
	return len(msgs), nil
}

// Messages is the number of messages received.
func (c *Counter) Messages() uint64 { return c.messages.Load() }

// Bytes is the number of payload bytes received.
func (c *Counter) Bytes() uint64 { return c.bytes.Load() }

// Stats reports the counters for listings.
func (c *Counter) Stats() map[string]uint64 {
	return map[string]uint64{"count": c.Messages(), "bytes": c.Bytes()}
}

// Log prints each message on w, one line each, in the format of
// `cnctl listen` (AppendText, or AppendJSON when asJSON). Writes from
// several handlers sharing w are serialised.
func Log(w io.Writer, asJSON bool) Handler {
	var mu sync.Mutex
	var line []byte
	return HandlerFunc(func(ctx Context, m *transport.Message) error {
		r := transport.Received{Message: *m, From: ctx.From(), Group: ctx.Group(), Creds: ctx.Creds()}
		mu.Lock()
		defer mu.Unlock()
		if asJSON {
			line = AppendJSON(line[:0], &r)
		} else {
			line = AppendText(line[:0], &r)
		}
		_, err := w.Write(append(line, '\n'))
		return err
	})
}

// StatsReporter is implemented by handlers with counters of their own, which
// listings show beside the runtime's.
type StatsReporter interface {
	Stats() map[string]uint64
}

// FormatStats renders counters as sorted "key=value" pairs.
func FormatStats(s map[string]uint64) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += " "
		}
		out += k + "=" + strconv.FormatUint(s[k], 10)
	}
	return out
}

// Flaky panics on messages whose payload starts with "panic" and echoes the
// others, to watch supervision at work.
func Flaky() Handler {
	return HandlerFunc(func(ctx Context, m *transport.Message) error {
		if len(m.Data) >= 5 && string(m.Data[:5]) == "panic" {
			panic("flaky: asked to panic by seq " + strconv.FormatUint(uint64(m.Seq), 10))
		}
		return ctx.Reply(m.Data)
	})
}
