// Package benchmarks measures cnactor against the machine's own limits. It
// is the engine of `cnctl bench` and holds the Go benchmarks (-benchmem) of
// the codec, the dispatch path, the netlink receive path, end-to-end
// socket-to-handler delivery and request/reply.
//
// Every figure comes with a baseline measured in the same run, on the same
// traffic: a plain recvmmsg loop (what the machine can do), an
// mdlayher/netlink Conn.Receive loop (what a straightforward Go client
// gets), a raw two-socket ping-pong for round trips (and the same
// ping-pong over Go's netpoller, the runtime's share). Every run checks its
// loss accounting exactly:
//
//	sent == delivered + kernel drops (SO_MEMINFO) + mailbox drops + other counted rejections
//
// and fails with ErrAccounting when it does not hold.
//
// Scenarios (see Run): "throughput", "latency", "overload" and "proc".
// Third-party comparisons that would pull dependencies into cnactor's
// go.mod (vishvananda/netlink's ProcEventMonitor, plotting with gonum/plot)
// live in the nested module benchmarks/peers; the proc scenario runs its
// program when it is given (Config.Peers) and forkstat when it is installed.
// README.md beside this file has the latest results and how to reproduce
// them.
//
// The Go benchmarks need root (they skip otherwise):
//
//	go test -run '^$' -bench . -benchmem ./benchmarks
package benchmarks
