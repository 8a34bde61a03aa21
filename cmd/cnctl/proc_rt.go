package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// realtimePriority is the SCHED_FIFO priority of -realtime: above every
// normal task, below the kernel's own real-time threads.
const realtimePriority = 10

// setRealtime moves every thread of this process to SCHED_FIFO; threads
// the runtime starts later inherit it from the thread that clones them.
func setRealtime() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: realtimePriority}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			return err
		}
	}
	return nil
}
