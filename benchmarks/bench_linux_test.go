//go:build linux

package benchmarks

import (
	"context"
	"fmt"
	"testing"

	"github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/transport"
)

// BenchmarkEncode: one 64-byte message into a datagram, into a reused
// buffer.
func BenchmarkEncode(b *testing.B) {
	m := transport.Message{ID: transport.CbID{Idx: 9, Val: 1}, Seq: 1, Ack: 2, Data: make([]byte, 64)}
	buf := make([]byte, 0, transport.MaxDatagram)
	b.ReportAllocs()
	b.SetBytes(int64(transport.NlmsgHeaderLen + transport.CnMsgHeaderLen + 64))
	for b.Loop() {
		buf, _ = transport.AppendDatagram(buf[:0], &m, m.Seq, 7)
	}
}

// BenchmarkDecode: a 64-byte datagram decoded, as a Batch does it (the
// receive path) and with DecodeDatagram into a reused slice.
func BenchmarkDecode(b *testing.B) {
	m := transport.Message{ID: transport.CbID{Idx: 9, Val: 1}, Seq: 1, Ack: 2, Data: make([]byte, 64)}
	dg, _ := transport.AppendDatagram(nil, &m, m.Seq, 7)
	b.Run("batch", func(b *testing.B) {
		batch := transport.NewBatch(64)
		b.ReportAllocs()
		b.SetBytes(int64(len(dg)))
		i := 0
		for b.Loop() {
			if i%64 == 0 {
				batch.Reset()
			}
			batch.AddDatagram(dg, 1, 0, transport.Credentials{})
			i++
		}
	})
	b.Run("datagram", func(b *testing.B) {
		var msgs []transport.Message
		b.ReportAllocs()
		b.SetBytes(int64(len(dg)))
		for b.Loop() {
			msgs, _ = transport.DecodeDatagram(msgs[:0], dg)
		}
	})
}

// drainBench queues b.N messages per receiver, chunk by chunk, with the
// receivers held back, and times only their draining: ns/op and allocs/op
// are per message delivered (summed over the receivers when there are
// baselines; the per-receiver rates and cnactor's ratios are reported as
// metrics).
func drainBench(b *testing.B, cfg Config, baselines bool) {
	if cfg.Transport != Memory {
		testutil.Privileged(b)
	}
	cfg.Scenario, cfg.Method = Throughput, Drain
	if err := cfg.Normalize(); err != nil {
		b.Fatal(err)
	}
	t, err := newTraffic(&cfg, baselines, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := t.close(); err != nil {
			b.Error(err)
		}
	})
	ctx := context.Background()
	chunk := cfg.Chunk
	// Warm-up: bind batches, fault buffers in, fill pools.
	t.cfg.Chunk = min(chunk, 2000)
	for _, r := range t.recvs {
		if err := t.drainOnce(ctx, r, &measure{}); err != nil {
			b.Fatal(err)
		}
	}
	ms := make([]measure, len(t.recvs))
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	t.timed = func(start bool) {
		if start {
			b.StartTimer()
		} else {
			b.StopTimer()
		}
	}
	for left, round := b.N, 0; left > 0; left, round = left-chunk, round+1 {
		t.cfg.Chunk = min(left, chunk)
		for k := range t.recvs {
			i := (k + round) % len(t.recvs)
			if err := t.drainOnce(ctx, t.recvs[i], &ms[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	t.timed = nil
	rates := map[string]float64{}
	for i, r := range t.recvs {
		m := ms[i]
		if m.spent <= 0 || m.msgs == 0 {
			continue
		}
		rates[r.name()] = float64(m.msgs) / m.spent.Seconds()
		if len(t.recvs) > 1 {
			b.ReportMetric(rates[r.name()], r.name()+"-msgs/s")
		} else {
			b.ReportMetric(rates[r.name()], "msgs/s")
		}
		if r == receiver(t.cn) {
			b.ReportMetric(float64(m.mallocs)/float64(m.msgs), "cnactor-allocs/msg")
		}
		if m.cpuMsgs > 0 {
			b.ReportMetric(float64(m.cpu.Nanoseconds())/float64(m.cpuMsgs), r.name()+"-cpu-ns/msg")
		}
	}
	for name, v := range rates {
		if name != NameCnactor && v > 0 {
			b.ReportMetric(rates[NameCnactor]/v, "ratio-vs-"+name)
		}
	}
	for _, r := range t.recvs {
		a := r.books(t.sent[r].Load())
		if err := a.Check(); err != nil {
			b.Error(err)
		}
		if a.KernelDrops+a.MailboxDrops > 0 {
			b.ReportMetric(float64(a.KernelDrops+a.MailboxDrops), r.name()+"-drops")
		}
	}
}

// BenchmarkDispatchMemory: cnactor's reader, dispatch and handler actors
// on the in-memory transport; ns/op and allocs/op per message delivered
// to a handler.
func BenchmarkDispatchMemory(b *testing.B) {
	for _, h := range []int{1, 16} {
		b.Run(fmt.Sprintf("handlers=%d", h), func(b *testing.B) {
			drainBench(b, Config{Transport: Memory, Handlers: h, Chunk: 20000}, false)
		})
	}
}

// BenchmarkReceivePath: the kernel socket to cnactor's handlers, beside a
// plain recvmmsg loop and an mdlayher/netlink Conn.Receive loop over the
// same traffic in the same run (ratio-vs-recvmmsg, ratio-vs-mdlayher).
func BenchmarkReceivePath(b *testing.B) {
	for _, h := range []int{1, 16} {
		b.Run(fmt.Sprintf("handlers=%d", h), func(b *testing.B) {
			drainBench(b, Config{Handlers: h}, true)
		})
	}
}

// BenchmarkDelivery: end to end, kernel socket to handler, cnactor alone:
// ns/op and allocs/op are per message delivered.
func BenchmarkDelivery(b *testing.B) {
	for _, bc := range []struct{ handlers, payload int }{{1, 64}, {16, 64}, {1, 1024}} {
		b.Run(fmt.Sprintf("handlers=%d/payload=%d", bc.handlers, bc.payload), func(b *testing.B) {
			b.SetBytes(int64(bc.payload))
			drainBench(b, Config{Handlers: bc.handlers, Payload: bc.payload}, false)
		})
	}
}
