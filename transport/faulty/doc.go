// Package faulty is a fault-injecting transport.Conn: it wraps another
// Conn (the kernel socket from transport.Dial, or an in-memory one from
// package memory) and makes chosen calls fail, wait, or deliver damaged,
// lost or reordered data, so that the error paths of whatever sits on top
// (cnactor's socket reader, its requester, your own receive loop) can be
// exercised on purpose and deterministically.
//
// A Fault names an Op (Receive, Send, Close, Join, Drops, Deadline) and the
// calls it hits, counted from when it was added: After calls go through,
// the next Times are hit (0: all of them). What it does:
//
//	Wait, Delay   hold the call until a channel is closed / for a duration
//	Err           fail the call with a *transport.OpError wrapping Err
//	              (syscall.EINTR, ENOBUFS, anything), without calling the
//	              wrapped Conn; Close still closes it
//	Drop          Send: succeed without sending; Receive: lose the batch,
//	              reported as Batch.Lost like a kernel overflow
//	Truncate      Receive: cut datagrams, reported as ErrTruncated (MSG_TRUNC)
//	Corrupt       Receive: rewrite the bytes before they are decoded
//	Reorder       Receive: deliver this batch after the next one
//
// Data flows through the receive side like this:
//
//	wrapped Conn ──ReceiveBatch──▶ stage Batch ──re-frame──▶ datagrams ──transforms──▶ pending ──▶ caller's Batch
//	                                             one cn_msg per       Corrupt, Truncate,          up to Cap()
//	                                             datagram, owned      Drop (→ Lost), Reorder      per call
//	                                             copies               (→ held for one batch)
//
// Every receive first applies the call faults (Wait, Delay, Err). It then
// takes what is pending; only when nothing is pending does it receive from
// the wrapped Conn into a private stage batch. Messages are re-encoded one
// per datagram (a kernel datagram holding several cn_msgs becomes several
// datagrams; Datagrams and Bytes count the re-framed ones) and malformed
// datagrams keep their error. The batch transforms then apply, and each
// counts only receives that returned datagrams, so that "the third batch"
// does not depend on how many empty TryReceiveBatch calls a receive loop
// made. The caller's Batch is filled from pending with the same decoder as
// any transport (Batch.AddDatagram), so corrupted bytes are reported in
// Batch.Malformed exactly as the kernel socket would report them. A
// receive that ends with nothing to deliver (its batch was held or
// dropped) receives again, as a socket would still be waiting.
//
// Calls and Injected count what happened per Op, for tests that wait for
// a fault to have hit before they check its effect.
package faulty
