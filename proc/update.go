package proc

import "time"

// Update applies ev to the table and attaches the process it concerns to
// it (the Process field of every kind but Ack and Lost; a thread's event
// gets its group leader). A process the table does not know is read from
// /proc first. A Lost event makes the table check, at its next chance,
// which of its processes are gone.
func (t *Table) Update(ev Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := ev.Head().TimestampNS
	if now != 0 {
		t.expire(now)
	}
	switch e := ev.(type) {
	case *Fork:
		if e.IsThread() {
			if l := t.get(e.ChildTGID); l != nil {
				t.addThread(l, e.ChildPID, now)
				e.Process = l.p
			}
			return
		}
		e.Process = t.fork(e)
	case *Exec:
		e.Process = t.exec(e)
	case *Exit:
		e.Process = t.exit(e)
	case *Comm:
		e.Process = t.change(e.TGID, e.PID, func(p *Process) { p.Comm = e.Comm })
	case *UID:
		e.Process = t.change(e.TGID, e.PID, func(p *Process) { p.UID = e.EUID })
	case *SID:
		e.Process = t.change(e.TGID, e.PID, func(p *Process) { p.SID, p.PGID = e.PID, e.PID })
	case *GID:
		e.Process = t.current(e.TGID)
	case *Ptrace:
		e.Process = t.current(e.TGID)
	case *Coredump:
		e.Process = t.current(e.TGID)
	case *Lost:
		t.resync = true
	}
	if t.resync && t.size() >= t.limit/2 {
		t.prune() // rate-limited: the exits we lost left entries behind
	}
}

// get is the entry for tgid, read from /proc (and kept) if unknown.
func (t *Table) get(tgid uint32) *entry {
	if e := t.find(tgid); e != nil {
		return e
	}
	p, ok := t.read(tgid)
	if !ok {
		return nil
	}
	e := &entry{p: p}
	if t.room() {
		t.live[tgid] = e
	}
	return e
}

func (t *Table) current(tgid uint32) *Process {
	if e := t.get(tgid); e != nil {
		return e.p
	}
	return nil
}

// change applies fn to a copy of the process when the leader (pid ==
// tgid) changed; a thread's change leaves the process as it is.
func (t *Table) change(tgid, pid uint32, fn func(*Process)) *Process {
	e := t.get(tgid)
	if e == nil {
		return nil
	}
	if pid == tgid {
		np := *e.p
		fn(&np)
		e.p = &np
	}
	return e.p
}

// fork records a new process with its parent's names: until it execs,
// that is what /proc shows for it.
func (t *Table) fork(e *Fork) *Process {
	p := &Process{TGID: e.ChildTGID, PPID: e.ParentTGID, StartNS: e.TimestampNS}
	if parent := t.get(e.ParentTGID); parent != nil {
		pp := parent.p
		p.Comm, p.Cmdline, p.Exe, p.Kernel = pp.Comm, pp.Cmdline, pp.Exe, pp.Kernel
		p.UID, p.PGID, p.SID, p.TTY, p.RTPrio = pp.UID, pp.PGID, pp.SID, pp.TTY, pp.RTPrio
		p.Cgroup, p.Container = pp.Cgroup, pp.Container
	} else if rp, ok := t.read(e.ChildTGID); ok {
		rp.PPID, rp.StartNS = p.PPID, p.StartNS
		p = rp
	}
	if old := t.live[p.TGID]; old != nil {
		t.retire(old, e.TimestampNS) // its exit was lost
	}
	if t.room() {
		t.live[p.TGID] = &entry{p: p}
	}
	return p
}

// exec reads the new program's names from /proc. If the process is
// already gone, its name is its exit record's (taskstats), with no command
// line or executable; without a record, or if the read filter rejects it,
// it keeps the names it had, marked Stale.
func (t *Table) exec(e *Exec) *Process {
	old := t.live[e.TGID] // an exited entry of this tgid is another process
	if old == nil {
		old = &entry{p: &Process{TGID: e.TGID}}
		if t.room() {
			t.live[e.TGID] = old
		}
	}
	np := *old.p
	np.Stale = false
	if t.readable != nil && !t.readable(old.p, func(a uint32) bool { return t.descends(e.TGID, a) }) {
		t.stats.Skipped++
		np.Stale = true
	} else if t.stats.Reads++; t.r.stat(e.TGID, &np) {
		np.Cmdline = t.r.cmdline(e.TGID)
		np.Exe = t.r.exe(e.TGID)
		np.Cgroup = t.r.cgroup(e.TGID)
		np.Container = ContainerID(np.Cgroup)
		// stat's start has 10 ms steps: keep the fork's exact one, and the
		// parent recorded then.
		if old.p.StartNS != 0 {
			np.StartNS, np.PPID = old.p.StartNS, old.p.PPID
		}
	} else if t.stats.Misses++; t.exitName(e.TGID, old.p.StartNS, e.TimestampNS, &np) {
		t.stats.ExitNamed++
	} else {
		np.Stale = true
	}
	if np.Stale {
		t.stats.Stale++
	}
	// The other threads were gone before the exec event.
	t.nthr -= len(old.threads)
	old.threads = nil
	old.p = &np
	return old.p
}

// exitName names p, gone before its exec at ns could be read, from the
// exit record of pid. It waits for the record (a bounded time) without
// the table's lock: Update is called by one goroutine, so only lookups
// and Seed run meanwhile, and the stream waits, keeping its order.
func (t *Table) exitName(pid uint32, start, at uint64, p *Process) bool {
	if t.exits == nil {
		return false
	}
	var lived uint64
	if start != 0 && at > start {
		lived = at - start
	}
	t.mu.Unlock()
	r, ok := t.exits.take(pid, lived, at)
	t.mu.Lock()
	if !ok {
		return false
	}
	p.Comm, p.Cmdline, p.Exe = r.comm, "", ""
	if p.PPID == 0 {
		p.PPID = r.ppid
	}
	return true
}

// exit returns what is known of the ending task with its duration; a
// process moves to the exited entries.
func (t *Table) exit(e *Exit) *Process {
	en := t.find(e.TGID)
	if en == nil {
		// Never seen alive: a zombie still has its stat and names.
		p, ok := t.read(e.TGID)
		if !ok {
			return nil
		}
		en = &entry{p: p}
	}
	np := *en.p
	start := np.StartNS
	if e.IsThread() {
		start = en.threads[e.PID]
		if _, ok := en.threads[e.PID]; ok {
			delete(en.threads, e.PID)
			t.nthr--
		}
	}
	if start != 0 && e.TimestampNS > start {
		np.Duration = time.Duration(e.TimestampNS - start)
	}
	if !e.IsThread() && t.live[e.TGID] == en {
		t.retire(en, e.TimestampNS)
	}
	return &np
}

// retire moves a live entry to the exited ones, kept for the retention.
func (t *Table) retire(e *entry, now uint64) {
	delete(t.live, e.p.TGID)
	if t.retain == 0 {
		t.nthr -= len(e.threads)
		return
	}
	e.exitNS = now
	t.queue = append(t.queue, e)
	t.exited[e.p.TGID] = e
}
