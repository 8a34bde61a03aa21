package proc

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
)

// taskstatsStruct is a struct taskstats of version v and n bytes.
func taskstatsStruct(v uint16, n int, comm string, ppid, tgid uint32, etimeUS uint64) []byte {
	s := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint16(s[tsVersion:], v)
	if n >= tsBasicEnd {
		copy(s[tsComm:tsComm+tsCommLen], comm)
		ne.PutUint32(s[tsPPID:], ppid)
		ne.PutUint64(s[tsEtime:], etimeUS)
	}
	if n >= tsTGIDEnd {
		ne.PutUint32(s[tsTGID:], tgid)
	}
	return s
}

// taskstatsMessage is a TASKSTATS_CMD_NEW payload as the kernel sends it
// at an exit: padding on some architectures, the task's aggregate, and
// the thread group's when tgid is not 0.
func taskstatsMessage(t *testing.T, pid uint32, stats []byte, tgid uint32) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(6, nil) // TASKSTATS_TYPE_NULL
	ae.Nested(taskstatsTypeAggrPID, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(taskstatsTypePID, pid)
		nae.Bytes(taskstatsTypeStats, stats)
		return nil
	})
	if tgid != 0 {
		ae.Nested(5, func(nae *netlink.AttributeEncoder) error { // TASKSTATS_TYPE_AGGR_TGID
			nae.Uint32(2, tgid)
			nae.Bytes(taskstatsTypeStats, taskstatsStruct(16, 400, "group", 0, 0, 0))
			return nil
		})
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{taskstatsCmdNew, 1, 0, 0}, b...)
}

func TestDecodeTaskstats(t *testing.T) {
	type got struct {
		pid uint32
		r   exitRecord
	}
	decode := func(b []byte) ([]got, error) {
		var all []got
		err := decodeTaskstats(b, func(pid uint32, r exitRecord) { all = append(all, got{pid, r}) })
		return all, err
	}
	// Version 16: all fields; the thread group's aggregate is ignored.
	all, err := decode(taskstatsMessage(t, 42, taskstatsStruct(16, 500, "ls", 7, 42, 1500), 42))
	if err != nil || len(all) != 1 || all[0].pid != 42 ||
		all[0].r != (exitRecord{comm: "ls", ppid: 7, tgid: 42, etimeNS: 1500000}) {
		t.Fatalf("v16: %+v %v", all, err)
	}
	// Version 8 has no tgid, even when longer (never read past the version).
	all, _ = decode(taskstatsMessage(t, 43, taskstatsStruct(8, 400, "sh", 7, 99, 1), 0))
	if len(all) != 1 || all[0].r.tgid != 0 || all[0].r.comm != "sh" {
		t.Fatalf("v8: %+v", all)
	}
	// A 15-byte comm fills its field up to the NUL; a 32-byte one is bounded.
	all, _ = decode(taskstatsMessage(t, 44, taskstatsStruct(16, 400, "abcdefghijklmnopqrstuvwxyz0123456789", 1, 44, 1), 0))
	if len(all) != 1 || all[0].r.comm != "abcdefghijklmnopqrstuvwxyz012345" {
		t.Fatalf("long comm: %+v", all)
	}
	// Version 1 (delay accounting only), short structs, no comm: nothing.
	for _, s := range [][]byte{
		taskstatsStruct(1, 400, "x", 1, 1, 1),
		taskstatsStruct(16, tsBasicEnd-1, "x", 1, 1, 1),
		taskstatsStruct(16, 400, "", 1, 1, 1),
		nil,
	} {
		if all, err := decode(taskstatsMessage(t, 45, s, 0)); len(all) != 0 || err != nil {
			t.Fatalf("%d bytes: %+v %v", len(s), all, err)
		}
	}
	// Other commands, truncated and malformed messages.
	if all, err := decode([]byte{taskstatsCmdGet, 1, 0, 0, 8, 0, 4, 0}); len(all) != 0 || err != nil {
		t.Fatalf("get: %+v %v", all, err)
	}
	if _, err := decode([]byte{taskstatsCmdNew, 1}); err == nil {
		t.Fatal("short header accepted")
	}
	bad := taskstatsMessage(t, 46, taskstatsStruct(16, 400, "ls", 1, 46, 1), 0)
	if all, _ := decode(bad[:len(bad)-100]); len(all) != 0 {
		t.Fatalf("truncated: %+v", all)
	}
}

func FuzzDecodeTaskstats(f *testing.F) {
	f.Add([]byte{taskstatsCmdNew, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeTaskstats(b, func(uint32, exitRecord) {})
	})
}

func TestExitNamesTake(t *testing.T) {
	x := newExitNames()
	x.add(10, exitRecord{comm: "ls", tgid: 10, etimeNS: 5e6, recvNS: 2e9})
	// Received before the exec: an earlier process's.
	if _, ok := x.take(10, 1e6, 3e9); ok {
		t.Fatal("record older than the exec taken")
	}
	// Ran shorter than the process lived before its exec: another's.
	if _, ok := x.take(10, 30e6, 1e9); ok {
		t.Fatal("short-lived record taken")
	}
	if r, ok := x.take(10, 1e6, 1e9); !ok || r.comm != "ls" {
		t.Fatalf("take: %+v %v", r, ok)
	}
	if _, ok := x.take(10, 0, 0); ok {
		t.Fatal("a record taken twice")
	}
	// A thread's record (another tgid) does not name a process.
	x.add(11, exitRecord{comm: "worker", tgid: 9, recvNS: 2e9})
	if _, ok := x.take(11, 0, 0); ok {
		t.Fatal("thread record taken")
	}
}

// A record arriving while take waits ends the wait; a missing one costs at
// most exitWait, and at most exitBudget a second.
func TestExitNamesWait(t *testing.T) {
	x := newExitNames()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond)
		x.add(20, exitRecord{comm: "sh", recvNS: 2e9})
	}()
	if r, ok := x.take(20, 0, 1e9); !ok || r.comm != "sh" {
		t.Fatalf("wait: %+v %v", r, ok)
	}
	wg.Wait()
	start := time.Now()
	if _, ok := x.take(21, 0, 0); ok {
		t.Fatal("no record, taken")
	}
	if d := time.Since(start); d < exitWait || d > exitWait+time.Second {
		t.Fatalf("waited %v, want about %v", d, exitWait)
	}
	// The budget: the rest of this second's waits end sooner, then none.
	start = time.Now()
	for range 10 {
		x.take(22, 0, 0)
	}
	if d := time.Since(start); d > exitBudget+time.Second {
		t.Fatalf("10 misses waited %v, budget %v", d, exitBudget)
	}
	if x.timeouts == 0 {
		t.Fatal("timeouts not counted")
	}
	// Closing ends waits at once.
	x.close()
	start = time.Now()
	if _, ok := x.take(23, 0, 0); ok || time.Since(start) > exitWait/2 {
		t.Fatal("take after close waited")
	}
}

// Memory is bounded: the oldest records go first.
func TestExitNamesBounded(t *testing.T) {
	x := newExitNames()
	for pid := range uint32(exitRecords + 100) {
		x.add(pid+1, exitRecord{comm: "p", recvNS: 1})
	}
	if n := len(x.recs); n != exitRecords {
		t.Fatalf("%d records kept, bound %d", n, exitRecords)
	}
	x.close()
	if _, ok := x.take(1, 0, 0); ok {
		t.Fatal("the oldest record was kept")
	}
	if _, ok := x.take(exitRecords+100, 0, 0); !ok {
		t.Fatal("the newest record was dropped")
	}
	// A pid's newer record replaces its older one; evicting the older
	// slot keeps the newer.
	y := newExitNames()
	y.add(5, exitRecord{comm: "old", recvNS: 1})
	y.add(5, exitRecord{comm: "new", recvNS: 1})
	for pid := range uint32(exitRecords - 1) {
		y.add(pid+100, exitRecord{comm: "p", recvNS: 1})
	}
	y.close()
	if r, ok := y.take(5, 0, 0); !ok || r.comm != "new" {
		t.Fatalf("newer record: %+v %v", r, ok)
	}
}

// fakeExits is an exitSource with fixed records.
type fakeExits map[uint32]exitRecord

func (f fakeExits) take(pid uint32, _, _ uint64) (exitRecord, bool) {
	r, ok := f[pid]
	return r, ok
}

// An exec whose process is gone takes its name from the exit record, not
// Stale; without one it goes Stale as before.
func TestTableExecNamedFromExit(t *testing.T) {
	f := newFakeProc(t)
	f.add(100, 1, "bash", 50, "/bin/bash")
	tab := NewTable(withRoot(f.root), withExits(fakeExits{200: {comm: "ls"}, 300: {comm: "true", ppid: 100}}))
	tab.Seed()
	for _, pid := range []uint32{200, 201} {
		tab.Update(&Fork{Header: Header{What: WhatFork, TimestampNS: 1e9}, ParentPID: 100, ParentTGID: 100, ChildPID: pid, ChildTGID: pid})
	}
	exec := &Exec{Header: Header{What: WhatExec, TimestampNS: 2e9}, PID: 200, TGID: 200}
	tab.Update(exec)
	if p := exec.Process; p == nil || p.Comm != "ls" || p.Stale || p.Cmdline != "" || p.PPID != 100 || p.StartNS != 1e9 {
		t.Fatalf("named from exit: %+v", p)
	}
	exit := &Exit{Header: Header{What: WhatExit, TimestampNS: 3e9}, PID: 200, TGID: 200}
	tab.Update(exit)
	if p := exit.Process; p == nil || p.Comm != "ls" || p.Stale || Name(p, NameCmdline) != "ls" {
		t.Fatalf("exit: %+v", p)
	}
	stale := &Exec{Header: Header{What: WhatExec, TimestampNS: 2e9}, PID: 201, TGID: 201}
	tab.Update(stale)
	if p := stale.Process; p == nil || p.Comm != "bash" || !p.Stale {
		t.Fatalf("no record: %+v", p)
	}
	// Never seen before its exec: the record gives the parent too.
	unseen := &Exec{Header: Header{What: WhatExec, TimestampNS: 2e9}, PID: 300, TGID: 300}
	tab.Update(unseen)
	if p := unseen.Process; p == nil || p.Comm != "true" || p.PPID != 100 || p.Stale {
		t.Fatalf("unseen: %+v", p)
	}
	if s := tab.Stats(); s.Misses != 3 || s.ExitNamed != 2 || s.Stale != 1 {
		t.Fatalf("stats %+v", s)
	}
}
