// Package metrics exposes a cnactor.Connector to Prometheus and to health
// checks. It keeps no counters of its own: every scrape reads
// Connector.Stats, the same counters that cnctl list, the loss notices and
// the tests use, so the numbers agree everywhere.
//
//	Connector.Stats ──► Collector.Collect ──► prometheus.Registry ──► /metrics
//	Connector.Health ──► HealthHandler ──► /healthz (200 ok, 503 failed or closed)
package metrics
