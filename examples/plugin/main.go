// Command plugin runs a cnactor connector from a configuration file whose
// handlers include a plugin: examples/plugin/upper, a handler package in its
// own folder that registers itself under the name "upper" when imported.
// The blank import below is all it takes; the configuration picks the
// handler by name.
//
//	go run ./examples/plugin -config examples/plugin/config.yaml -metrics 127.0.0.1:9109
//
// SIGHUP reloads the file (by difference); SIGTERM or ^C stops.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cnactor/cnactor"
	"github.com/cnactor/cnactor/config"
	_ "github.com/cnactor/cnactor/examples/plugin/upper" // registers "upper"
	"github.com/cnactor/cnactor/handlers"
	"github.com/cnactor/cnactor/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	file := flag.String("config", "examples/plugin/config.yaml", "configuration file")
	metricsAddr := flag.String("metrics", "", "serve /metrics and /healthz on this address")
	flag.Parse()

	cfg, err := config.Load(*file)
	if err != nil {
		log.Fatal(err) // names the file, the line and the field
	}
	c, err := cnactor.New(cfg.Options()...)
	if err != nil {
		log.Fatal(err)
	}
	applied, changes, err := config.Apply(c, cfg, handlers.Env{})
	if err != nil {
		c.Close(context.Background())
		log.Fatal(err)
	}
	log.Printf("connector port %d; %s: %s", c.Port(), *file, changes)

	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.NewCollector(c))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", metrics.HealthHandler(c))
		go func() { log.Print(http.ListenAndServe(*metricsAddr, mux)) }()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for {
		select {
		case <-hup:
			next, err := config.Load(*file)
			if err == nil {
				changes, err = applied.Reload(next)
			}
			if err != nil {
				log.Printf("reload: %v (the running configuration stays)", err)
			} else {
				log.Printf("reload: %s", changes)
			}
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Close(cctx); err != nil {
				log.Fatal(err)
			}
			return
		}
	}
}
