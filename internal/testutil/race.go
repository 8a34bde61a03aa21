//go:build race

package testutil

// RaceEnabled reports whether the race detector is on; tests scale their
// volumes down under it, since it slows everything about tenfold.
const RaceEnabled = true
