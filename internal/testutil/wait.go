package testutil

import (
	"testing"
	"time"
)

// WaitTimeout bounds every WaitFor: far longer than anything legitimately
// takes, even under the race detector on a loaded machine, so that a wait
// fails only when the condition will never hold.
const WaitTimeout = 20 * time.Second

// WaitFor polls cond until it holds and fails the test after WaitTimeout.
// Tests wait for a condition, never for a duration: a counter that the
// code moves just after waking the test is read only once it has moved.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(500 * time.Microsecond)
	}
}
