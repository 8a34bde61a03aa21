// Command cnctl talks to the Linux kernel connector (NETLINK_CONNECTOR)
// from a terminal: it listens to, sends and serves cn_msg traffic, and
// watches process events.
//
//	cnctl listen [-group GROUP]... [-json] [-count N] [-timeout DURATION]
//	cnctl send -id IDX:VAL (-port PORT | -group GROUP) [-data HEX | -text TEXT]
//	cnctl serve [-config FILE] [-metrics HOST:PORT] [-export IDX:VAL,...]   (stdin: add, del, list, reload, help)
//	cnctl proc [-events LIST] [-pid PID] [-json] [-duration DURATION]
//	cnctl request -id IDX:VAL (-port PORT | -group GROUP) [-count N]
//	cnctl bench [throughput|latency|overload|proc]
//	cnctl version
//
// Every command explains itself with -h (or cnctl help COMMAND), on
// stdout. Sending to a user port or a group needs root or CAP_NET_ADMIN;
// -port 0 is the kernel and needs no privilege.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cnactor/cnactor/benchmarks"
)

type command struct {
	name string
	run  func(ctx context.Context, args []string, env *env) error
}

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// commands are cnctl's subcommands, in the order the list shows them;
// their help is in docs (help.go).
var commands = []command{
	{"listen", runListen},
	{"send", runSend},
	{"serve", runServe},
	{"proc", runProc},
	{"request", runRequest},
	{"bench", runBench},
	{"version", runVersion},
}

func main() {
	benchmarks.MaybeServeSender() // cnctl bench runs itself again as its sender
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

// run executes one cnctl invocation and returns its exit status: 0, 1 for
// a failure, 2 for a usage error.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr) // as the go command: no command is a usage error
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(e.stdout)
		return 0
	case "help":
		return runHelp(ctx, args[1:], e)
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(e.stderr, "cnctl: unknown command %q\nRun 'cnctl -h' for usage.\n", args[0])
		return 2
	}
	err := c.run(ctx, args[1:], e)
	switch {
	case err == nil || errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage): // already reported, with its hint
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(e.stderr, "cnctl %s: %v\n", c.name, err)
		hint(e.stderr, c.name)
	default:
		fmt.Fprintf(e.stderr, "cnctl %s: %v\n", c.name, err)
	}
	return exitStatus(err)
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// runHelp is `cnctl help [command]`: the list, or that command's -h.
func runHelp(ctx context.Context, args []string, e *env) int {
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "help":
		usage(e.stdout)
		return 0
	case len(args) > 1:
		fmt.Fprintf(e.stderr, "cnctl help: too many arguments\nRun 'cnctl help' for usage.\n")
		return 2
	}
	if _, ok := lookup(args[0]); !ok {
		fmt.Fprintf(e.stderr, "cnctl help: unknown command %q\nRun 'cnctl help' for the list.\n", args[0])
		return 2
	}
	return run(ctx, []string{args[0], "-h"}, e)
}
