package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cnactor/cnactor/transport"
	"go.uber.org/zap"
)

// fakeContext records replies and sends.
type fakeContext struct {
	context.Context
	from, group uint32
	replies     [][]byte
	sent        []transport.Message
}

func (c *fakeContext) Logger() *zap.Logger { return zap.NewNop() }
func (c *fakeContext) Callback() (transport.CbID, string) {
	return transport.CbID{Idx: 7, Val: 1}, "test"
}
func (c *fakeContext) From() uint32  { return c.from }
func (c *fakeContext) Group() uint32 { return c.group }
func (c *fakeContext) Creds() transport.Credentials {
	return transport.Credentials{PID: 1, UID: 2, GID: 3}
}
func (c *fakeContext) Reply(data []byte) error {
	c.replies = append(c.replies, bytes.Clone(data))
	return nil
}
func (c *fakeContext) Send(_ transport.Addr, m *transport.Message) error {
	c.sent = append(c.sent, *m)
	return nil
}

func newFake() *fakeContext { return &fakeContext{Context: context.Background(), from: 42, group: 7} }

func TestReplyTo(t *testing.T) {
	m := transport.Message{ID: transport.CbID{Idx: 3, Val: 4}, Seq: 10, Ack: 99, Flags: 5}
	r := ReplyTo(&m, []byte("x"))
	if r.ID != m.ID || r.Seq != 10 || r.Ack != 100 || string(r.Data) != "x" || r.Flags != 0 {
		t.Fatalf("ReplyTo = %+v", r)
	}
	m.Ack = ^uint32(0)
	if ReplyTo(&m, nil).Ack != 0 {
		t.Fatal("ack + 1 does not wrap")
	}
}

func TestBuiltins(t *testing.T) {
	msg := &transport.Message{ID: transport.CbID{Idx: 7, Val: 1}, Seq: 1, Data: []byte("hello")}
	ctx := newFake()
	if err := Echo().Receive(ctx, msg); err != nil || len(ctx.replies) != 1 || string(ctx.replies[0]) != "hello" {
		t.Fatalf("echo: %v %q", err, ctx.replies)
	}
	if err := Sink().Receive(ctx, msg); err != nil {
		t.Fatal(err)
	}
	var c Counter
	for i := 0; i < 3; i++ {
		c.Receive(ctx, msg)
	}
	if c.Messages() != 3 || c.Bytes() != 15 || c.Stats()["count"] != 3 {
		t.Fatalf("counter: %d messages, %d bytes", c.Messages(), c.Bytes())
	}
	ctx = newFake()
	if err := Flaky().Receive(ctx, msg); err != nil || len(ctx.replies) != 1 {
		t.Fatalf("flaky echo: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("flaky did not panic on a panic message")
			}
		}()
		Flaky().Receive(ctx, &transport.Message{Data: []byte("panic now")})
	}()
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	msg := &transport.Message{ID: transport.CbID{Idx: 7, Val: 1}, Seq: 2, Ack: 3, Data: []byte("hi")}
	if err := Log(&buf, false).Receive(newFake(), msg); err != nil {
		t.Fatal(err)
	}
	if want := "from=42 group=7 id=7:1 seq=2 ack=3 flags=0 len=2 data=6869 text=\"hi\"\n"; buf.String() != want {
		t.Fatalf("text log %q, want %q", buf.String(), want)
	}
	buf.Reset()
	if err := Log(&buf, true).Receive(newFake(), msg); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	if got["from"] != 42.0 || got["data"] != "6869" || got["len"] != 2.0 {
		t.Fatalf("json log = %v", got)
	}
}

func TestAppendTextNonPrintable(t *testing.T) {
	r := transport.Received{Message: transport.Message{Data: []byte{0, 1, 0xff}}}
	if s := string(AppendText(nil, &r)); strings.Contains(s, "text=") || !strings.Contains(s, "data=0001ff") {
		t.Fatalf("binary payload formatted as %q", s)
	}
}

func TestFormatStats(t *testing.T) {
	if got := FormatStats(map[string]uint64{"b": 2, "a": 1}); got != "a=1 b=2" {
		t.Fatalf("FormatStats = %q", got)
	}
}

func TestPanicError(t *testing.T) {
	base := errors.New("base")
	p := &PanicError{Value: base}
	if !errors.Is(p, base) || !strings.Contains(p.Error(), "base") {
		t.Fatalf("PanicError %v does not unwrap", p)
	}
	if (&PanicError{Value: "text"}).Unwrap() != nil {
		t.Fatal("non-error panic value unwrapped")
	}
}
