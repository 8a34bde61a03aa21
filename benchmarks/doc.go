// Package benchmarks holds cnactor's end-to-end benchmarks over the real
// kernel connector, each measured against a raw-socket baseline in the same
// run. It has no code of its own; run them as root with
//
//	go test -run '^$' -bench . ./benchmarks
package benchmarks
