// Command procmon prints every process start and exit on this machine
// with cnactor's proc connector handler: a fork/exec/exit monitor in a
// page of code. Run it as root, or as anyone on Linux 6.6 and later:
//
//	go run ./examples/procmon
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/cnactor/cnactor/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// Only execs and exits are delivered; the monitor also subscribes to
	// the forks and comm changes its process table needs to name them.
	m, err := proc.Listen(ctx, proc.WithEvents(proc.WhatExec|proc.WhatExit))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Fprintf(os.Stderr, "watching processes (mode %s); ^C to stop\n", m.Mode())

	// Events closes when ctx is done (^C), or if the connector fails.
	for ev := range m.Events() {
		switch e := ev.(type) {
		case *proc.Exec:
			fmt.Printf("start %7d %s\n", e.PID, proc.Name(e.Process, proc.NameCmdline))
		case *proc.Exit:
			if e.IsThread() {
				continue
			}
			status := fmt.Sprintf("code=%d", e.Code())
			if sig := e.Signal(); sig != 0 {
				status = fmt.Sprintf("signal=%d (%v)", int(sig), sig)
				if e.CoreDumped() {
					status += " core dumped"
				}
			}
			fmt.Printf("exit  %7d %-40s %s after %s\n",
				e.PID, proc.Name(e.Process, proc.NameCmdline), status, proc.Duration(e.Process))
		case *proc.Lost:
			// Loss is never silent: resynchronise here if needed.
			fmt.Printf("lost  %d events (%s)\n", e.Count, e.Source)
		}
	}
	if err := m.Err(); !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
