package proc_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/proc"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
)

// procEvent is a struct proc_event as the kernel sends it: what, cpu 0,
// a timestamp in ms since boot, then the event's fields (the union) as
// 32-bit words, or bytes for comm's name.
func procEvent(what proc.What, ms uint64, words []uint32, tail ...byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(what))
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint64(b, ms*1e6)
	for _, w := range words {
		b = binary.NativeEndian.AppendUint32(b, w)
	}
	b = append(b, tail...)
	return append(b, make([]byte, proc.EventLen-len(b))...)
}

// A Monitor on the in-memory transport, the test playing the kernel: the
// events go from the kernel endpoint to group 1, as cn_proc sends them, each
// with the next sequence number of its CPU. The monitor's process table
// names the child from the events alone (its pids are beyond any real pid,
// so /proc knows nothing of them), and times it from fork to exit.
func ExampleMonitor() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)
	kernel := net.Kernel() // from now on, what is sent to port 0 queues here
	m, err := proc.Listen(ctx, proc.WithConnector(c))
	if err != nil {
		panic(err)
	}
	defer m.Close() // before the connector's Close
	b := transport.NewBatch(1)
	kernel.ReceiveBatch(ctx, b)
	fmt.Printf("kernel got op %d (LISTEN) for %s, mode %v\n", binary.NativeEndian.Uint32(b.Messages[0].Data), b.Messages[0].ID, m.Mode())

	const parent, child = 5_000_001, 5_000_002
	for i, ev := range [][]byte{
		procEvent(proc.WhatFork, 1000, []uint32{parent, parent, child, child}),
		procEvent(proc.WhatComm, 1001, []uint32{child, child}, []byte("worker")...),
		procEvent(proc.WhatExit, 1250, []uint32{child, child, 3 << 8, 17, parent, parent}),
	} {
		kernel.Send(ctx, transport.Addr{Group: 1}, &transport.Message{ID: proc.ID(), Seq: uint32(i + 1), Data: ev})
	}
	for range 3 {
		ev := <-m.Events()
		p := proc.ProcessOf(ev)
		line := fmt.Sprintf("%s %d %s name=%q %s", proc.EventName(ev), proc.PID(ev), proc.Info(ev), proc.Name(p, proc.NameComm), proc.Duration(p))
		fmt.Println(strings.TrimSpace(line))
	}
	m.Close() // the counters are final once the monitor is closed
	fmt.Printf("events=%d lost=%d\n", m.Stats().Events, m.Stats().Lost)
	// Output:
	// kernel got op 1 (LISTEN) for 1:1, mode all
	// fork 5000002 parent=5000001 name=""
	// comm 5000002 comm=worker name="worker"
	// exit 5000002 code=3 name="worker" 0.250000s
	// events=3 lost=0
}

// With every event kind subscribed (ModeAll), the monitor checks each CPU's
// sequence numbers: a gap becomes a *Lost event at the point of the stream
// where the events went missing.
func ExampleLost() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	defer c.Close(ctx)
	m, _ := proc.Listen(ctx, proc.WithConnector(c), proc.WithEnrichment(false))
	defer m.Close()

	for _, seq := range []uint32{1, 2, 5} { // 3 and 4 never arrive
		ev := procEvent(proc.WhatExec, uint64(seq), []uint32{5_000_000 + seq, 5_000_000 + seq})
		net.Kernel().Send(ctx, transport.Addr{Group: 1}, &transport.Message{ID: proc.ID(), Seq: seq, Data: ev})
	}
	for range 4 {
		switch ev := (<-m.Events()).(type) {
		case *proc.Lost:
			fmt.Printf("lost %d (%s)\n", ev.Count, ev.Source)
		default:
			fmt.Println(proc.EventName(ev), proc.PID(ev))
		}
	}
	// Output:
	// exec 5000001
	// exec 5000002
	// lost 2 (sequence)
	// exec 5000005
}
