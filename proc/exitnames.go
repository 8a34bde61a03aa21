package proc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
)

// exitRecord is what the kernel's taskstats said of a task at its exit.
type exitRecord struct {
	comm    string // the comm at exit: after any exec
	ppid    uint32
	tgid    uint32 // 0 before taskstats version 12
	etimeNS uint64 // how long the task ran, µs precision
	recvNS  uint64 // when it was received, on the events' clock
	seq     uint64 // arrival order, for eviction
}

// exitSource gives the names of exited tasks to a Table (taskstats).
type exitSource interface {
	// take returns and forgets the exit record of pid for a process that
	// ran for at least lived ns and was alive at ns (the events' clock,
	// CLOCK_MONOTONIC; 0: unknown), waiting a bounded time for it.
	take(pid uint32, lived, at uint64) (exitRecord, bool)
}

// Bounds of the exit records.
const (
	// exitRecords is how many recent exit records are kept: each task's
	// exit sends one, and the table needs one only for a process gone
	// before its exec was read, within moments of its exit.
	exitRecords = 16384
	// exitWait bounds the wait for one record. The kernel sends it before
	// the task becomes a zombie, so before /proc can miss the process: the
	// wait only lets the reader of the taskstats socket catch up, and runs
	// out only when the record was lost (the socket overflowed).
	exitWait = 50 * time.Millisecond
	// exitBudget bounds the waits that ran out (lost records) per second,
	// so that losses never stall the stream for long: beyond it, misses go
	// Stale at once. Waits that end with their record cost only the
	// reader's delay and are not counted.
	exitBudget = 100 * time.Millisecond
	// exitSlack allows for a start time read from /proc (10 ms steps)
	// when checking that a record's task lived long enough.
	exitSlack = uint64(20 * time.Millisecond)
)

// exitNames holds the recent exit records by pid, bounded, for a Table's
// execs that found their process gone. Safe for concurrent use: a reader
// of the taskstats socket adds, the table takes.
type exitNames struct {
	mu      sync.Mutex
	recs    map[uint32]exitRecord
	ring    [exitRecords]ringSlot // the pid of each record, by seq % exitRecords
	next    uint64
	changed chan struct{} // closed at the next add while someone waits
	waiting int
	closed  bool

	window time.Time     // start of the current second of waiting
	spent  time.Duration // waited in vain in it

	named, timeouts, overflows uint64
}

type ringSlot struct {
	pid uint32
	seq uint64
}

func newExitNames() *exitNames {
	return &exitNames{recs: map[uint32]exitRecord{}, changed: make(chan struct{})}
}

// add stores the record of pid, evicting the oldest beyond the bound.
func (x *exitNames) add(pid uint32, r exitRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.next++
	r.seq = x.next
	slot := &x.ring[r.seq%exitRecords]
	if old, ok := x.recs[slot.pid]; ok && slot.seq != 0 && old.seq == slot.seq {
		delete(x.recs, slot.pid)
	}
	slot.pid, slot.seq = pid, r.seq
	x.recs[pid] = r
	x.wake()
}

// wake tells waiters that something changed.
func (x *exitNames) wake() {
	if x.waiting > 0 {
		close(x.changed)
		x.changed = make(chan struct{})
	}
}

// overflow notes that the socket dropped records.
func (x *exitNames) overflow() {
	x.mu.Lock()
	x.overflows++
	x.mu.Unlock()
}

// close wakes the waiters for good.
func (x *exitNames) close() {
	x.mu.Lock()
	x.closed = true
	x.wake()
	x.mu.Unlock()
}

func (x *exitNames) isClosed() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.closed
}

func (x *exitNames) take(pid uint32, lived, at uint64) (exitRecord, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var start, deadline time.Time
	var timer *time.Timer
	for {
		// The map holds the latest record of each pid: a socket's records
		// come in the order they were sent, and a pid is reused only after
		// it is reaped. One received before the exec is an earlier
		// process's (a pid comes back only after the allocator wraps,
		// seconds later); so is a thread's (another tgid) and one of a
		// task that did not live until the exec.
		if r, ok := x.recs[pid]; ok && r.recvNS >= at && (r.tgid == 0 || r.tgid == pid) && r.etimeNS+exitSlack >= lived {
			delete(x.recs, pid)
			x.named++
			return r, true
		}
		if x.closed {
			return exitRecord{}, false
		}
		now := time.Now()
		if deadline.IsZero() {
			if now.Sub(x.window) >= time.Second {
				x.window, x.spent = now, 0
			}
			left := min(exitWait, exitBudget-x.spent)
			if left <= 0 {
				return exitRecord{}, false
			}
			start, deadline = now, now.Add(left)
			timer = time.NewTimer(left)
			defer timer.Stop()
		} else if !now.Before(deadline) {
			x.timeouts++
			x.spent += now.Sub(start)
			return exitRecord{}, false
		}
		ch := x.changed
		x.waiting++
		x.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
		}
		x.mu.Lock()
		x.waiting--
	}
}

// Taskstats' netlink numbers (include/uapi/linux/taskstats.h).
const (
	taskstatsCmdGet         = 1
	taskstatsCmdNew         = 2
	taskstatsTypePID        = 1
	taskstatsTypeStats      = 3
	taskstatsTypeAggrPID    = 4
	taskstatsAttrRegister   = 3
	taskstatsAttrDeregister = 4
	genlHeaderLen           = 4 // struct genlmsghdr: cmd, version, reserved
)

// Offsets in struct taskstats. Its layout is fixed (explicitly aligned,
// fields only ever appended, each append a new version): version 1 is
// delay accounting only, version 2 adds the basic accounting fields
// (comm, pids, times), version 12 the thread group id.
const (
	tsVersion   = 0
	tsComm      = 80 // char ac_comm[32]
	tsCommLen   = 32
	tsPPID      = 132
	tsEtime     = 144 // µs
	tsBasicEnd  = 152
	tsTGID      = 368
	tsTGIDEnd   = 372
	tsWithBasic = 2
	tsWithTGID  = 12
)

var errTaskstatsShort = errors.New("proc: short taskstats message")

// decodeTaskstats calls fn with each task's record in the payload of a
// TASKSTATS_CMD_NEW message (the generic netlink header and attributes).
// Only the per-task aggregate (TASKSTATS_TYPE_AGGR_PID) is read: a thread
// group's (AGGR_TGID) sums its tasks and says nothing of names.
func decodeTaskstats(b []byte, fn func(pid uint32, r exitRecord)) error {
	if len(b) < genlHeaderLen {
		return errTaskstatsShort
	}
	if b[0] != taskstatsCmdNew {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(b[genlHeaderLen:])
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != taskstatsTypeAggrPID {
			continue // TASKSTATS_TYPE_NULL padding, AGGR_TGID
		}
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			var pid uint32
			var rec exitRecord
			ok := false
			for nad.Next() {
				switch nad.Type() {
				case taskstatsTypePID:
					pid = nad.Uint32()
				case taskstatsTypeStats:
					nad.Do(func(s []byte) error {
						rec, ok = parseTaskstats(s)
						return nil
					})
				}
			}
			if ok && pid != 0 && nad.Err() == nil {
				fn(pid, rec)
			}
			return nil
		})
	}
	return ad.Err()
}

// parseTaskstats reads the fields the table uses from a struct taskstats,
// only those its version has and its length holds.
func parseTaskstats(s []byte) (exitRecord, bool) {
	if len(s) < tsBasicEnd {
		return exitRecord{}, false
	}
	ne := binary.NativeEndian
	v := ne.Uint16(s[tsVersion:])
	if v < tsWithBasic {
		return exitRecord{}, false
	}
	comm := s[tsComm : tsComm+tsCommLen]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	r := exitRecord{comm: string(comm), ppid: ne.Uint32(s[tsPPID:]), etimeNS: ne.Uint64(s[tsEtime:]) * 1000}
	if v >= tsWithTGID && len(s) >= tsTGIDEnd {
		r.tgid = ne.Uint32(s[tsTGID:])
	}
	return r, r.comm != ""
}
