package gatehouse

import (
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are Gatehouse's Prometheus metrics. Labels never carry user data: no paths
// beyond route names, no subjects, no session handles, no addresses.
type metrics struct {
	registry      *prometheus.Registry // nil when the embedder passed its own Registerer
	requests      *prometheus.HistogramVec
	proxy         *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	loginFailures *prometheus.CounterVec
	sessions      *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	lockWait      prometheus.Histogram
	clientTokens  *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	backchannel   *prometheus.CounterVec
	provider      *prometheus.HistogramVec
	storeOps      *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
	connRefused   *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	audit         *prometheus.CounterVec
	tunnels       prometheus.Gauge
	tunnelsClosed *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	reloadOK      prometheus.Gauge
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// newMetrics registers the metrics on reg (a new private registry when nil). gauges
// are the metrics computed when scraped (active sessions, readiness); nil in tests.
func newMetrics(reg prometheus.Registerer, gauges ...prometheus.Collector) *metrics {
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
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)).(*prometheus.HistogramVec)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)).(*prometheus.CounterVec)
	}
	m.requests = histogram("gatehouse_http_requests_seconds", "Requests on the public listener by kind (bff, auth, route, frontend, invalid, none), method and status.", "kind", "method", "status")
	m.proxy = histogram("gatehouse_proxy_request_seconds", "Proxied requests by route, method and status class (2xx, 4xx, …) sent to the browser.", "route", "method", "code")
	m.logins = counter("gatehouse_logins_total", "Login flows by outcome: started, completed, refused (by the provider or user), rejected (bad callback), failed.", "outcome")
	m.loginFailures = counter("gatehouse_login_failures_total", "Logins that did not complete, by reason (the audit log's login_failed reason).", "reason")
	m.sessions = counter("gatehouse_sessions_total", "Sessions created and ended, by event.", "event")
	m.refreshes = counter("gatehouse_token_refreshes_total", "Access token refreshes and token exchanges by outcome: ok, refused (session ended), refused_audience, exchanged, exchange_refused (the provider would not exchange for a route), error (provider unavailable), store_unavailable (the session's lease not granted in time, or the store down), not_needed (another request refreshed first).", "outcome")
	m.lockWait = f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_refresh_lock_wait_seconds",
		Help: "Time spent waiting for a session's refresh lock (held by another request or replica).", Buckets: latencyBuckets})).(prometheus.Histogram)
	m.clientTokens = counter("gatehouse_client_credentials_total", "Client-credentials token requests by outcome.", "outcome")
	m.revocations = counter("gatehouse_token_revocations_total", "Token revocations at logout by outcome.", "outcome")
	m.backchannel = counter("gatehouse_backchannel_logouts_total", "Back-channel logout requests by outcome.", "outcome")
	m.provider = histogram("gatehouse_provider_request_seconds", "Requests to the identity provider by endpoint (discovery, jwks, token, userinfo, revocation, other) and status class, or error.", "endpoint", "code")
	m.storeOps = histogram("gatehouse_store_operation_seconds", "Session store operations by kind.", "op")
	m.storeErrors = counter("gatehouse_store_errors_total", "Session store operations that failed (not counting a missing key), by kind.", "op")
	m.connRefused = counter("gatehouse_connections_refused_total", "Connections closed at accept by Gateway.LimitListener, by reason (client_cap: the client network held server.max_connections_per_client).", "reason")
	m.connRefused.WithLabelValues("client_cap")
	m.rateLimited = counter("gatehouse_rate_limited_total", "Requests refused by a rate limit, by endpoint (login, callback, backchannel, admin, sessions), or login_flows: logins refused because session.max_pending_flows were in progress.", "endpoint")
	m.audit = counter("gatehouse_audit_events_total", "Audit events written, by event.", "event")
	for _, e := range auditEvents {
		m.audit.WithLabelValues(e)
	}
	m.tunnels = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_tunnels_open",
		Help: "WebSockets and server-sent event streams proxied for a session, open now."})).(prometheus.Gauge)
	m.tunnelsClosed = counter("gatehouse_tunnels_closed_total", "WebSockets and event streams closed by Gatehouse because their session ended (session_ended), expired (session_expired) or could not renew its access token (token_expired).", "reason")
	for _, r := range tunnelReasons() {
		m.tunnelsClosed.WithLabelValues(r)
	}
	m.reloads = counter("gatehouse_config_reloads_total", "Configuration reloads (SIGHUP, a changed file, Gateway.Reload) by outcome: ok, or failed (the running configuration stays).", "outcome")
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.reloadOK = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_config_last_reload_success",
		Help: "1 when the last configuration reload succeeded (or none was tried), 0 when it failed and the previous configuration runs."})).(prometheus.Gauge)
	m.reloadOK.Set(1)
	for _, g := range gauges {
		f(g)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_build_info", Help: "Always 1; the labels say which version runs.",
		ConstLabels: prometheus.Labels{"version": Version, "go_version": runtime.Version()}}, func() float64 { return 1 }))
	return m
}

func (m *metrics) observeRequest(kind, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(kind, methodLabel(method), statusLabel(status)).Observe(d.Seconds())
}

// statusTexts are the status codes as label values, made once.
var statusTexts = func() (t [600]string) {
	for i := 100; i < 600; i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusLabel(status int) string {
	if status >= 100 && status < 600 {
		return statusTexts[status]
	}
	return strconv.Itoa(status)
}

func (m *metrics) observeProxy(route, method string, status int, d time.Duration) {
	m.proxy.WithLabelValues(route, methodLabel(method), statusClass(status)).Observe(d.Seconds())
}

func methodLabel(method string) string {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return method
	}
	return "other"
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(status int) string {
	if status >= 100 && status < 600 {
		return statusClasses[status/100-1]
	}
	return "other"
}

// metricNames lists the name of every metric Gatehouse registers (histograms by their
// base name), for checking the dashboards and alert rules in deploy/ against the code.
func metricNames() []string {
	rec := &recordingRegisterer{}
	newMetrics(rec, scrapeGauges(nil)...)
	return rec.names
}

type recordingRegisterer struct{ names []string }

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		// Desc has no accessor for its name; its String form is stable: Desc{fqName: "…", …}.
		s := d.String()
		if _, rest, ok := strings.Cut(s, `fqName: "`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok {
				r.names = append(r.names, name)
			}
		}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.Register(c)
	}
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return false }
