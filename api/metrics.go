package api

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tether/storage"
)

// Metrics are the Prometheus metrics of one server: its own registry, so
// tests and several servers in one process do not collide.
type Metrics struct {
	// StatsEvery is how long the store's counts are reused between
	// scrapes: counting handsets reads them all.
	StatsEvery time.Duration

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	events   *prometheus.CounterVec
	tx       *prometheus.HistogramVec
	syncs    *prometheus.CounterVec

	sinkDelivered, sinkFailed, sinkDead *prometheus.CounterVec
}

// NewMetrics returns the metrics, with Go runtime and process metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		StatsEvery: 15 * time.Second,
		reg:        prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tether_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_auth_events_total",
			Help: "Logins, refreshes, renewals, enrollments and logouts by outcome and reason (the audit events).",
		}, []string{"action", "outcome", "reason"}),
		tx: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tether_store_transaction_seconds", Help: "Store transaction time, reads and writes.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5},
		}, []string{"kind"}),
	}
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_directory_sync_total", Help: "Directory syncs this server ran, by result (success or failure).",
	}, []string{"result"})
	m.sinkDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_events_delivered_total", Help: "Audit events delivered to each sink by this server.",
	}, []string{"sink"})
	m.sinkFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_events_delivery_failures_total", Help: "Failed attempts to deliver to each sink (each retried, or given up as a dead letter).",
	}, []string{"sink"})
	m.sinkDead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_events_dead_lettered_total", Help: "Events each sink could not take, made dead letters by this server.",
	}, []string{"sink"})
	m.reg.MustRegister(m.requests, m.latency, m.events, m.tx, m.syncs, m.sinkDelivered, m.sinkFailed, m.sinkDead,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveEvent counts an audit event the auth service wrote.
func (m *Metrics) ObserveEvent(e storage.Event) {
	m.events.WithLabelValues(e.Action, e.Outcome, e.Reason).Inc()
	if e.Action == "directory.sync" {
		m.syncs.WithLabelValues(e.Outcome).Inc()
	}
}

// ObserveTx times a store transaction.
func (m *Metrics) ObserveTx(write bool, d time.Duration) {
	kind := "read"
	if write {
		kind = "write"
	}
	m.tx.WithLabelValues(kind).Observe(d.Seconds())
}

// observeRequest counts a request under its route pattern (never its raw
// path: ids would make every handset its own series).
func (m *Metrics) observeRequest(route, method string, status int, d time.Duration) {
	// Labels are kept: they must not share the request's reused memory.
	method = strings.Clone(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// storeStats is a collector of the store's counts, read at most every
// Metrics.StatsEvery.
type storeStats struct {
	every    time.Duration
	store    storage.Statser
	devices  *prometheus.Desc
	sessions *prometheus.Desc
	size     *prometheus.Desc

	mu   sync.Mutex
	last storage.Stats
	at   time.Time
}

func (c *storeStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.devices
	ch <- c.sessions
	ch <- c.size
}

func (c *storeStats) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.at.IsZero() || time.Since(c.at) >= c.every {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if st, err := c.store.Stats(ctx); err == nil {
			c.last, c.at = st, time.Now()
		}
		cancel()
	}
	st := c.last
	c.mu.Unlock()
	for _, status := range []storage.DeviceStatus{storage.DeviceEnrolled, storage.DeviceSuspended, storage.DeviceRetired} {
		ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(st.DevicesByStatus[status]), string(status))
	}
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.SizeBytes))
}

// register adds what only the running server knows: the store's counts
// and the password hash queue.
func (m *Metrics) register(s *server) {
	if st, ok := s.Store.(storage.Statser); ok {
		m.reg.MustRegister(&storeStats{
			every:    m.StatsEvery,
			store:    st,
			devices:  prometheus.NewDesc("tether_devices", "Handsets by status.", []string{"status"}, nil),
			sessions: prometheus.NewDesc("tether_sessions", "Sessions not revoked (expired ones until the sweeper removes them).", nil, nil),
			size:     prometheus.NewDesc("tether_store_size_bytes", "Size of the store file.", nil, nil),
		})
	}
	if s.Events != nil {
		m.reg.MustRegister(newSinkStats(m.StatsEvery, s.Events))
	}
	if s.Auth != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_password_hash_queue", Help: "Password hashes running or waiting.",
		}, func() float64 { return float64(s.Auth.HashQueueDepth()) }))
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_handsets_unreturned", Help: "Shared handsets whose last worker's session ran to its shift's deadline without a handover, at the last shift watch.",
		}, func() float64 { return float64(s.Auth.Unreturned()) }))
		if s.Auth.HasDirectory() {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "tether_directory_up", Help: "1 when the company directory answered the last time it was asked, else 0.",
			}, func() float64 {
				if up, _ := s.Auth.DirectoryUp(); up {
					return 1
				}
				return 0
			}))
		}
	}
}

func (m *Metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}
