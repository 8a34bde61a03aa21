// Command procmon prints every process start and exit on this machine
// with cnactor's proc connector handler: a fork/exec/exit monitor in a
// page of code. Run it as root, or as anyone on Linux 6.6 and later:
//
//	go run ./examples/procmon
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/cnactor/cnactor/handlers/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// Only execs and exits: on 6.6+ the kernel filters for us.
	m, err := proc.Listen(ctx, proc.WithEvents(proc.WhatExec|proc.WhatExit))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Fprintf(os.Stderr, "watching processes (mode %s); ^C to stop\n", m.Mode())

	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-m.Events():
			switch e := ev.(type) {
			case *proc.Exec:
				if e.Process != nil {
					fmt.Printf("start %7d %s\n", e.PID, e.Process.Cmdline)
				}
			case *proc.Exit:
				if e.Process != nil { // a process, not a thread, that we know
					fmt.Printf("exit  %7d %-40s code=%d after %v\n",
						e.PID, e.Process.Cmdline, e.ExitCode>>8, e.Process.Duration)
				}
			case *proc.Lost:
				// Loss is never silent: resynchronise here if needed.
				fmt.Printf("lost  %d events (%s)\n", e.Count, e.Source)
			}
		}
	}
}
