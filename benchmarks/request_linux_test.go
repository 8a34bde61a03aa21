//go:build linux

package benchmarks

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
	"golang.org/x/sys/unix"
)

// echoID has no group (idx > 32), so the benchmark joins none.
var echoID = transport.CbID{Idx: 0xe0001, Val: 1}

const payloadLen = 64

// rawPair is the baseline: two NETLINK_CONNECTOR sockets playing ping-pong
// with blocking sendto/recvfrom and the same datagrams the connector sends.
//
// A goroutine blocked in recvfrom keeps its P (in syscall state) until
// sysmon retakes it, which would slow down whatever runs next to it; so
// the echo side runs only while the baseline is measured and stop ends it.
type rawPair struct {
	a, b  int
	aPort uint32
	bPort uint32
	req   []byte
	buf   []byte
	done  chan struct{}
}

func rawSocket(tb testing.TB) (int, uint32) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd, sa.(*unix.SockaddrNetlink).Pid
}

func newRawPair(tb testing.TB) *rawPair {
	p := &rawPair{buf: make([]byte, transport.MaxDatagram)}
	p.a, p.aPort = rawSocket(tb)
	p.b, p.bPort = rawSocket(tb)
	m := transport.Message{ID: echoID, Seq: 1, Ack: 7, Data: make([]byte, payloadLen)}
	p.req, _ = transport.AppendDatagram(nil, &m, m.Seq, p.aPort)
	return p
}

// start runs the echo side: it answers like a handler would (decode,
// reply with ack + 1) until a message with an empty payload arrives.
func (p *rawPair) start() {
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		buf := make([]byte, transport.MaxDatagram)
		var out []byte
		for {
			n, _, err := unix.Recvfrom(p.b, buf, 0)
			if err != nil {
				return
			}
			msgs, err := transport.DecodeDatagram(nil, buf[:n])
			if err != nil || len(msgs) != 1 || len(msgs[0].Data) == 0 {
				return
			}
			r := handlers.ReplyTo(&msgs[0], msgs[0].Data)
			out, _ = transport.AppendDatagram(out[:0], &r, r.Seq, p.bPort)
			if err := unix.Sendto(p.b, out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p.aPort}); err != nil {
				return
			}
		}
	}()
}

func (p *rawPair) stop(tb testing.TB) {
	quit, _ := transport.AppendDatagram(nil, &transport.Message{ID: echoID}, 0, p.aPort)
	if err := unix.Sendto(p.a, quit, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p.bPort}); err != nil {
		tb.Fatal(err)
	}
	<-p.done
}

func (p *rawPair) roundTrip(tb testing.TB) {
	if err := unix.Sendto(p.a, p.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: p.bPort}); err != nil {
		tb.Fatal(err)
	}
	if _, _, err := unix.Recvfrom(p.a, p.buf, 0); err != nil {
		tb.Fatal(err)
	}
}

// echoPair is a server Connector with an echo callback and a client one.
func echoPair(tb testing.TB) (srv, cli *cnactor.Connector) {
	var err error
	if srv, err = cnactor.New(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close(context.Background()) })
	if err := srv.AddCallback(echoID, "echo", handlers.Echo()); err != nil {
		tb.Fatal(err)
	}
	if cli, err = cnactor.New(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close(context.Background()) })
	return srv, cli
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(int(float64(len(s))*p), len(s)-1)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkRequestRTT measures raw ping-pong round trips and
// Connector.Requests to an echo Connector, alternating blocks of each so
// that both see the same machine, and reports both p50s and their ratio
// (the target is at most 1.5).
func BenchmarkRequestRTT(b *testing.B) {
	testutil.Privileged(b)
	raw := newRawPair(b)
	srv, cli := echoPair(b)
	ctx := context.Background()
	to := transport.Addr{Port: srv.Port()}
	data := make([]byte, payloadLen)
	request := func() {
		m := transport.Message{ID: echoID, Data: data}
		if _, err := cli.Request(ctx, to, &m); err != nil {
			b.Fatal(err)
		}
	}
	rawRTT := make([]time.Duration, 0, b.N)
	reqRTT := make([]time.Duration, 0, b.N)
	const block = 500
	measure := func(rtts []time.Duration, n int, roundTrip func()) []time.Duration {
		roundTrip() // warm the path up again after the other one ran
		for range n {
			t0 := time.Now()
			roundTrip()
			rtts = append(rtts, time.Since(t0))
		}
		return rtts
	}
	raw.start()
	measure(nil, 1000, func() { raw.roundTrip(b) })
	raw.stop(b)
	measure(nil, 1000, request)
	b.ResetTimer()
	for left := b.N; left > 0; left -= block {
		n := min(left, block)
		raw.start()
		rawRTT = measure(rawRTT, n, func() { raw.roundTrip(b) })
		raw.stop(b)
		reqRTT = measure(reqRTT, n, request)
	}
	b.StopTimer()
	rawP50, reqP50 := percentile(rawRTT, 0.5), percentile(reqRTT, 0.5)
	b.ReportMetric(us(rawP50), "raw-p50-us")
	b.ReportMetric(us(reqP50), "req-p50-us")
	b.ReportMetric(us(percentile(rawRTT, 0.99)), "raw-p99-us")
	b.ReportMetric(us(percentile(reqRTT, 0.99)), "req-p99-us")
	b.ReportMetric(float64(reqP50)/float64(rawP50), "p50-ratio")
	if st := cli.Stats().Requester; st.Timeouts != 0 || st.InFlight != 0 {
		b.Errorf("requester stats after the run: %+v", st)
	}
}

// BenchmarkRequestThroughput64 keeps 64 requests in flight from one client
// Connector to an echo Connector and reports requests per second.
func BenchmarkRequestThroughput64(b *testing.B) {
	testutil.Privileged(b)
	srv, cli := echoPair(b)
	ctx := context.Background()
	to := transport.Addr{Port: srv.Port()}
	data := make([]byte, payloadLen)
	const inFlight = 64
	var left atomic.Int64
	run := func(n int) time.Duration {
		left.Store(int64(n))
		var wg sync.WaitGroup
		t0 := time.Now()
		for range inFlight {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					m := transport.Message{ID: echoID, Data: data}
					if _, err := cli.Request(ctx, to, &m, cnactor.WithRetries(3)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	run(10 * inFlight) // warm up
	b.ResetTimer()
	d := run(b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/d.Seconds(), "req/s")
	st := cli.Stats().Requester
	b.ReportMetric(float64(st.Retries), "retries")
}
