// Package proc is the kernel's process events connector (cn_proc, id 1:1,
// group 1) on a cnactor.Connector: fork, exec, uid, gid, sid, ptrace, comm,
// coredump and exit events, decoded exactly, with loss reported in the
// stream and every event naming its process. It is built on the root
// package (Listen runs a Monitor on its own Connector, or on one given
// with WithConnector); the decoding (Decode, the event types) and the
// process table (Table) stand on their own for programs that route proc
// events themselves.
//
// Listen registers the proc handler on a connector (joining group 1) and
// subscribes the way the kernel wants it: LISTEN sent to port 0 with no
// groups, never multicast, so no privilege is needed on kernels that allow
// unprivileged listeners (6.6+) and other listeners are not disturbed. A
// filter (WithEvents) is the kernel's own on 6.6+ (the 8-byte proc_input)
// and applied here on older kernels. Listen never waits for the kernel's
// acknowledgement, since filtered subscriptions get none.
//
// Data flows from the socket through the runtime to the handler, which
// checks each CPU's sequence numbers (unfiltered subscriptions), updates
// the process table, filters and sends the event on Monitor.Events. Loss
// is never silent: the socket's drop counter, drops in the handler's
// mailbox and sequence gaps all become *Lost events at the point of the
// stream where the events went missing, each lost event counted once, so
// a consumer can resynchronise (for example by rescanning /proc).
//
// # Names
//
// The process table (Table, on by default, WithEnrichment) is seeded from
// /proc and kept current from the events: a forked child has its parent's
// names until it execs, an exec reads the new program's from /proc, comm,
// uid and sid events update them, and exited processes stay for
// WithRetention (WithTable) so that late events about them are still named. Every
// event but acks and losses carries its Process; a thread's events carry
// its group leader's. To keep the table current, the monitor subscribes to
// forks, execs, comm changes and exits even when WithEvents asks for
// fewer, and delivers only what was asked for.
//
// The exec event does not carry the new name, and a short-lived program
// (ls) is often gone and reaped before its exec is handled, so /proc no
// longer has it. For those the monitor uses the kernel's taskstats (the
// generic netlink family TASKSTATS, registered for every CPU's exits):
// at each task's exit the kernel sends a record with its comm at that
// point, after the exec, before the task becomes a zombie and so before
// /proc can miss it. An exec whose /proc read fails waits for that
// record (the events after it wait too, so the stream keeps its order),
// at most 50 ms, and at most 100 ms a second for records that never come
// (the taskstats socket overflowed); it then carries the record's comm,
// with no command line or executable (Name falls back to the comm), and
// is not Stale. Records are matched by pid, received after the exec and
// of a task that lived until it, so a reused pid is not confused; at most
// 16384 recent ones are kept. TableStats counts Misses, ExitNamed and
// Stale. A process that later renamed itself (prctl) is named as at its
// exit.
//
// Registering for the records needs CAP_NET_ADMIN in the initial user and
// pid namespaces (root on the host) and CONFIG_TASKSTATS; without them the
// monitor logs so once and works as before (Monitor.Taskstats reports
// which; WithTaskstats turns it off): a process gone before its exec can
// be read keeps its earlier names, marked Process.Stale.
//
// # Exit status
//
// Exit.ExitCode is the kernel's wait status: use Exit.Code, Exit.Signal
// and Exit.CoreDumped. Exit.ExitSignal is the signal the parent is sent
// (SIGCHLD, or -1 for a thread), not the one that killed the task.
//
// # Lifecycle
//
// Events is closed when the ctx given to Listen is done, when Close is
// called, when the connector fails and when the connector removes the
// callback; Monitor.Err then says which. A consumer can simply range over
// Events. Close is still needed after the ctx is done only to learn about
// errors while unsubscribing; it is safe to call in any case.
package proc
