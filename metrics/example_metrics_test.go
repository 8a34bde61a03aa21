package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/metrics"
	"github.com/cnactor/cnactor/transport"
	"github.com/cnactor/cnactor/transport/memory"
	"github.com/prometheus/client_golang/prometheus"
)

// A Collector registered in a Prometheus registry: every scrape reads the
// connector's Stats. Here a peer sends one message nobody handles and two
// that an echo callback answers; the scrape comes after Close, when the
// counters are final.
func ExampleNewCollector() {
	ctx := context.Background()
	net := memory.NewNetwork()
	conn, _ := net.Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(c))

	echo := transport.CbID{Idx: 7, Val: 1}
	c.AddCallback(echo, "echo", handlers.Echo())
	peer, _ := net.Dial()
	defer peer.Close()
	to := transport.Addr{Port: c.Port()}
	peer.Send(ctx, to, &transport.Message{ID: transport.CbID{Idx: 9, Val: 9}, Data: []byte("?")})
	peer.Send(ctx, to, &transport.Message{ID: echo, Data: []byte("a")})
	peer.Send(ctx, to, &transport.Message{ID: echo, Data: []byte("b")})
	b := transport.NewBatch(2)
	for replies := 0; replies < 2; replies += len(b.Messages) {
		peer.ReceiveBatch(ctx, b)
	}
	c.Close(ctx)

	families, _ := reg.Gather()
	for _, f := range families {
		switch f.GetName() {
		case "cnactor_reader_messages_total", "cnactor_reader_unknown_total", "cnactor_callback_handled_total":
			for _, m := range f.GetMetric() {
				labels := ""
				for _, l := range m.GetLabel() {
					labels += fmt.Sprintf(" %s=%q", l.GetName(), l.GetValue())
				}
				if labels == "" || strings.Contains(labels, `"echo"`) { // not the core's own callback
					fmt.Printf("%s%s %v\n", f.GetName(), labels, m.GetCounter().GetValue())
				}
			}
		}
	}
	// Output:
	// cnactor_callback_handled_total id="7:1" name="echo" 2
	// cnactor_reader_messages_total 3
	// cnactor_reader_unknown_total 1
}

// HealthHandler serves a health check: 200 while the connector serves, 503
// with the reason once it failed or closed.
func ExampleHealthHandler() {
	conn, _ := memory.NewNetwork().Dial()
	c, _ := cnactor.New(cnactor.WithTransport(conn))
	h := metrics.HealthHandler(c)

	check := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
		body, _ := io.ReadAll(w.Result().Body)
		fmt.Printf("%d %s\n", w.Code, strings.TrimSpace(string(body)))
	}
	check()
	c.Close(context.Background())
	check()
	// Output:
	// 200 ok
	// 503 closed
}
