package benchmarks

import (
	"os"
	"testing"
)

// TestMain lets this test binary serve as the live benchmarks' sender
// process (see MaybeServeSender).
func TestMain(m *testing.M) {
	MaybeServeSender()
	os.Exit(m.Run())
}
