// Package peers is a separate module for the comparisons and charts that
// would otherwise pull third-party dependencies into cnactor's go.mod:
// vishvananda/netlink's ProcEventMonitor for `cnctl bench proc`, and
// gonum/plot for the charts of benchmarks/README.md. Its program is
// cmd/cnbench-peers.
package peers
