// Command cnbench-peers runs the third-party sides of cnactor's benchmarks,
// kept out of cnactor's go.mod:
//
//	cnbench-peers proc
//	    listens with vishvananda/netlink's ProcEventMonitor; prints "ready",
//	    reads the storm shell's pid on stdin, and once it has seen the shell
//	    exit (or stdin closed and nothing came for a second) prints one JSON
//	    object: {"name","forks","execs","exits","error"}. `cnctl bench proc`
//	    runs it (-peers PATH, or from PATH).
//	cnbench-peers plot -dir DIR RESULTS.jsonl...
//	    draws throughput versus handlers and versus payload size from
//	    `cnctl bench throughput -json` lines, as SVG and PNG.
//	cnbench-peers table RESULTS.jsonl...
//	    prints the results as a Markdown table.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cnbench-peers proc | plot -dir DIR RESULTS.jsonl... | table RESULTS.jsonl...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "proc":
		err = runProc(os.Stdin, os.Stdout)
	case "plot":
		err = runPlot(os.Args[2:])
	case "table":
		err = runTable(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnbench-peers:", err)
		os.Exit(1)
	}
}
