// Package proc is the kernel's process events connector (cn_proc, id 1:1,
// group 1) as a cnactor handler: fork, exec, uid, gid, sid, ptrace, comm,
// coredump and exit events, decoded exactly, with loss reported in the
// stream and processes enriched from /proc.
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
// checks each CPU's sequence numbers (unfiltered subscriptions), filters,
// enriches and sends the event on Monitor.Events. Loss is never silent: the
// socket's drop counter, drops in the handler's mailbox and sequence gaps
// all become *Lost events at the point of the stream where the events went
// missing, each lost event counted once, so a consumer can resynchronise
// (for example by rescanning /proc).
package proc
