package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/internal/ratelog"
	"github.com/cnactor/cnactor/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// metricsLimits bound what clients of the metrics server can hold: without
// them, idle keep-alive connections stayed open for ever (1,500 of them).
type metricsLimits struct {
	ReadTimeout  time.Duration // a request, headers and body
	WriteTimeout time.Duration // a response
	IdleTimeout  time.Duration // a keep-alive connection between requests
	MaxConns     int           // connections open at once; more are closed at once, counted
}

var defaultMetricsLimits = metricsLimits{
	ReadTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxConns: 64,
}

// serveMetrics serves /metrics and /healthz on addr until stop.
// Refused connections are logged to log, at most once per second.
func serveMetrics(c *cnactor.Connector, addr string, stderr io.Writer, log *zap.Logger, lim metricsLimits) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(c), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /healthz", metrics.HealthHandler(c))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: lim.ReadTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	ll := &limitListener{Listener: ln, sem: make(chan struct{}, max(lim.MaxConns, 1)), log: log,
		limit: ratelog.New(log, "metrics connection refused: at the connection limit")}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ll)
	}()
	fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		ll.limit.Close() // what is still suppressed
	}, nil
}

// limitListener admits at most cap(sem) connections at once; one more is
// closed as soon as it is accepted (rather than left in the backlog, where
// it would wait unseen), counted, and reported at most once per second.
type limitListener struct {
	net.Listener
	sem     chan struct{}
	log     *zap.Logger
	refused atomic.Uint64
	limit   *ratelog.Limiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
		}
		c.Close()
		n := l.refused.Add(1)
		if ok, sup := l.limit.Allow(); ok {
			l.log.Warn("metrics connection refused: at the connection limit", zap.Int("limit", cap(l.sem)),
				zap.Uint64("refused_total", n), zap.Int("suppressed", sup))
		}
	}
}

// limitConn gives its place back once, when the server closes it.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
