// Package transport is cnactor's wire: the cn_msg codec and the sockets that
// carry it.
//
// Data flows through it in one direction per call. On the way out, Conn.Send
// encodes a Message behind a netlink header and sends it to a port id (0 is
// the kernel) or a multicast group. On the way in, Conn.ReceiveBatch fills a
// caller-owned Batch: each datagram is read with recvmmsg, decoded into zero
// or more Received messages (a datagram may hold several nlmsgs and an nlmsg
// several cn_msgs back to back), each tagged with the sender's port id, the
// destination group and the sender's credentials. Malformed datagrams land in
// Batch.Malformed with an error that errors.Is one of the Err* values, and
// datagrams the kernel dropped because the receive queue was full are
// reported as Batch.Lost, taken from the socket's drop counter: loss is never
// silent. ReceiveEach runs that receive in a loop, handing each batch to a
// callback: on the kernel's socket it waits right after a batch that
// emptied the queue, one system call fewer than ReceiveBatch needs per wait,
// and while batches come back full it reads on off the Go poller, so that a
// busy socket does not wake the runtime's idle threads (ready_linux.go).
//
// Two implementations of Conn exist: Dial opens a real NETLINK_CONNECTOR
// socket (Linux only), and the memory subpackage provides an in-process
// network with the same semantics for unit tests that cannot use the kernel.
//
// The byte layout follows the kernel ABI in host byte order: a 16-byte
// nlmsghdr, a 20-byte cn_msg header {idx, val, seq, ack u32; len, flags u16}
// and at most MaxPayload bytes of data.
package transport
