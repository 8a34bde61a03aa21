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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log.Default(), nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends; ready, if not nil, learns the connector's
// port once the configuration is applied (for the test).
func run(ctx context.Context, args []string, logger *log.Logger, ready func(port uint32)) error {
	fs := flag.NewFlagSet("plugin", flag.ContinueOnError)
	file := fs.String("config", "examples/plugin/config.yaml", "configuration `FILE`")
	metricsAddr := fs.String("metrics", "", "serve /metrics and /healthz on this `HOST:PORT`")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg, err := config.Load(*file)
	if err != nil {
		return err // names the file, the line and the field
	}
	c, err := cnactor.New(cfg.Options()...)
	if err != nil {
		return err
	}
	applied, changes, err := config.Apply(c, cfg, handlers.Env{})
	if err != nil {
		c.Close(context.Background())
		return err
	}
	logger.Printf("connector port %d; %s: %s", c.Port(), *file, changes)
	if ready != nil {
		ready(c.Port())
	}

	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.NewCollector(c))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", metrics.HealthHandler(c))
		go func() { logger.Print(http.ListenAndServe(*metricsAddr, mux)) }()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			next, err := config.Load(*file)
			if err == nil {
				changes, err = applied.Reload(next)
			}
			if err != nil {
				logger.Printf("reload: %v (the running configuration stays)", err)
			} else {
				logger.Printf("reload: %s", changes)
			}
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c.Close(cctx)
		}
	}
}
