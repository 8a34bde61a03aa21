package proc

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/transport"
)

// Payloads of events captured on the development kernel (see
// transport/codec_test.go for the whole datagrams).
const (
	capturedAck  = "000000000100000050e3788934000000000000000000000000000000000000000000000000000000"
	capturedFork = "0100000001000000c5ee7c893400000099110000991100009f1100009f1100000000000000000000"
)

// event builds a payload: what, cpu, timestamp and the union's words.
func event(what What, cpu uint32, ts uint64, words ...uint32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(what))
	b = binary.NativeEndian.AppendUint32(b, cpu)
	b = binary.NativeEndian.AppendUint64(b, ts)
	for _, w := range words {
		b = binary.NativeEndian.AppendUint32(b, w)
	}
	for len(b) < EventLen {
		b = append(b, 0)
	}
	return b
}

func TestDecode(t *testing.T) {
	hx := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	comm := event(WhatComm, 0, 5, 10, 11)
	copy(comm[24:], "worker\x00")
	tests := []struct {
		name string
		data []byte
		want Event
	}{
		{"captured ack", hx(capturedAck), &Ack{Header: Header{What: WhatNone, CPU: 1, TimestampNS: 0x348978e350, Seq: 7}, Ack: 0x1235}},
		{"captured fork", hx(capturedFork), &Fork{Header: Header{What: WhatFork, CPU: 1, TimestampNS: 0x34897ceec5, Seq: 7}, ParentPID: 4505, ParentTGID: 4505, ChildPID: 4511, ChildTGID: 4511}},
		{"exec", event(WhatExec, 1, 2, 100, 100), &Exec{Header: Header{What: WhatExec, CPU: 1, TimestampNS: 2, Seq: 7}, PID: 100, TGID: 100}},
		{"uid", event(WhatUID, 0, 3, 100, 100, 1000, 0), &UID{Header: Header{What: WhatUID, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 100, RUID: 1000, EUID: 0}},
		{"gid", event(WhatGID, 0, 3, 100, 100, 5, 6), &GID{Header: Header{What: WhatGID, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 100, RGID: 5, EGID: 6}},
		{"sid", event(WhatSID, 0, 3, 100, 100), &SID{Header: Header{What: WhatSID, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 100}},
		{"ptrace", event(WhatPtrace, 0, 3, 100, 100, 200, 200), &Ptrace{Header: Header{What: WhatPtrace, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 100, TracerPID: 200, TracerTGID: 200}},
		{"comm", comm, &Comm{Header: Header{What: WhatComm, TimestampNS: 5, Seq: 7}, PID: 10, TGID: 11, Comm: "worker"}},
		{"coredump", event(WhatCoredump, 0, 3, 100, 100, 1, 1), &Coredump{Header: Header{What: WhatCoredump, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 100, ParentPID: 1, ParentTGID: 1}},
		{"exit", event(WhatExit, 0, 3, 100, 101, 3<<8, 17, 1, 1), &Exit{Header: Header{What: WhatExit, TimestampNS: 3, Seq: 7}, PID: 100, TGID: 101, ExitCode: 3 << 8, ExitSignal: 17, ParentPID: 1, ParentTGID: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.data, 7, 0x1235)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, err := Decode(make([]byte, 39), 0, 0); err != ErrShortEvent {
		t.Errorf("short payload: %v", err)
	}
	if _, err := Decode(event(0x8, 0, 0), 0, 0); err == nil {
		t.Error("unknown kind decoded")
	}
}

func TestForkIsThread(t *testing.T) {
	if (&Fork{ChildPID: 5, ChildTGID: 5}).IsThread() || !(&Fork{ChildPID: 6, ChildTGID: 5}).IsThread() {
		t.Fatal("IsThread wrong")
	}
}

func TestParseWhat(t *testing.T) {
	tests := []struct {
		in      string
		want    What
		wantErr bool
	}{
		{"fork", WhatFork, false},
		{"exec,exit", WhatExec | WhatExit, false},
		{" uid , gid ", WhatUID | WhatGID, false},
		{"all", WhatAll, false},
		{"nonzero_exit", WhatNonzeroExit, false},
		{"core,ptrce,clone,nonzeroexit", WhatCoredump | WhatPtrace | WhatFork | WhatNonzeroExit, false},
		{"ack", 0, true},
		{"forks", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseWhat(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseWhat(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestWanted(t *testing.T) {
	tests := []struct {
		mask What
		ev   Event
		want bool
	}{
		{WhatExec, &Exec{Header: Header{What: WhatExec}}, true},
		{WhatExec, &Fork{Header: Header{What: WhatFork}}, false},
		{WhatExec, &Ack{}, true},
		{WhatNonzeroExit, &Exit{Header: Header{What: WhatExit}, ExitCode: 256}, true},
		{WhatNonzeroExit, &Exit{Header: Header{What: WhatExit}, ExitCode: 0}, false},
		{WhatNonzeroExit | WhatExit, &Exit{Header: Header{What: WhatExit}}, true},
	}
	for _, tt := range tests {
		if got := wanted(tt.mask, tt.ev); got != tt.want {
			t.Errorf("wanted(%v, %T %+v) = %v", tt.mask, tt.ev, tt.ev, got)
		}
	}
}

// TestLossAccounting feeds the handler a stream with sequence gaps and
// loss notices and checks that every lost event is reported exactly once,
// in place.
func TestLossAccounting(t *testing.T) {
	m := &Monitor{mode: ModeAll, mask: WhatAll}
	h := newHandler(m, config{buffer: 100, table: []TableOption{WithTableLimit(10)}})
	m.h = h
	feed := func(cpu, seq uint32) {
		msg := transport.Message{Seq: seq, Data: event(WhatExec, cpu, 1, 1, 1)}
		if err := h.Receive(nil, &msg); err != nil {
			t.Fatal(err)
		}
	}
	feed(0, 10)
	feed(1, 50)
	feed(0, 11)
	feed(0, 14)                     // gap of 2 on cpu 0: reported by sequence
	h.Lost(2, handlers.LossSocket)  // the drop counter explains it afterwards: not again
	h.Lost(3, handlers.LossSocket)  // 3 more reported by the socket first
	feed(1, 52)                     // gap of 1: explained by the socket's 3
	feed(0, 17)                     // gap of 2: explained by the rest of them
	feed(0, 19)                     // gap of 1, unexplained: reported
	h.Lost(4, handlers.LossMailbox) // the mailbox lost 4
	feed(1, 57)                     // gap of 4: explained
	close(h.out)
	var got []string
	var total uint64
	for ev := range h.out {
		if l, ok := ev.(*Lost); ok {
			got = append(got, l.Source)
			total += l.Count
		}
	}
	want := []string{"sequence", "socket", "sequence", "mailbox", "sequence"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loss events %v, want %v", got, want)
	}
	// 2 (seq) + 3 (socket) + 1 (seq) + 4 (mailbox); the gaps explained
	// by the socket and mailbox counts are not counted twice.
	if total != 10 || h.lost.Load() != 10 {
		t.Errorf("lost total %d (stats %d), want 10", total, h.lost.Load())
	}
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		ev   Event
		keys []string
	}{
		{&Fork{Header: Header{What: WhatFork}}, []string{"event", "cpu", "timestamp_ns", "parent_pid", "parent_tgid", "child_pid", "child_tgid"}},
		{&Exec{Header: Header{What: WhatExec}}, []string{"event", "cpu", "timestamp_ns", "pid", "tgid"}},
		{&Exit{Header: Header{What: WhatExit}}, []string{"event", "cpu", "timestamp_ns", "pid", "tgid", "exit_code", "exit_signal", "parent_pid", "parent_tgid", "code", "core_dumped"}},
		{&Exit{Header: Header{What: WhatExit}, ExitCode: 9}, []string{"event", "cpu", "timestamp_ns", "pid", "tgid", "exit_code", "exit_signal", "parent_pid", "parent_tgid", "signal", "core_dumped"}},
		{&UID{Header: Header{What: WhatUID}}, []string{"event", "cpu", "timestamp_ns", "pid", "tgid", "ruid", "euid"}},
		{&Comm{Header: Header{What: WhatComm}, Comm: "a\"b"}, []string{"event", "cpu", "timestamp_ns", "pid", "tgid", "comm"}},
		{&Lost{Count: 3, Source: "socket"}, []string{"event", "cpu", "timestamp_ns", "count", "source"}},
	}
	for _, tt := range tests {
		line := AppendJSON(nil, tt.ev)
		dec := json.NewDecoder(bytesReader(line))
		tok, err := dec.Token()
		if err != nil || tok != json.Delim('{') {
			t.Fatalf("%s: %v", line, err)
		}
		var keys []string
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
		if !reflect.DeepEqual(keys, tt.keys) {
			t.Errorf("%s: keys %v, want %v", line, keys, tt.keys)
		}
	}
}

// TestUndecodableIsNotLost: an event of a kind this package does not know
// was received all the same; it must not show as a sequence gap.
func TestUndecodableIsNotLost(t *testing.T) {
	m := &Monitor{mode: ModeAll, mask: WhatAll}
	h := newHandler(m, config{buffer: 10, table: []TableOption{WithTableLimit(10)}})
	m.h = h
	for _, e := range []struct {
		seq  uint32
		what What
	}{{10, WhatExec}, {11, 0x8}, {12, WhatExec}} {
		msg := transport.Message{Seq: e.seq, Data: event(e.what, 0, 1, 1, 1)}
		err := h.Receive(nil, &msg)
		if (err != nil) != (e.what == 0x8) {
			t.Fatalf("seq %d: %v", e.seq, err)
		}
	}
	if h.lost.Load() != 0 || h.events.Load() != 2 {
		t.Fatalf("lost %d, events %d; want 0 and 2", h.lost.Load(), h.events.Load())
	}
}
