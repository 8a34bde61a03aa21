package metrics

import (
	"errors"

	"github.com/cnactor/cnactor"
	"net/http"

	"github.com/cnactor/cnactor/actors"
	"github.com/cnactor/cnactor/supervisor"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector of a connector's counters. It keeps
// none of its own: every scrape reads Connector.Stats, so the metrics are
// the counters the connector reports everywhere else. The callback
// metrics include the connector core's own callback (id
// "4294967295:4294967295", name "connector", as in the kernel), which
// serves peers' notification subscriptions.
//
// Metrics (namespace cnactor):
//
//	reader_datagrams_total, reader_bytes_total, reader_messages_total   what the socket delivered
//	reader_kernel_drops_total          datagrams the kernel dropped (full receive queue)
//	reader_overflows_total             receive-queue overflow episodes
//	reader_malformed_total             datagrams the decoder rejected
//	reader_rejected_total              messages refused by a sender policy
//	reader_unknown_total               messages for ids with no callback
//	reader_intercepted_total           replies taken by the requester
//	reader_receive_errors_total        failed receive calls
//	reader_route_panics_total          batches whose routing panicked (a bug)
//	reader_route_lost_total            their messages no handler got
//	callback_{received,handled,failed,dropped,rejected,restarts}_total{id,name}
//	callback_queued{id,name}           mailbox depth
//	callback_stalls_total{id,name}     times its full mailbox held the reader (flow control)
//	callback_stalled_seconds_total{id,name}  how long it held the reader, in all
//	callback_sheddings_total{id,name}  holds that ran past the stall timeout
//	callback_shed_total{id,name}       messages shed while it drained (part of dropped)
//	callback_mailbox_capacity{id,name}
//	callback_up{id,name}               1 running, 0 waiting for a restart or stopped
//	requester_in_flight
//	requester_{requests,replies,timeouts,retries,cancelled,failed,duplicates,late}_total
//	requester_rtt_seconds              histogram of reply round-trip times
//	control_{applied,malformed,rejected}_total, control_subscriptions
//	callbacks_refused_total            AddCallback past WithMaxCallbacks
type Collector struct {
	c *cnactor.Connector
}

// NewCollector returns the collector of c's metrics; register it with a
// prometheus.Registerer (wrap that with prometheus.WrapRegistererWith to
// tell several connectors apart).
func NewCollector(c *cnactor.Connector) *Collector { return &Collector{c: c} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("cnactor", "", name), help, labels, nil)
}

var (
	cbLabels = []string{"id", "name"}

	readerDescs = struct {
		datagrams, bytes, messages, kernelDrops, overflows, malformed, rejected, unknown, intercepted, receiveErrors,
		routePanics, routeLost, loopMoves *prometheus.Desc
	}{
		desc("reader_datagrams_total", "Datagrams read from the connector socket."),
		desc("reader_bytes_total", "Bytes read from the connector socket."),
		desc("reader_messages_total", "Connector messages decoded."),
		desc("reader_kernel_drops_total", "Datagrams the kernel dropped because the socket's receive queue was full."),
		desc("reader_overflows_total", "Receive-queue overflow episodes (ENOBUFS) reported by the kernel."),
		desc("reader_malformed_total", "Datagrams rejected by the decoder."),
		desc("reader_rejected_total", "Messages refused by a callback's sender policy."),
		desc("reader_unknown_total", "Messages for ids with no callback."),
		desc("reader_intercepted_total", "Messages consumed by the requester as replies."),
		desc("reader_receive_errors_total", "Failed receive calls on the connector socket."),
		desc("reader_route_panics_total", "Batches whose routing panicked (a bug in cnactor)."),
		desc("reader_route_lost_total", "Messages of batches whose routing panicked that no handler got."),
		desc("reader_loop_moves_total", "Times a handler run on the receive loop kept it for 5 ms and the loop moved to a new goroutine."),
	}

	cbDescs = struct {
		received, handled, failed, dropped, rejected, restarts, queued, capacity, up,
		stalls, stalled, sheddings, shed *prometheus.Desc
	}{
		desc("callback_received_total", "Messages routed to the callback.", cbLabels...),
		desc("callback_handled_total", "Messages the callback's handler processed without error.", cbLabels...),
		desc("callback_failed_total", "Messages whose handling failed (an error or a panic).", cbLabels...),
		desc("callback_dropped_total", "Messages dropped by the callback's mailbox (overflow or stop).", cbLabels...),
		desc("callback_rejected_total", "Messages refused by the callback's sender policy.", cbLabels...),
		desc("callback_restarts_total", "Restarts of the callback's handler by its supervisor.", cbLabels...),
		desc("callback_queued", "Messages waiting in the callback's mailbox.", cbLabels...),
		desc("callback_mailbox_capacity", "Capacity of the callback's mailbox.", cbLabels...),
		desc("callback_up", "1 while the callback's handler runs, 0 while it waits for a restart or is stopped.", cbLabels...),
		desc("callback_stalls_total", "Times the callback's full mailbox held the socket-reader (flow control).", cbLabels...),
		desc("callback_stalled_seconds_total", "Time the callback's full mailbox held the socket-reader.", cbLabels...),
		desc("callback_sheddings_total", "Holds of the reader that ran past the callback's stall timeout.", cbLabels...),
		desc("callback_shed_total", "Messages the callback shed while draining after a stall (part of dropped).", cbLabels...),
	}

	reqDescs = struct {
		inFlight, requests, replies, timeouts, retries, cancelled, failed, duplicates, late, rtt *prometheus.Desc
	}{
		desc("requester_in_flight", "Requests waiting for their reply."),
		desc("requester_requests_total", "Request/reply exchanges started."),
		desc("requester_replies_total", "Replies delivered to their requests."),
		desc("requester_timeouts_total", "Exchanges that ended without a reply."),
		desc("requester_retries_total", "Requests sent again after a wait ran out."),
		desc("requester_cancelled_total", "Exchanges ended by their context."),
		desc("requester_failed_total", "Exchanges ended by a send error or by Close."),
		desc("requester_duplicates_total", "Further replies to an exchange already answered."),
		desc("requester_late_total", "Replies to an exchange that had timed out or was cancelled."),
		desc("requester_rtt_seconds", "Round-trip time of delivered replies, from the first send."),
	}

	controlDescs = struct{ applied, malformed, rejected, subscriptions *prometheus.Desc }{
		desc("control_applied_total", "Notification control messages applied."),
		desc("control_malformed_total", "Notification control messages ignored as malformed."),
		desc("control_rejected_total", "Notification subscriptions refused: over the total or per-subscription bound."),
		desc("control_subscriptions", "Notification subscriptions in force."),
	}

	callbacksRefusedDesc = desc("callbacks_refused_total", "AddCallback refusals past the connector's bound on callbacks.")
)

// rttBounds are actors.RTTBuckets() in seconds.
var rttBounds = func() []float64 {
	b := make([]float64, actors.NumRTTBuckets)
	for i, d := range actors.RTTBuckets() {
		b[i] = d.Seconds()
	}
	return b
}()

// Describe sends every metric's description.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		readerDescs.datagrams, readerDescs.bytes, readerDescs.messages, readerDescs.kernelDrops, readerDescs.overflows,
		readerDescs.malformed, readerDescs.rejected, readerDescs.unknown, readerDescs.intercepted, readerDescs.receiveErrors,
		readerDescs.routePanics, readerDescs.routeLost, readerDescs.loopMoves,
		cbDescs.received, cbDescs.handled, cbDescs.failed, cbDescs.dropped, cbDescs.rejected, cbDescs.restarts,
		cbDescs.queued, cbDescs.capacity, cbDescs.up, cbDescs.stalls, cbDescs.stalled, cbDescs.sheddings, cbDescs.shed,
		reqDescs.inFlight, reqDescs.requests, reqDescs.replies, reqDescs.timeouts, reqDescs.retries, reqDescs.cancelled,
		reqDescs.failed, reqDescs.duplicates, reqDescs.late, reqDescs.rtt,
		controlDescs.applied, controlDescs.malformed, controlDescs.rejected, controlDescs.subscriptions,
		callbacksRefusedDesc,
	} {
		ch <- d
	}
}

// Collect reads the connector's Stats once and sends every metric.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := s.Reader
	counter(readerDescs.datagrams, r.Datagrams)
	counter(readerDescs.bytes, r.Bytes)
	counter(readerDescs.messages, r.Messages)
	counter(readerDescs.kernelDrops, r.KernelDrops)
	counter(readerDescs.overflows, r.Overflows)
	counter(readerDescs.malformed, r.Malformed)
	counter(readerDescs.rejected, r.Rejected)
	counter(readerDescs.unknown, r.Unknown)
	counter(readerDescs.intercepted, r.Intercepted)
	counter(readerDescs.receiveErrors, r.ReceiveErrors)
	counter(readerDescs.routePanics, r.RoutePanics)
	counter(readerDescs.routeLost, r.RouteLost)
	counter(readerDescs.loopMoves, r.LoopMoves)

	for _, cb := range s.Callbacks {
		l := []string{cb.ID.String(), cb.Name}
		counter(cbDescs.received, cb.Received, l...)
		counter(cbDescs.handled, cb.Handled, l...)
		counter(cbDescs.failed, cb.Failed, l...)
		counter(cbDescs.dropped, cb.Dropped, l...)
		counter(cbDescs.rejected, cb.Rejected, l...)
		counter(cbDescs.restarts, cb.Restarts, l...)
		gauge(cbDescs.queued, float64(cb.Queued), l...)
		gauge(cbDescs.capacity, float64(cb.Mailbox), l...)
		up := 0.0
		if cb.State == supervisor.Running {
			up = 1
		}
		gauge(cbDescs.up, up, l...)
		counter(cbDescs.stalls, cb.Stalls, l...)
		ch <- prometheus.MustNewConstMetric(cbDescs.stalled, prometheus.CounterValue, cb.Stalled.Seconds(), l...)
		counter(cbDescs.sheddings, cb.Sheddings, l...)
		counter(cbDescs.shed, cb.Shed, l...)
	}

	q := s.Requester
	gauge(reqDescs.inFlight, float64(q.InFlight))
	counter(reqDescs.requests, q.Requests)
	counter(reqDescs.replies, q.Replies)
	counter(reqDescs.timeouts, q.Timeouts)
	counter(reqDescs.retries, q.Retries)
	counter(reqDescs.cancelled, q.Cancelled)
	counter(reqDescs.failed, q.Failed)
	counter(reqDescs.duplicates, q.Duplicates)
	counter(reqDescs.late, q.Late)
	buckets := make(map[float64]uint64, actors.NumRTTBuckets)
	var cum uint64
	for i, b := range rttBounds {
		cum += q.RTT.Counts[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(reqDescs.rtt, q.RTT.Count(), q.RTT.Sum.Seconds(), buckets)

	counter(controlDescs.applied, s.Control.Applied)
	counter(controlDescs.malformed, s.Control.Malformed)
	counter(controlDescs.rejected, s.Control.Rejected)
	gauge(controlDescs.subscriptions, float64(s.Control.Subscriptions))
	counter(callbacksRefusedDesc, s.CallbacksRefused)
}

// HealthHandler answers 200 "ok" while c serves, and 503 with the reason
// once it does not (Connector.Health): a failure escalated past the root
// supervisor under FailConnector, or c closed.
func HealthHandler(c *cnactor.Connector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch err := c.Health(); {
		case err == nil:
			w.Write([]byte("ok\n"))
		case errors.Is(err, cnactor.ErrClosed):
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("closed\n"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("failed: " + err.Error() + "\n"))
		}
	})
}
