package transport_test

import (
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// Issue 13, item 6: a receive buffer over what the kernel takes (2^31 and
// more wrap in the 32-bit socket option) must not silently become the
// kernel's 2,304-byte minimum.
func TestReadBufferOverMaximum(t *testing.T) {
	t.Parallel()
	testutil.Privileged(t) // SO_RCVBUFFORCE
	for _, asked := range []int{transport.MaxReadBuffer, 1 << 31, 1<<63 - 1} {
		c, err := transport.Dial(transport.WithReadBuffer(asked))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadBuffer()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The kernel doubles what it takes.
		if got < transport.MaxReadBuffer {
			t.Errorf("asked for %d bytes: the socket has %d, want at least %d", asked, got, transport.MaxReadBuffer)
		}
	}
}
