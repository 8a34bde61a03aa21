// Command embed is an HTTP service that embeds a cnactor connector and lets
// an operator add and remove callbacks at runtime by handler name:
//
//	go run ./examples/embed -addr 127.0.0.1:8080     # as root for user-to-user traffic
//
//	curl -X POST localhost:8080/callbacks -d '{"id":"100:1","name":"x","handler":"log","settings":{"format":"json"}}'
//	curl localhost:8080/callbacks                    # the connector's port and every callback with its counters
//	curl -X DELETE localhost:8080/callbacks/100:1
//	curl localhost:8080/metrics                      # Prometheus
//	curl localhost:8080/healthz
//
// A POST body is a callbacks entry of a configuration file in JSON (id,
// name, handler, settings, supervisor, restart, shutdown_timeout, mailbox,
// senders); errors name the field. SIGTERM or ^C shuts the service down
// cleanly: the HTTP server stops taking requests and finishes those in
// flight, then the connector lets every handler finish its queue, within a
// deadline.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/metrics"
	"github.com/cnactor/cnactor/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds the clean shutdown.
const shutdownTimeout = 10 * time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP address to serve the API on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := func(a net.Addr, port uint32) {
		log.Printf("connector port %d; API on http://%s (POST/GET /callbacks, DELETE /callbacks/{id}, /metrics, /healthz)", port, a)
	}
	if err := run(ctx, *addr, handlers.Env{}, ready); err != nil {
		log.Fatal(err)
	}
	log.Print("shut down cleanly")
}

// run serves the API on addr until ctx ends, then shuts down: the HTTP
// server first, then the connector, within shutdownTimeout. Handlers built
// by name print to env. ready, if set, is told the API's address and the
// connector's port once both serve.
func run(ctx context.Context, addr string, env handlers.Env, ready func(api net.Addr, port uint32), opts ...cnactor.Option) error {
	c, err := cnactor.New(opts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.Close(context.Background())
		return err
	}
	srv := &http.Server{Handler: newService(c, env), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr(), c.Port())
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	httpErr := srv.Shutdown(sctx)
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, httpErr, c.Close(sctx))
}

// service is the HTTP API over one connector.
type service struct {
	c   *cnactor.Connector
	env handlers.Env
	mux *http.ServeMux

	mu        sync.Mutex
	handlerOf map[transport.CbID]string
}

func newService(c *cnactor.Connector, env handlers.Env) *service {
	s := &service{c: c, env: env, mux: http.NewServeMux(), handlerOf: map[transport.CbID]string{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(c))
	s.mux.HandleFunc("POST /callbacks", s.add)
	s.mux.HandleFunc("GET /callbacks", s.list)
	s.mux.HandleFunc("DELETE /callbacks/{id}", s.del)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.Handle("GET /healthz", metrics.HealthHandler(c))
	return s
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// maxBody bounds a request body.
const maxBody = 64 << 10

func (s *service) add(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	cb, err := config.ParseCallback("", body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := cb.AddTo(s.c, s.env); err != nil {
		code := http.StatusBadRequest // bad settings, no such supervisor, ...
		switch {
		case errors.Is(err, cnactor.ErrDuplicate):
			code = http.StatusConflict
		case errors.Is(err, cnactor.ErrClosed):
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, err)
		return
	}
	s.mu.Lock()
	s.handlerOf[cb.ID] = cb.Handler
	s.mu.Unlock()
	w.Header().Set("Location", "/callbacks/"+cb.ID.String())
	writeJSON(w, http.StatusCreated, map[string]string{"id": cb.ID.String(), "name": cb.Name, "handler": cb.Handler})
}

func (s *service) del(w http.ResponseWriter, r *http.Request) {
	id, err := transport.ParseCbID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.c.DelCallback(id); err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, cnactor.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, cnactor.ErrCoreCallback):
			code = http.StatusForbidden
		case errors.Is(err, cnactor.ErrClosed):
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, err)
		return
	}
	s.mu.Lock()
	delete(s.handlerOf, id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// callbackJSON is one callback in GET /callbacks.
type callbackJSON struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Handler    string            `json:"handler"`
	Group      uint32            `json:"group"`
	Supervisor string            `json:"supervisor"`
	State      string            `json:"state"`
	Received   uint64            `json:"received"`
	Handled    uint64            `json:"handled"`
	Failed     uint64            `json:"failed"`
	Dropped    uint64            `json:"dropped"`
	Queued     uint64            `json:"queued"`
	Rejected   uint64            `json:"rejected"`
	Restarts   uint64            `json:"restarts"`
	Own        map[string]uint64 `json:"handler_stats,omitempty"`
}

// listJSON is GET /callbacks.
type listJSON struct {
	Port      uint32         `json:"port"`
	Callbacks []callbackJSON `json:"callbacks"`
}

func (s *service) list(w http.ResponseWriter, _ *http.Request) {
	st := s.c.Stats()
	out := listJSON{Port: st.Port, Callbacks: []callbackJSON{}}
	s.mu.Lock()
	for _, cb := range st.Callbacks {
		if cb.Core {
			continue // the connector core's own callback: not one the operator added
		}
		h := s.handlerOf[cb.ID]
		out.Callbacks = append(out.Callbacks, callbackJSON{
			ID: cb.ID.String(), Name: cb.Name, Handler: h, Group: cb.Group, Supervisor: cb.Supervisor,
			State: cb.State.String(), Received: cb.Received, Handled: cb.Handled, Failed: cb.Failed,
			Dropped: cb.Dropped, Queued: cb.Queued, Rejected: cb.Rejected, Restarts: cb.Restarts, Own: cb.Handler,
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}
