package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// doc is what `cnctl CMD -h` prints around the command's flags. It lives
// apart from the command table: the run functions read it through their
// flag sets, and the table refers to the run functions.
type doc struct {
	summary  string // one line, for the command list
	usage    string // the argument forms after "cnctl CMD"
	about    string // one paragraph: what the command does
	more     string // further sections before the flags (serve's stdin commands)
	examples []string
}

// docs has an entry for every command of the table, in main.go.
var docs = map[string]doc{
	"listen": {
		summary: "print the messages that reach a new socket and the groups it joins",
		usage:   "listen [-group GROUP]... [-json] [-count N] [-timeout DURATION] [-rcvbuf BYTES]",
		about: `Open a NETLINK_CONNECTOR socket, join the multicast groups given, and
print every message that reaches it, unicast to its port or multicast to
a joined group: one line each on stdout, or one JSON object (keys from,
group, idx, val, seq, ack, flags, len, data in hex) with -json. First it
prints "listening port=PORT groups=LIST" on stderr: PORT is the socket's
netlink port id, which another cnctl sends to with -port PORT. Malformed
datagrams and receive-queue overflows are reported on stderr and
listening goes on. Joining a group needs root or CAP_NET_ADMIN on kernels
before 6.6.`,
		examples: []string{
			"cnctl listen -group 7",
			"cnctl listen -json -count 1 -timeout 10s    # one unicast message to the printed port",
		},
	},
	"send": {
		summary: "send one message to a port or a group",
		usage:   "send -id IDX:VAL (-port PORT | -group GROUP) [-data HEX | -text TEXT] [-seq N] [-ack N] [-flags N]",
		about: `Send one cn_msg with callback id IDX:VAL to a netlink port (a socket;
0 is the kernel) or to a multicast group 1..32, then print on stderr what
was sent and the port it was sent from. Without -data or -text the
payload is empty. Sending to a user port or a group needs root or
CAP_NET_ADMIN; -port 0 does not.`,
		examples: []string{
			"cnctl send -id 7:1 -group 7 -text hi",
			"cnctl send -id 0x7:0x2 -port 4242 -seq 16 -data 00ff",
		},
	},
	"serve": {
		summary: "run a connector core: callbacks from a configuration file and stdin, metrics, remote export",
		usage:   "serve [-config FILE] [-metrics HOST:PORT] [-json] [-v] [-rcvbuf BYTES] [-export IDX:VAL,... [-listen HOST:PORT] [TLS flags]]",
		about: `Run a connector core until interrupted (SIGINT, SIGTERM): one socket whose
callbacks, each a handler chosen by name with its own mailbox, come from
a YAML configuration file (-config) and from commands read on stdin.
It prints "serving port=PORT" on stderr: messages for a callback's
IDX:VAL sent to that port, or to group IDX when IDX is 1..32, reach it.
On exit it prints every callback's final counters on stderr. -metrics
serves Prometheus /metrics and /healthz; -export also runs a node that
streams those callback ids to remote subscribers (cnctl proc -remote).`,
		more: `Stdin commands, one a line; each answers "ok ..." or "error: ..." on stdout:
  add IDX:VAL HANDLER [NAME] [senders=anyone|kernel|ports:PORT,...|uids:UID,...]
        run HANDLER for IDX:VAL, named NAME (default HANDLER); senders= says
        who may send to it (default: the handler's own policy, kernel for
        proc, else anyone)
  del IDX:VAL
        remove that callback
  list
        one line per callback (handler, group, sender policy, counters,
        state), then the reader's and the control's counters
  reload
        read -config FILE again and apply the difference, as SIGHUP does
  help
        the commands and the handler names
Empty lines and lines starting with # are ignored; at end of input serve
goes on until interrupted.

Handlers: {handlers}.

Configuration file (-config FILE): YAML with sections connector
(receive_buffer, batch_size, max_callbacks, top_policy, root, mailbox,
senders), supervisors (name, parent, strategy, intensity, backoff, ...)
and callbacks (id, handler, name, settings, mailbox, senders, restart,
supervisor, shutdown_timeout). Every error names the file, the line and
the field. SIGHUP or the reload command applies the file's difference; a
file that does not load keeps the running configuration.`,
		examples: []string{
			"cnctl serve -config serve.yaml -metrics 127.0.0.1:9109",
			`printf 'add 100:1 echo\nlist\n' | cnctl serve    # then: cnctl request -id 100:1 -port PORT -text hi`,
			"cnctl serve -export 1:1 -listen 10.0.0.5:7390    # this host's process events, for cnctl proc -remote",
		},
	},
	"proc": {
		summary: "watch process events (fork, exec, exit, ...) from the kernel's proc connector",
		usage:   "proc [-events LIST] [-pid PID [-tree]] [-json] [-duration DURATION] [filter and column flags]\n       cnctl proc -remote [HOST=]HOST:PORT,... [-remote-listen HOST:PORT] [TLS flags]",
		about: `Watch the kernel's process events connector (callback id 1:1): fork,
exec, exit, uid, gid, sid, ptrace, comm and coredump events, one line
each (or one JSON object with -json), every process named from a table
seeded from /proc, like forkstat and with its options under cnctl flag
names. It needs CONFIG_PROC_EVENTS, and root or CAP_NET_ADMIN on kernels
before 6.6 (anyone may listen on 6.6 and later). With -remote it merges
instead the events of nodes run by "cnctl serve -export 1:1", each line
labelled with its host. Counts and losses are printed on stderr at the
end.`,
		examples: []string{
			"cnctl proc",
			"cnctl proc -events exec,exit -duration 10s",
			"cnctl proc -pid 1234 -tree -json",
			"cnctl proc -remote web1=10.0.0.5:7390,web2=10.0.0.6:7390 -remote-listen 10.0.0.9:0",
		},
	},
	"request": {
		summary: "send requests and wait for their replies (seq/ack), with RTT statistics",
		usage:   "request -id IDX:VAL (-port PORT | -group GROUP) [-data HEX | -text TEXT] [-timeout DURATION] [-retries N] [-count N] [-concurrency N] [-ack-only] [-json]",
		about: `Send requests with callback id IDX:VAL and wait for each one's reply: the
same id and seq with ack + 1, from the port the request went to (from any
sender for a request to a group). Each reply is printed on stdout like
cnctl listen prints a message, with its round-trip time; a summary (sent,
replied, timed out, retried, RTT percentiles) goes to stderr. It exits 1
if any request got no reply. Sending to a user port or a group needs
root or CAP_NET_ADMIN.`,
		examples: []string{
			"cnctl request -id 100:1 -port 4242 -text hello",
			"cnctl request -id 7:1 -group 7 -text ping -count 1000 -concurrency 16 -retries 2",
		},
	},
	"bench": {
		summary: "measure throughput, latency, overload and proc storms against raw baselines",
		usage:   "bench [throughput|latency|overload|proc] [flags]",
		about: `Measure cnactor beside the machine's own limits, in the same run and with
the same traffic, then print a table (or JSON). Every run checks that
sent == delivered + kernel drops + mailbox drops + other counted
rejections exactly, and exits 1 when it does not hold. The scenario is
the first argument (default throughput):

  throughput  a sender at full rate (cnctl run again as a process of its own)
              against cnactor (socket to handler), a plain recvmmsg loop and
              an mdlayher/netlink Conn.Receive loop in turn; each one's rate
              and CPU time per message, and cnactor's ratios
  latency     request/reply RTT percentiles beside a raw two-socket ping-pong
              (threads blocking in recvfrom) and the same ping-pong over Go's
              netpoller: the Go runtime's share and cnactor's
  overload    one handler stalls while traffic runs at full rate: memory,
              the other handlers' delivery, the drops
  proc        a storm of short-lived processes: events captured and lost by
              cnactor, and by vishvananda/netlink (-peers) and forkstat if there

-transport memory runs without the kernel and without privilege.`,
		examples: []string{
			"cnctl bench throughput -duration 10s",
			"cnctl bench latency -inflight 8 -json",
			"cnctl bench overload -transport memory",
		},
	},
	"version": {
		summary: "print cnctl's module version, VCS revision and Go version",
		usage:   "version",
		about: `Print the version of the module cnctl was built from (a tag, a
pseudo-version, or (devel) for a build in a working tree), the VCS
revision, commit time and whether the tree had uncommitted changes (as
go build records them; go run and go install of a module version record
none, and the revision is then read from a pseudo-version), the Go version
and the platform. "cnctl -version" does the same.`,
		examples: []string{"cnctl version"},
	},
}

// errHelp means the command printed its help: exit 0.
var errHelp = errors.New("help requested")

// usageError is a wrong argument found after flag parsing: reported with a
// hint to run -h, exit 2.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// hint is the one line that follows a usage error.
func hint(w io.Writer, name string) {
	fmt.Fprintf(w, "Run 'cnctl %s -h' for usage.\n", name)
}

// printHelp writes a command's help: usage, what it does, its flags and
// examples.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	name := strings.TrimPrefix(fs.Name(), "cnctl ")
	d := docs[name]
	fmt.Fprintf(w, "Usage: cnctl %s\n\n%s\n", d.usage, d.about)
	if d.more != "" {
		// The registry is read now: it holds what this binary links.
		fmt.Fprintf(w, "\n%s\n", strings.ReplaceAll(d.more, "{handlers}", handlerNames()))
	}
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags:")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	fmt.Fprintln(w, "\nExamples:")
	for _, ex := range d.examples {
		fmt.Fprintf(w, "  %s\n", ex)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// usage lists the commands; `cnctl -h` and `cnctl help` print it on
// stdout, a bare `cnctl` on stderr (as the go command does).
func usage(w io.Writer) {
	fmt.Fprint(w, `cnctl talks to the Linux kernel connector (NETLINK_CONNECTOR): it listens
to, sends and serves cn_msg traffic, and watches process events.

Usage: cnctl <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, docs[c.name].summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "help", "print a command's help: cnctl help <command>")
	fmt.Fprint(w, `
Arguments: a callback id is IDX:VAL, each part decimal or 0x hex (1:1 is
the proc connector); a PORT is a netlink port id (0 is the kernel); a
GROUP is a multicast group 1..32; durations are like 500ms, 10s, 2m.

Run 'cnctl <command> -h' or 'cnctl help <command>' for its flags and examples.
`)
}
