package gatehouse

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are Gatehouse's Prometheus metrics. Labels never carry user data: no paths
// beyond route names, no subjects, no session handles.
type metrics struct {
	registry     *prometheus.Registry // nil when the embedder passed its own Registerer
	requests     *prometheus.HistogramVec
	upstream     *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	sessions     *prometheus.CounterVec
	refreshes    *prometheus.CounterVec
	clientTokens *prometheus.CounterVec
	revocations  *prometheus.CounterVec
	backchannel  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{}
	if reg == nil {
		m.registry = prometheus.NewRegistry()
		m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = m.registry
	}
	f := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				return are.ExistingCollector
			}
			panic(err)
		}
		return c
	}
	m.requests = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_http_requests_seconds",
		Help:    "Requests on the public listener by kind (bff, route, frontend), method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"kind", "method", "status"})).(*prometheus.HistogramVec)
	m.upstream = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_upstream_seconds",
		Help:    "Proxied requests by route and status sent to the browser.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "status"})).(*prometheus.HistogramVec)
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)).(*prometheus.CounterVec)
	}
	m.logins = counter("gatehouse_logins_total", "Login flows by outcome: started, completed, refused (by the provider or user), rejected (bad callback), failed.", "outcome")
	m.sessions = counter("gatehouse_sessions_total", "Sessions created and ended, by event.", "event")
	m.refreshes = counter("gatehouse_token_refreshes_total", "Access token refreshes by outcome: ok, refused (session ended), error (provider unavailable), not_needed (another request refreshed first).", "outcome")
	m.clientTokens = counter("gatehouse_client_credentials_total", "Client-credentials token requests by outcome.", "outcome")
	m.revocations = counter("gatehouse_token_revocations_total", "Token revocations at logout by outcome.", "outcome")
	m.backchannel = counter("gatehouse_backchannel_logouts_total", "Back-channel logout requests by outcome.", "outcome")
	return m
}

func (m *metrics) observeRequest(kind, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = "other"
	}
	m.requests.WithLabelValues(kind, method, strconv.Itoa(status)).Observe(d.Seconds())
}

func (m *metrics) observeUpstream(route string, status int, d time.Duration) {
	m.upstream.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}
