//go:build linux

package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

// benchChunk is how many datagrams are queued before each timed drain; the
// receive buffer is made large enough to hold them all, so the timed part
// measures receiving alone, not the sender.
const benchChunk = 20000

type receiveBench struct {
	rx   *transport.NetlinkConn
	rxFd int
	tx   int // blocking raw socket
	dg   []byte
}

func newReceiveBench(b *testing.B, payload int, creds bool) *receiveBench {
	testutil.Privileged(b)
	rx, err := transport.Dial(transport.WithReadBuffer(512<<20), transport.WithCredentials(creds))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rx.Close() })
	raw, _ := rx.SyscallConn()
	rb := &receiveBench{rx: rx}
	raw.Control(func(fd uintptr) { rb.rxFd = int(fd) })
	rb.tx, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(rb.tx) })
	rb.dg, _ = transport.AppendDatagram(nil, &transport.Message{ID: transport.CbID{Idx: 9, Val: 1}, Data: make([]byte, payload)}, 0, 0)
	return rb
}

func (rb *receiveBench) fill(b *testing.B, n int) {
	to := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: rb.rx.Port()}
	for i := 0; i < n; i++ {
		if err := unix.Sendto(rb.tx, rb.dg, 0, to); err != nil {
			b.Fatal(err)
		}
	}
}

func (rb *receiveBench) drainTransport(b *testing.B, batch *transport.Batch, n int) {
	ctx := context.Background()
	for got := 0; got < n; {
		if err := rb.rx.ReceiveBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		if batch.Lost != 0 || len(batch.Malformed) != 0 {
			b.Fatalf("lost %d, malformed %d", batch.Lost, len(batch.Malformed))
		}
		got += len(batch.Messages)
	}
}

// run drains b.N messages with each receiver, chunk by chunk and
// alternating, so that drift in the machine's speed hits both alike.
func (rb *receiveBench) run(b *testing.B, drains ...func(n int)) []time.Duration {
	spent := make([]time.Duration, len(drains))
	for left := b.N; left > 0; left -= benchChunk {
		n := min(left, benchChunk)
		for i, drain := range drains {
			rb.fill(b, n)
			start := time.Now()
			drain(n)
			spent[i] += time.Since(start)
		}
	}
	return spent
}

// BenchmarkReceive measures the transport's receive path and, in the same
// run over the same socket and traffic, a plain recvmmsg loop (and one that
// also takes the sender's address and credentials). It reports the rates
// and the ratios (transport/raw; 1.0 means no overhead).
// ns/op includes queueing the traffic; read the rates. "nocreds" runs
// without SO_PASSCRED, whose cmsg costs the kernel about 5% per datagram.
func BenchmarkReceive(b *testing.B) {
	for _, bc := range []struct {
		payload int
		creds   bool
	}{{64, true}, {64, false}, {1024, true}} {
		name := byteSize(bc.payload)
		if !bc.creds {
			name += "-nocreds"
		}
		b.Run(name, func(b *testing.B) {
			rb := newReceiveBench(b, bc.payload, bc.creds)
			batch := transport.NewBatch(64)
			rb.fill(b, 64) // warm-up: bind the batch, fault its pages in
			rb.drainTransport(b, batch, 64)
			b.ReportAllocs()
			b.ResetTimer()
			spent := rb.run(b,
				func(n int) { recvmmsgBaseline(b, rb.rxFd, n, false) },
				func(n int) { recvmmsgBaseline(b, rb.rxFd, n, true) },
				func(n int) { rb.drainTransport(b, batch, n) })
			b.StopTimer()
			rawRate := float64(b.N) / spent[0].Seconds()
			senderRate := float64(b.N) / spent[1].Seconds()
			trRate := float64(b.N) / spent[2].Seconds()
			b.ReportMetric(rawRate, "raw-msgs/s")
			b.ReportMetric(trRate, "msgs/s")
			// ratio: against the plainest loop; ratio-same: against a loop
			// that asks the kernel for what the transport delivers (sender
			// address and credentials), i.e. the transport's own overhead.
			b.ReportMetric(trRate/rawRate, "ratio")
			b.ReportMetric(trRate/senderRate, "ratio-same")
		})
	}
}

func byteSize(n int) string {
	if n >= 1024 {
		return itoa(n/1024) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
