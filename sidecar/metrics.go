package sidecar

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redbandit/redbandit/model/store"
)

// metrics are the sidecar's Prometheus metrics, in a registry of its own.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec   // by endpoint and status
	latency  *prometheus.HistogramVec // by endpoint and status
	redis    *prometheus.HistogramVec // Redis calls, by operation
	updated  *prometheus.GaugeVec     // last write of each model, Unix seconds
	events   *prometheus.GaugeVec     // events folded into each model
	dead     *prometheus.GaugeVec     // events the trainers dead-lettered, per model

	produce       prometheus.Histogram // feedback produce latency
	produceErrors prometheus.Counter   // failed feedback produces
}

func newMetrics() *metrics {
	buckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redbandit_sidecar_requests_total", Help: "HTTP requests by endpoint and status.",
		}, []string{"endpoint", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "redbandit_sidecar_request_seconds", Help: "HTTP request latency by endpoint and status.", Buckets: buckets,
		}, []string{"endpoint", "status"}),
		redis: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "redbandit_sidecar_redis_seconds", Help: "Redis call latency by operation.", Buckets: buckets,
		}, []string{"op"}),
		updated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_model_updated_seconds", Help: "Time of the model's last write (Unix seconds); now minus this is its staleness.",
		}, []string{"model"}),
		events: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_model_events", Help: "Feedback events folded into the model (exactly once, from the model root).",
		}, []string{"model"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_model_dead_letters", Help: "Events the trainers sent to the dead-letter topic instead of the model (exactly once, from the model root).",
		}, []string{"model"}),
	}
	m.produce = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "redbandit_sidecar_produce_seconds", Help: "Time for Kafka to acknowledge the feedback of one request.", Buckets: buckets,
	})
	m.produceErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "redbandit_sidecar_produce_errors_total", Help: "Feedback requests Kafka did not acknowledge.",
	})
	m.registry.MustRegister(m.requests, m.latency, m.redis, m.updated, m.events, m.dead, m.produce, m.produceErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// model sets the gauges of a model from its metadata, as last read.
func (m *metrics) model(name string, meta store.Meta) {
	m.updated.WithLabelValues(name).Set(float64(meta.UpdatedMS) / 1000)
	m.events.WithLabelValues(name).Set(float64(meta.Events))
	m.dead.WithLabelValues(name).Set(float64(meta.Invalid))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
