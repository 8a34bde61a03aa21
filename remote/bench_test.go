package remote

import (
	"context"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// Remote delivery beside local delivery, in the same run, through the
// kernel: a sender connector sends unicast to a connector whose callback is
// either a local handler or the forwarder of an export, whose subscriber (on
// another protoactor host of this process, over gRPC on loopback) runs the
// same handler.
//
//	go test -run '^$' -bench . -benchtime 2s ./remote/
//
// Delivery: closed-loop throughput (at most benchWindow messages
// outstanding, so that nothing is dropped), msgs/s. Latency: one message at
// a time, from the send to the handler, ns/op. RTT: Request from the sender,
// Reply from the handler (through the node when remote), ns/op, with p50
// and p99.

var benchID = transport.CbID{Idx: 0x7700, Val: 1} // no group: reached by port

const (
	benchWindow  = 1024
	benchPayload = 64
)

// benchRig is a sender and a connector running h, locally or remotely.
type benchRig struct {
	sender, c *cnactor.Connector
	port      uint32
	node      *Node
	sub       *Subscriber
}

func newBenchRig(b *testing.B, remote bool, h handlers.Handler) *benchRig {
	b.Helper()
	testutil.Privileged(b)
	r := &benchRig{}
	var err error
	if r.sender, err = cnactor.New(); err != nil {
		b.Fatal(err)
	}
	if r.c, err = cnactor.New(); err != nil {
		b.Fatal(err)
	}
	r.port = r.c.Port()
	b.Cleanup(r.close)
	if !remote {
		if err := r.c.AddCallback(benchID, "local", h, cnactor.WithMailbox(1<<16, cnactor.DropNewest)); err != nil {
			b.Fatal(err)
		}
		return r
	}
	if r.node, err = NewNode(r.c, NodeConfig{Listen: "127.0.0.2:0", Exports: []Export{{ID: benchID}}}); err != nil {
		b.Fatal(err)
	}
	if r.sub, err = NewSubscriber(SubscriberConfig{Host: sharedHost(b)}); err != nil {
		b.Fatal(err)
	}
	if err := r.sub.AddCallback(context.Background(), r.node.Addr(), benchID, "remote", h,
		WithWindow(4*benchWindow), WithQueue(4*benchWindow, cnactor.DropNewest)); err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *benchRig) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.sub != nil {
		r.sub.Close(ctx)
	}
	if r.node != nil {
		r.node.Close(ctx)
	}
	r.c.Close(ctx)
	r.sender.Close(ctx)
}

func (r *benchRig) send(b *testing.B, m *transport.Message) {
	if err := r.sender.Send(context.Background(), transport.Addr{Port: r.port}, m); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkDelivery(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(where(remote), func(b *testing.B) {
			var handled atomic.Uint64
			r := newBenchRig(b, remote, handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
				handled.Add(1)
				return nil
			}))
			m := &transport.Message{ID: benchID, Data: make([]byte, benchPayload)}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for uint64(i)-handled.Load() >= benchWindow {
					time.Sleep(20 * time.Microsecond)
				}
				m.Seq = 0
				r.send(b, m)
			}
			for handled.Load() < uint64(b.N) {
				time.Sleep(20 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if remote {
				st, _ := r.sub.Callback(r.node.Addr(), benchID)
				if st.Dropped != 0 || st.Lost != 0 {
					b.Fatalf("remote stats %+v", st)
				}
			}
		})
	}
}

func BenchmarkLatency(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(where(remote), func(b *testing.B) {
			got := make(chan struct{}, 1)
			r := newBenchRig(b, remote, handlers.HandlerFunc(func(handlers.Context, *transport.Message) error {
				got <- struct{}{}
				return nil
			}))
			m := &transport.Message{ID: benchID, Data: make([]byte, benchPayload)}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				m.Seq = 0
				r.send(b, m)
				<-got
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func BenchmarkRTT(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(where(remote), func(b *testing.B) {
			r := newBenchRig(b, remote, handlers.Echo())
			m := &transport.Message{ID: benchID, Data: make([]byte, benchPayload)}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				reply, err := r.sender.Request(context.Background(), transport.Addr{Port: r.port}, m)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, reply.RTT)
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func where(remote bool) string {
	if remote {
		return "remote"
	}
	return "local"
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-us")
	b.ReportMetric(p(0.99), "p99-us")
}
