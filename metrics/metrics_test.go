package metrics_test

import (
	"context"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/internal/conntest"
	ctest "github.com/cnactor/cnactor/internal/testutil"
	"github.com/cnactor/cnactor/metrics"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/cnactor/cnactor/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsAfterKnownTraffic: the collector reports exactly the traffic
// sent: per callback, for the reader and for the requester.
func TestMetricsAfterKnownTraffic(t *testing.T) {
	c, net := conntest.New(t, cnactor.WithRootSupervisor(supervisor.Spec{Backoff: supervisor.NoBackoff()}))
	cfg, err := config.Parse("test.yaml", []byte(`
callbacks:
  - {id: "7:1", name: echo, handler: echo, mailbox: {size: 16}}
  - {id: "7:2", name: kernel-only, handler: sink, senders: kernel}
  - {id: "7:3", name: flaky, handler: flaky}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(c, cfg, handlers.Env{}); err != nil {
		t.Fatal(err)
	}
	col := metrics.NewCollector(c)
	peer := conntest.DialPeer(t, net)
	echo, kernelOnly, flaky := transport.CbID{Idx: 7, Val: 1}, transport.CbID{Idx: 7, Val: 2}, transport.CbID{Idx: 7, Val: 3}
	for i := range 3 {
		conntest.SendTo(t, peer, c, echo, uint32(i+1), "ping")
		conntest.RecvFrom(t, peer, c.Port())
	}
	conntest.SendTo(t, peer, c, kernelOnly, 10, "refused")
	conntest.SendTo(t, peer, c, transport.CbID{Idx: 9, Val: 9}, 11, "nobody")
	conntest.SendTo(t, peer, c, transport.CbID{Idx: 9, Val: 9}, 12, "nobody")
	conntest.SendTo(t, peer, c, flaky, 13, "panic now")
	conntest.SendTo(t, peer, c, flaky, 14, "fine")
	conntest.RecvFrom(t, peer, c.Port())
	ctest.WaitFor(t, "the flaky handler's restart", func() bool { return conntest.Info(t, c, flaky).Restarts == 1 })

	// A request from a second connector, answered by the echo callback.
	client, err := net.Dial()
	if err != nil {
		t.Fatal(err)
	}
	cc := conntest.Start(t, client)
	r, err := cc.Request(context.Background(), transport.Addr{Port: c.Port()}, &transport.Message{ID: echo, Data: []byte("q")})
	if err != nil {
		t.Fatal(err)
	}
	ctest.WaitFor(t, "the echo of the request", func() bool { return conntest.Info(t, c, echo).Handled == 4 })

	const callbacks = `
# HELP cnactor_callback_failed_total Messages whose handling failed (an error or a panic).
# TYPE cnactor_callback_failed_total counter
cnactor_callback_failed_total{id="7:1",name="echo"} 0
cnactor_callback_failed_total{id="7:2",name="kernel-only"} 0
cnactor_callback_failed_total{id="7:3",name="flaky"} 1
cnactor_callback_failed_total{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_handled_total Messages the callback's handler processed without error.
# TYPE cnactor_callback_handled_total counter
cnactor_callback_handled_total{id="7:1",name="echo"} 4
cnactor_callback_handled_total{id="7:2",name="kernel-only"} 0
cnactor_callback_handled_total{id="7:3",name="flaky"} 1
cnactor_callback_handled_total{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_received_total Messages routed to the callback.
# TYPE cnactor_callback_received_total counter
cnactor_callback_received_total{id="7:1",name="echo"} 4
cnactor_callback_received_total{id="7:2",name="kernel-only"} 0
cnactor_callback_received_total{id="7:3",name="flaky"} 2
cnactor_callback_received_total{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_rejected_total Messages refused by the callback's sender policy.
# TYPE cnactor_callback_rejected_total counter
cnactor_callback_rejected_total{id="7:1",name="echo"} 0
cnactor_callback_rejected_total{id="7:2",name="kernel-only"} 1
cnactor_callback_rejected_total{id="7:3",name="flaky"} 0
cnactor_callback_rejected_total{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_restarts_total Restarts of the callback's handler by its supervisor.
# TYPE cnactor_callback_restarts_total counter
cnactor_callback_restarts_total{id="7:1",name="echo"} 0
cnactor_callback_restarts_total{id="7:2",name="kernel-only"} 0
cnactor_callback_restarts_total{id="7:3",name="flaky"} 1
cnactor_callback_restarts_total{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_mailbox_capacity Capacity of the callback's mailbox.
# TYPE cnactor_callback_mailbox_capacity gauge
cnactor_callback_mailbox_capacity{id="7:1",name="echo"} 16
cnactor_callback_mailbox_capacity{id="7:2",name="kernel-only"} 1024
cnactor_callback_mailbox_capacity{id="7:3",name="flaky"} 1024
cnactor_callback_mailbox_capacity{id="4294967295:4294967295",name="connector"} 1024
# HELP cnactor_callback_queued Messages waiting in the callback's mailbox.
# TYPE cnactor_callback_queued gauge
cnactor_callback_queued{id="7:1",name="echo"} 0
cnactor_callback_queued{id="7:2",name="kernel-only"} 0
cnactor_callback_queued{id="7:3",name="flaky"} 0
cnactor_callback_queued{id="4294967295:4294967295",name="connector"} 0
# HELP cnactor_callback_up 1 while the callback's handler runs, 0 while it waits for a restart or is stopped.
# TYPE cnactor_callback_up gauge
cnactor_callback_up{id="7:1",name="echo"} 1
cnactor_callback_up{id="7:2",name="kernel-only"} 1
cnactor_callback_up{id="7:3",name="flaky"} 1
cnactor_callback_up{id="4294967295:4294967295",name="connector"} 1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(callbacks),
		"cnactor_callback_received_total", "cnactor_callback_handled_total", "cnactor_callback_failed_total",
		"cnactor_callback_rejected_total", "cnactor_callback_restarts_total", "cnactor_callback_queued",
		"cnactor_callback_mailbox_capacity", "cnactor_callback_up"); err != nil {
		t.Error(err)
	}

	const reader = `
# HELP cnactor_reader_datagrams_total Datagrams read from the connector socket.
# TYPE cnactor_reader_datagrams_total counter
cnactor_reader_datagrams_total 9
# HELP cnactor_reader_messages_total Connector messages decoded.
# TYPE cnactor_reader_messages_total counter
cnactor_reader_messages_total 9
# HELP cnactor_reader_rejected_total Messages refused by a callback's sender policy.
# TYPE cnactor_reader_rejected_total counter
cnactor_reader_rejected_total 1
# HELP cnactor_reader_unknown_total Messages for ids with no callback.
# TYPE cnactor_reader_unknown_total counter
cnactor_reader_unknown_total 2
# HELP cnactor_reader_malformed_total Datagrams rejected by the decoder.
# TYPE cnactor_reader_malformed_total counter
cnactor_reader_malformed_total 0
# HELP cnactor_reader_kernel_drops_total Datagrams the kernel dropped because the socket's receive queue was full.
# TYPE cnactor_reader_kernel_drops_total counter
cnactor_reader_kernel_drops_total 0
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(reader),
		"cnactor_reader_datagrams_total", "cnactor_reader_messages_total", "cnactor_reader_rejected_total",
		"cnactor_reader_unknown_total", "cnactor_reader_malformed_total", "cnactor_reader_kernel_drops_total"); err != nil {
		t.Error(err)
	}

	// The client's requester: one exchange, answered, its RTT in the histogram.
	ccol := metrics.NewCollector(cc)
	const requester = `
# HELP cnactor_requester_in_flight Requests waiting for their reply.
# TYPE cnactor_requester_in_flight gauge
cnactor_requester_in_flight 0
# HELP cnactor_requester_replies_total Replies delivered to their requests.
# TYPE cnactor_requester_replies_total counter
cnactor_requester_replies_total 1
# HELP cnactor_requester_requests_total Request/reply exchanges started.
# TYPE cnactor_requester_requests_total counter
cnactor_requester_requests_total 1
# HELP cnactor_requester_timeouts_total Exchanges that ended without a reply.
# TYPE cnactor_requester_timeouts_total counter
cnactor_requester_timeouts_total 0
# HELP cnactor_requester_retries_total Requests sent again after a wait ran out.
# TYPE cnactor_requester_retries_total counter
cnactor_requester_retries_total 0
`
	if err := testutil.CollectAndCompare(ccol, strings.NewReader(requester),
		"cnactor_requester_in_flight", "cnactor_requester_replies_total", "cnactor_requester_requests_total",
		"cnactor_requester_timeouts_total", "cnactor_requester_retries_total"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ccol)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "cnactor_requester_rtt_seconds" {
			continue
		}
		found = true
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 1 || h.GetSampleSum() != r.RTT.Seconds() {
			t.Errorf("rtt histogram count=%d sum=%g, want 1 and %g", h.GetSampleCount(), h.GetSampleSum(), r.RTT.Seconds())
		}
		for _, b := range h.GetBucket() {
			want := uint64(0)
			if r.RTT.Seconds() <= b.GetUpperBound() {
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%g has %d, want %d (rtt %v)", b.GetUpperBound(), b.GetCumulativeCount(), want, r.RTT)
			}
		}
	}
	if !found {
		t.Error("no RTT histogram")
	}
	if n := testutil.CollectAndCount(col, "cnactor_requester_rtt_seconds"); n != 1 {
		t.Errorf("%d RTT histograms", n)
	}

	// A removed callback's series go away.
	if err := c.DelCallback(kernelOnly); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(col, "cnactor_callback_received_total"); n != 3 {
		t.Errorf("%d callback series after a removal, want 3", n)
	}
}

// TestMetricsPedantic: the collector's output is consistent with what it
// describes.
func TestMetricsPedantic(t *testing.T) {
	c, _ := conntest.New(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(c))
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestHealthHandler(t *testing.T) {
	get := func(h http.Handler) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	c, net := conntest.New(t, cnactor.WithTopPolicy(cnactor.FailConnector),
		cnactor.WithRootSupervisor(supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}, Backoff: supervisor.NoBackoff()}))
	h := metrics.HealthHandler(c)
	if code, body := get(h); code != 200 || body != "ok\n" {
		t.Errorf("running: %d %q", code, body)
	}
	// Panics beyond the root's intensity fail the connector.
	id := transport.CbID{Idx: 7, Val: 1}
	if err := conntest.AddByName(c, id, "flaky", "flaky", handlers.Settings{}); err != nil {
		t.Fatal(err)
	}
	peer := conntest.DialPeer(t, net)
	for i := range 3 {
		conntest.SendTo(t, peer, c, id, uint32(i+1), "panic")
	}
	select {
	case <-c.Done():
	case <-time.After(conntest.WaitTimeout):
		t.Fatal("the connector did not fail")
	}
	if code, body := get(h); code != 503 || !strings.HasPrefix(body, "failed: ") {
		t.Errorf("failed: %d %q", code, body)
	}

	c2, _ := conntest.New(t)
	c2.Close(context.Background())
	if code, body := get(metrics.HealthHandler(c2)); code != 503 || body != "closed\n" {
		t.Errorf("closed: %d %q", code, body)
	}
}

// The flow-control counters of a callback that held the reader and shed.
func TestMetricsFlowControl(t *testing.T) {
	t.Parallel()
	c, net := conntest.New(t)
	peer := conntest.DialPeer(t, net)
	id := transport.CbID{Idx: 0x7803, Val: 1}
	stuck := conntest.NewGated()
	defer stuck.Open()
	if err := c.AddCallback(id, "stuck", stuck, cnactor.WithMailbox(2, cnactor.Backpressure),
		cnactor.WithStallTimeout(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	conntest.SendTo(t, peer, c, id, 0, "first")
	<-stuck.Entered
	for i := range uint32(10) {
		conntest.SendTo(t, peer, c, id, i+1, "more")
	}
	ctest.WaitFor(t, "every message routed", func() bool { return conntest.Info(t, c, id).Received == 11 })
	// 2 fit; the third held the reader 20 ms and began the shedding of 9.
	const want = `
# HELP cnactor_callback_shed_total Messages the callback shed while draining after a stall (part of dropped).
# TYPE cnactor_callback_shed_total counter
cnactor_callback_shed_total{id="4294967295:4294967295",name="connector"} 0
cnactor_callback_shed_total{id="30723:1",name="stuck"} 9
# HELP cnactor_callback_sheddings_total Holds of the reader that ran past the callback's stall timeout.
# TYPE cnactor_callback_sheddings_total counter
cnactor_callback_sheddings_total{id="4294967295:4294967295",name="connector"} 0
cnactor_callback_sheddings_total{id="30723:1",name="stuck"} 1
# HELP cnactor_callback_stalls_total Times the callback's full mailbox held the socket-reader (flow control).
# TYPE cnactor_callback_stalls_total counter
cnactor_callback_stalls_total{id="4294967295:4294967295",name="connector"} 0
cnactor_callback_stalls_total{id="30723:1",name="stuck"} 1
`
	col := metrics.NewCollector(c)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"cnactor_callback_shed_total", "cnactor_callback_sheddings_total", "cnactor_callback_stalls_total"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cnactor_callback_stalled_seconds_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); m.GetLabel()[0].GetValue() == "30723:1" && v < 0.02 {
				t.Errorf("stalled %v s, want at least the 20 ms stall timeout", v)
			}
		}
	}
}
