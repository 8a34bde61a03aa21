// Command cnctl talks to the kernel connector (NETLINK_CONNECTOR) from a
// terminal: it listens to and sends cn_msg traffic for people debugging it.
//
//	cnctl listen [-group N]... [-json] [-count N] [-timeout D]
//	cnctl send -id IDX:VAL [-seq N] [-ack N] [-flags N] (-port P | -group G) (-data HEX | -text STR)
//	cnctl serve [-config FILE] [-metrics ADDR] [-json]   (then, on stdin: add IDX:VAL HANDLER [NAME] | del IDX:VAL | list | reload)
//	cnctl proc [-events LIST] [-pid P] [-json] [-duration D]
//	cnctl serve -export IDX:VAL,... [-listen ADDR] [-tls-cert F -tls-key F -tls-ca F]   (a node for remote subscribers)
//	cnctl proc -remote [HOST=]ADDR,... [-remote-listen ADDR] [-tls-cert F -tls-key F -tls-ca F]   (a fleet's process events)
//
// Sending to a user port or a group needs root or CAP_NET_ADMIN; -port 0 is
// the kernel and needs no privilege.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env *env) error
}

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

var commands = []command{
	{"listen", "print messages received on this socket and the groups it joins", runListen},
	{"send", "send one message to a port or a group", runSend},
	{"serve", "run a connector core with callbacks from a configuration file and stdin, and metrics", runServe},
	{"proc", "watch process events (fork, exec, exit, ...) from the kernel's proc connector", runProc},
	{"request", "send requests and wait for their replies (seq/ack), with RTT statistics", runRequest},
	{"bench", "measure throughput, latency, overload and proc storms against raw baselines", runBench},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

// run executes one cnctl invocation and returns its exit status.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "-help" {
		usage(e.stderr)
		return 2
	}
	for _, c := range commands {
		if c.name == args[0] {
			if err := c.run(ctx, args[1:], e); err != nil {
				if err != errUsage {
					fmt.Fprintf(e.stderr, "cnctl %s: %v\n", c.name, err)
				}
				return exitStatus(err)
			}
			return 0
		}
	}
	fmt.Fprintf(e.stderr, "cnctl: unknown command %q\n", args[0])
	usage(e.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cnctl <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'cnctl <command> -h' for its flags")
}
