package proc_test

import (
	"fmt"
	"time"

	"github.com/cnactor/cnactor/proc"
)

// A Table fed with events by hand (Update, in stream order), not seeded
// from /proc: it names processes from what the events tell, follows their
// threads and parents, and keeps exited processes for the retention time
// (event time) so that late events about them are still named.
func ExampleTable_Update() {
	const shell, server, thread = 5_000_010, 5_000_011, 5_000_012 // beyond any real pid
	at := func(w proc.What, ms uint64) proc.Header { return proc.Header{What: w, TimestampNS: ms * 1e6} }
	table := proc.NewTable(proc.WithRetention(time.Minute))

	table.Update(&proc.Fork{Header: at(proc.WhatFork, 100), ParentPID: shell, ParentTGID: shell, ChildPID: server, ChildTGID: server})
	table.Update(&proc.Comm{Header: at(proc.WhatComm, 101), PID: server, TGID: server, Comm: "server"})
	table.Update(&proc.Fork{Header: at(proc.WhatFork, 102), ParentPID: server, ParentTGID: server, ChildPID: thread, ChildTGID: server})

	p, _ := table.Lookup(server)
	fmt.Printf("%d %s parent=%d threads=%v descends from shell: %v\n", p.TGID, p.Comm, p.PPID, table.Threads(server), table.Descends(server, shell))

	exit := &proc.Exit{Header: at(proc.WhatExit, 2100), PID: server, TGID: server, ExitSignal: 17, ParentPID: shell, ParentTGID: shell}
	table.Update(exit) // attaches the process, with how long it ran
	fmt.Println("exit:", proc.Name(exit.Process, proc.NameComm), proc.Duration(exit.Process), proc.Info(exit))
	_, retained := table.Lookup(server)
	st := table.Stats()
	fmt.Printf("retained=%v live=%d exited=%d\n", retained, st.Live, st.Exited)
	// Output:
	// 5000011 server parent=5000010 threads=[5000012] descends from shell: true
	// exit: server 2.000000s code=0
	// retained=true live=0 exited=1
}
