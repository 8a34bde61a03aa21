package proc_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/cnactor/cnactor/proc"
)

// FuzzDecode checks the proc_event decoder against the layout restated
// here (what, cpu, timestamp, then 32-bit fields), not against itself: a
// payload too short is ErrShortEvent, an unknown kind an error, and every
// event decoded carries the header's bytes, its subject's pid from the
// first field, a signed exit_signal, a comm that is a NUL-free prefix of
// its 16 bytes; the text and JSON forms never fail to render.
func FuzzDecode(f *testing.F) {
	for _, what := range []proc.What{proc.WhatNone, proc.WhatFork, proc.WhatExec, proc.WhatUID, proc.WhatGID,
		proc.WhatSID, proc.WhatPtrace, proc.WhatComm, proc.WhatCoredump, proc.WhatExit, 0x1234} {
		b := binary.NativeEndian.AppendUint32(nil, uint32(what))
		b = binary.NativeEndian.AppendUint32(b, 1)
		b = binary.NativeEndian.AppendUint64(b, 123456789)
		for i := range 6 {
			b = binary.NativeEndian.AppendUint32(b, uint32(100+i))
		}
		f.Add(b, uint32(7), uint32(8))
	}
	exit := make([]byte, proc.EventLen)
	binary.NativeEndian.PutUint32(exit, uint32(proc.WhatExit))
	binary.NativeEndian.PutUint32(exit[28:], 0xffffffff) // a thread's exit_signal, -1
	f.Add(exit, uint32(1), uint32(0))
	f.Add([]byte{1, 2, 3}, uint32(0), uint32(0))
	clock := proc.NewBootClock()
	f.Fuzz(func(t *testing.T, data []byte, seq, ack uint32) {
		ev, err := proc.Decode(data, seq, ack)
		if len(data) < proc.EventLen {
			if !errors.Is(err, proc.ErrShortEvent) || ev != nil {
				t.Fatalf("%d bytes: %v, %v", len(data), ev, err)
			}
			return
		}
		if err != nil {
			if ev != nil {
				t.Fatalf("an event and an error: %v", err)
			}
			return
		}
		u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(data[off:]) }
		h := ev.Head()
		if uint32(h.What) != u32(0) || h.CPU != u32(4) || h.TimestampNS != binary.NativeEndian.Uint64(data[8:]) || h.Seq != seq {
			t.Fatalf("header %+v from % x", h, data[:16])
		}
		switch e := ev.(type) {
		case *proc.Ack:
			if e.Ack != ack || e.Err != u32(16) {
				t.Fatalf("ack %+v", e)
			}
		case *proc.Fork:
			if e.ParentPID != u32(16) || e.ChildTGID != u32(28) {
				t.Fatalf("fork %+v", e)
			}
		case *proc.Exit:
			if e.PID != u32(16) || e.ExitCode != u32(24) || e.ExitSignal != int32(u32(28)) || e.ParentTGID != u32(36) {
				t.Fatalf("exit %+v", e)
			}
			if s := e.Signal(); s != 0 && e.Code() != 0 || s == 0 && e.Code() != int(e.ExitCode>>8&0xff) {
				t.Fatalf("exit status %#x: code %d, signal %d", e.ExitCode, e.Code(), s)
			}
		case *proc.Comm:
			raw := data[24:40]
			if name := []byte(e.Comm); bytes.IndexByte(name, 0) >= 0 || !bytes.HasPrefix(raw, name) {
				t.Fatalf("comm %q from % x", e.Comm, raw)
			}
		default:
			if proc.PID(ev) != u32(16) {
				t.Fatalf("%T pid %d, first field %d", ev, proc.PID(ev), u32(16))
			}
		}
		if !json.Valid(proc.AppendJSON(nil, ev)) {
			t.Fatalf("invalid JSON for %T: %s", ev, proc.AppendJSON(nil, ev))
		}
		if len(proc.AppendText(nil, ev, clock)) == 0 {
			t.Fatalf("no text for %T", ev)
		}
	})
}
