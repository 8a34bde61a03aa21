package proc_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// Watch execs and exits until ctx is done; Events then closes and Err says
// why. (Compile-only: it needs the kernel.)
func ExampleListen() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := proc.Listen(ctx, proc.WithEvents(proc.WhatExec|proc.WhatExit))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for ev := range m.Events() {
		switch e := ev.(type) {
		case *proc.Exec:
			fmt.Println("exec", e.PID, proc.Name(e.Process, proc.NameCmdline))
		case *proc.Exit:
			fmt.Println("exit", e.PID, proc.Name(e.Process, proc.NameCmdline), proc.Info(e))
		case *proc.Lost:
			fmt.Println("lost", e.Count)
		}
	}
	fmt.Println("stopped:", m.Err()) // context.DeadlineExceeded
}

// The exit status of a process, decoded.
func ExampleExit() {
	for _, status := range []uint32{3 << 8, 9, 11 | 0x80} {
		e := &proc.Exit{PID: 7, TGID: 7, ExitCode: status, ExitSignal: 17}
		fmt.Printf("code=%d signal=%d core=%v: %s\n", e.Code(), e.Signal(), e.CoreDumped(), proc.Info(e))
	}
	thread := &proc.Exit{PID: 8, TGID: 7, ExitSignal: -1}
	fmt.Println(thread.IsThread(), proc.Info(thread))
	// Output:
	// code=3 signal=0 core=false: code=3
	// code=0 signal=9 core=false: signal=9
	// code=0 signal=11 core=true: signal=11 core
	// true thread code=0
}

// Events closes when the ctx given to Listen is done. Here the kernel is
// played by an in-memory network, so that the output is certain.
func ExampleMonitor_Err() {
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	m, err := proc.Listen(ctx, proc.WithConnector(c), proc.WithEnrichment(false))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// The "kernel" reports an exit with status 3.
	ev := binary.NativeEndian.AppendUint32(nil, uint32(proc.WhatExit))
	ev = append(ev, make([]byte, 12)...) // cpu, timestamp
	for _, w := range []uint32{42, 42, 3 << 8, 17, 1, 1} {
		ev = binary.NativeEndian.AppendUint32(ev, w)
	}
	net.Kernel().Send(ctx, transport.Addr{Group: 1}, &transport.Message{ID: proc.ID(), Data: ev})

	e := (<-m.Events()).(*proc.Exit)
	fmt.Println("exit", e.PID, "code", e.Code())
	cancel()
	for range m.Events() { // drains, then ends: Events is closed
	}
	fmt.Println("closed:", m.Err())
	// Output:
	// exit 42 code 3
	// closed: context canceled
}

// forkstat's event names are accepted beside the kernel's.
func ExampleParseWhat() {
	mask, _ := proc.ParseWhat("core,ptrce,nonzeroexit")
	fmt.Println(mask == proc.WhatCoredump|proc.WhatPtrace|proc.WhatNonzeroExit)
	// Output: true
}

// A process table on its own: seeded from /proc, kept current by the
// events of a monitor that has no table of its own. (Compile-only: Seed
// reads this machine's /proc and Listen needs the kernel; ExampleTable_Update
// shows a Table fed with events by hand.)
func ExampleTable() {
	table := proc.NewTable(proc.WithRetention(time.Minute))
	if _, err := table.Seed(); err != nil {
		log.Fatal(err)
	}
	m, err := proc.Listen(context.Background(), proc.WithEnrichment(false))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for ev := range m.Events() {
		table.Update(ev) // attaches the process to ev
		if p := proc.ProcessOf(ev); p != nil {
			fmt.Println(proc.EventName(ev), proc.PID(ev), proc.Name(p, proc.NameComm), "parent", p.PPID)
		}
	}
}
