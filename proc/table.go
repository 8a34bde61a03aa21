package proc

import (
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Table is a process table kept current from proc events, so that every
// event can name its process even when /proc no longer can: seeded from
// /proc (Seed), it records each process at fork (with its parent's names,
// as /proc would show them then), reads its new names at exec, follows
// comm, uid and sid changes and thread creation, and keeps exited
// processes for a while (WithRetention) so that late events about them,
// such as the exits of their threads, are still named.
//
// Processes are keyed by (tgid, start time): a fork of a pid still in the
// table (its exit was lost) retires the old process, and a process seen
// only in /proc is checked against its start time. Memory is bounded
// (WithTableLimit): exited processes go first, then processes whose /proc
// directory is gone (their exit was lost), and beyond that new entries are
// counted as rejected and logged, while their events are still named.
//
// A Table is safe for concurrent use; Update must be called with the
// events of one stream, in order.
type Table struct {
	mu     sync.RWMutex
	live   map[uint32]*entry
	exited map[uint32]*entry // the last exited process of each tgid, while retained
	queue  []*entry          // exited entries, oldest first, from head on
	head   int
	nthr   int // threads recorded, live or exited processes'
	limit  int
	retain uint64 // ns of event time
	r      procReader
	log    *zap.Logger
	stats  TableStats
	// resync asks for a prune at the next chance: events were lost.
	resync    bool
	lastPrune time.Time
	lastLog   time.Time
	unlogged  uint64 // rejections since the last log line
	readable  ReadFilter
	exits     exitSource // names of exited tasks (taskstats); nil: none
}

// A ReadFilter decides, at an exec, whether the table reads the new
// program's names from /proc: p is the process as known before the exec
// (its parent, owner, group, session and cgroup are inherited, so a filter
// on those can be applied before reading), and descends(a) reports whether
// it is a or one of a's descendants. It runs under the table's lock: it
// must not call the Table. A process it rejects keeps its earlier names.
type ReadFilter func(p *Process, descends func(ancestor uint32) bool) bool

// entry is one process in the table.
type entry struct {
	p       *Process          // replaced, never modified: events hold it
	threads map[uint32]uint64 // live thread tid -> start ns (0 if unknown)
	exitNS  uint64
}

// TableStats counts what a Table holds and did.
type TableStats struct {
	Live, Threads, Exited int    // entries held now
	Seeded                uint64 // processes read by Seed
	Reads                 uint64 // processes read from /proc
	Misses                uint64 // reads that found the process already gone
	Expired               uint64 // exited processes forgotten
	Pruned                uint64 // live entries dropped because /proc no longer had them
	Rejected              uint64 // entries not kept because the table was full
	Skipped               uint64 // execs not read: the read filter rejected them
	// ExitNamed counts Misses named from the taskstats record of the
	// process's exit; Stale counts execs left with their earlier names
	// (misses without a record in time, and Skipped).
	ExitNamed, Stale uint64
}

// A TableOption configures NewTable.
type TableOption func(*Table)

// DefaultTableLimit is how many processes and threads a Table holds by
// default, live and exited together: about 20 MB at most.
const DefaultTableLimit = 65536

// DefaultRetention is how long exited processes stay in a Table by default.
const DefaultRetention = 10 * time.Second

// WithTableLimit bounds the entries (processes, threads and retained exited
// processes) of the table.
func WithTableLimit(n int) TableOption { return func(t *Table) { t.limit = max(n, 1) } }

// WithRetention sets how long, in event time, exited processes stay in the
// table (0: not at all).
func WithRetention(d time.Duration) TableOption {
	return func(t *Table) { t.retain = uint64(max(d, 0)) }
}

// WithTableLogger sets where rejections are logged (rate-limited).
func WithTableLogger(l *zap.Logger) TableOption { return func(t *Table) { t.log = l } }

// WithReadFilter reads /proc at execs only for the processes fn accepts,
// for a consumer that shows only some processes.
func WithReadFilter(fn ReadFilter) TableOption { return func(t *Table) { t.readable = fn } }

// withExits names processes gone before their exec could be read from
// their exit records.
func withExits(x exitSource) TableOption { return func(t *Table) { t.exits = x } }

// withRoot reads another /proc, for tests.
func withRoot(dir string) TableOption { return func(t *Table) { t.r.root = dir } }

// NewTable returns an empty table; call Seed to fill it from /proc.
func NewTable(opts ...TableOption) *Table {
	t := &Table{live: map[uint32]*entry{}, exited: map[uint32]*entry{}, limit: DefaultTableLimit,
		retain: uint64(DefaultRetention), r: procReader{root: "/proc"}, log: zap.NewNop()}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Seed adds every process in /proc (and its threads) not yet in the table,
// up to the limit, and returns how many processes it added.
func (t *Table) Seed() (int, error) {
	dir, err := os.ReadDir(t.r.root)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, d := range dir {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil || t.live[uint32(pid)] != nil {
			continue
		}
		p, ok := t.r.full(uint32(pid))
		if !ok || !t.room() {
			continue
		}
		e := &entry{p: p}
		t.live[p.TGID] = e
		n++
		tasks, _ := os.ReadDir(t.r.path(p.TGID, "task"))
		for _, task := range tasks {
			if tid, err := strconv.ParseUint(task.Name(), 10, 32); err == nil && uint32(tid) != p.TGID {
				t.addThread(e, uint32(tid), 0)
			}
		}
	}
	t.stats.Seeded += uint64(n)
	return n, nil
}

// Lookup returns the process tgid as the table knows it: live, or exited
// and still retained. It never reads /proc.
func (t *Table) Lookup(tgid uint32) (*Process, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.find(tgid); e != nil {
		return e.p, true
	}
	return nil, false
}

// Threads returns the live threads (other than the leader) recorded for
// tgid.
func (t *Table) Threads(tgid uint32) []uint32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e := t.find(tgid)
	if e == nil {
		return nil
	}
	tids := make([]uint32, 0, len(e.threads))
	for tid := range e.threads {
		tids = append(tids, tid)
	}
	return tids
}

// maxDepth bounds walks up the tree (a cycle from a reused pid ends too).
const maxDepth = 256

// Descends reports whether tgid is ancestor or one of its descendants, by
// the parent links the table recorded.
func (t *Table) Descends(tgid, ancestor uint32) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.descends(tgid, ancestor)
}

func (t *Table) descends(tgid, ancestor uint32) bool {
	for range maxDepth {
		if tgid == ancestor {
			return true
		}
		e := t.find(tgid)
		if e == nil || e.p.PPID == 0 || e.p.PPID == tgid {
			return false
		}
		tgid = e.p.PPID
	}
	return false
}

// Stats returns the table's counters.
func (t *Table) Stats() TableStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.stats
	s.Live, s.Threads, s.Exited = len(t.live), t.nthr, len(t.queue)-t.head
	return s
}

func (t *Table) find(tgid uint32) *entry {
	if e := t.live[tgid]; e != nil {
		return e
	}
	return t.exited[tgid]
}

// size is what counts against the limit.
func (t *Table) size() int { return len(t.live) + t.nthr + len(t.queue) - t.head }

// room makes room for one more entry if it can: the oldest exited entry
// goes first, then live entries whose process is gone (at most once a
// second); false counts and logs a rejection.
func (t *Table) room() bool {
	if t.size() < t.limit {
		return true
	}
	if t.head < len(t.queue) {
		t.drop()
		t.stats.Expired++
		return true
	}
	if t.prune() > 0 {
		return true
	}
	t.stats.Rejected++
	t.unlogged++
	if now := time.Now(); now.Sub(t.lastLog) >= 10*time.Second {
		t.log.Warn("proc: process table full; new processes are named but not kept",
			zap.Int("limit", t.limit), zap.Uint64("rejected", t.unlogged), zap.Uint64("rejected_total", t.stats.Rejected))
		t.lastLog, t.unlogged = now, 0
	}
	return false
}

// prune drops live entries whose /proc directory is gone or belongs to a
// newer process: their exits were lost. At most once a second.
func (t *Table) prune() int {
	now := time.Now()
	if now.Sub(t.lastPrune) < time.Second {
		return 0
	}
	t.lastPrune, t.resync = now, false
	n := 0
	for tgid, e := range t.live {
		var p Process
		if !t.r.stat(tgid, &p) || e.p.StartNS != 0 && p.StartNS > e.p.StartNS+uint64(time.Second) {
			delete(t.live, tgid)
			t.nthr -= len(e.threads)
			n++
		}
	}
	t.stats.Pruned += uint64(n)
	return n
}

// drop forgets the oldest exited entry.
func (t *Table) drop() {
	e := t.queue[t.head]
	t.queue[t.head] = nil
	t.head++
	t.nthr -= len(e.threads)
	if t.exited[e.p.TGID] == e {
		delete(t.exited, e.p.TGID)
	}
	if t.head > 1024 && t.head*2 > len(t.queue) {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
}

// expire forgets exited entries older than the retention at event time now.
func (t *Table) expire(now uint64) {
	for t.head < len(t.queue) && t.queue[t.head].exitNS+t.retain < now {
		t.drop()
		t.stats.Expired++
	}
}

func (t *Table) addThread(e *entry, tid uint32, start uint64) {
	if _, ok := e.threads[tid]; ok {
		e.threads[tid] = start
		return
	}
	if !t.room() {
		return
	}
	if e.threads == nil {
		e.threads = map[uint32]uint64{}
	}
	e.threads[tid] = start
	t.nthr++
}

// read reads a process the table does not know from /proc.
func (t *Table) read(tgid uint32) (*Process, bool) {
	t.stats.Reads++
	p, ok := t.r.full(tgid)
	if !ok {
		t.stats.Misses++
	}
	return p, ok
}
