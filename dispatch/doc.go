// Package dispatch is the connector's routing table: which callback id goes
// to which handler, who may reach it, and which multicast groups the socket
// must be in for it. It also implements the seed's notification protocol
// (subscriptions to callback registration and removal events).
//
// Data flows through it on every received message without a lock:
//
//	reader ──Snapshot (once per batch)──▶ Lookup(id) ──▶ Route: SenderPolicy.Allows? ──▶ Route.Target (the handler)
//	                                          └──── no route: Snapshot.Fallback, or counted as unknown
//
// Writers (AddCallback, DelCallback) copy the table, change the copy and
// publish it atomically, joining group idx when the first callback with
// that idx arrives and leaving it when the last one goes, as the kernel's
// connector core assigns group id.idx to a callback.
//
// Control messages sent to CoreID() go the other way: ParseControl decodes
// a cn_ctl_msg into a Subscription, Subscriptions.Apply stores or removes
// it (within its Max and MaxRanges bounds), and when a callback is added
// or removed Subscriptions.Groups names the groups that get the
// Notification built for it.
//
// A SenderPolicy is a value made by AllowAnyone, AllowKernel, AllowPorts or
// AllowUIDs. It has no exported fields and copies the ports or uids it is
// given, so a policy cannot be altered once made.
package dispatch
