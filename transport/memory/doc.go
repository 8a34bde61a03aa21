// Package memory is an in-process implementation of transport.Conn with the
// semantics of the kernel's NETLINK_CONNECTOR, for unit tests that cannot
// open real netlink sockets (no root, no CAP_NET_ADMIN, not Linux, or a
// network namespace without the connector).
//
// A Network stands for one kernel: Dial creates endpoints on it, each with a
// port id the network assigns, and Kernel is the endpoint at port 0. Send
// encodes the message into real datagram bytes with transport.AppendDatagram;
// the datagram is queued, without copying, at every destination, and
// ReceiveBatch copies it into the caller's transport.Batch and decodes it
// there, so the codec runs exactly as it does for the kernel socket. The
// receiver sees the sender's port id, the destination group and the
// credentials the sender was dialed with.
//
// The rules follow what the kernel does, as measured on Linux 6.x; the
// conformance suite in package transport (conformance_test.go) runs the
// same tests of these rules against this network and the real socket:
//
//   - Receive queues hold a fixed number of datagrams (WithQueueLen, default
//     512, about what the default kernel buffer holds of proc events).
//   - Unicast between endpoints never loses data: a sender facing a full
//     queue waits for room, bounded by its context, its send timeout
//     (transport.ErrSendTimeout) and the receiver closing (ECONNREFUSED, as
//     for a port that does not exist).
//   - Multicast never waits: a member whose queue is full drops the datagram
//     and counts it in Drops, and its next ReceiveBatch reports it in
//     Batch.Lost. As in the kernel, a queue that overflowed stays congested,
//     dropping multicasts and holding unicast senders, until its reader has
//     drained it completely.
//   - A multicast is not delivered back to its sender, even when the sender
//     is a member. Like a sendto with both nl_pid and nl_groups set, a send
//     with both Port and Group set multicasts and then unicasts to Port;
//     with Port 0 that unicast goes to the kernel. If Port's queue is full,
//     Send fails at once with EAGAIN, as the netlink Conn does (waiting
//     would mean multicasting again).
//   - The kernel never makes anyone wait: a message to a kernel endpoint
//     whose queue is full is dropped and counted, and a unicast from the
//     kernel to a full queue is dropped, counted at the receiver and reported
//     to the kernel's Send as EAGAIN.
//
// Messages to port 0 are discarded until Kernel or HandleKernel is called,
// as the real kernel discards messages for callback ids nobody registered.
// After that they queue at the Kernel endpoint, where a test reads them with
// ReceiveBatch, or, with HandleKernel, are passed synchronously to a function
// that plays the kernel and may answer with the kernel endpoint's Send.
package memory
