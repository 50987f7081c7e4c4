package gatehouse

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-bff/gatehouse/session"
)

// storeObserver is the session Manager's Observe hook: it times every store operation
// for gatehouse_store_operation_seconds and counts failures (a missing key is an answer,
// and a canceled request nobody's fault).
func (m *metrics) storeObserver() func(op string, d time.Duration, err error) {
	timers := map[string]prometheus.Observer{} // resolved once: no label work per call
	for _, op := range session.Ops() {
		timers[op] = m.storeOps.WithLabelValues(op)
	}
	return func(op string, d time.Duration, err error) {
		timers[op].Observe(d.Seconds())
		if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, context.Canceled) {
			m.storeErrors.WithLabelValues(op).Inc()
		}
	}
}

// providerTransport times the requests to the identity provider by endpoint.
type providerTransport struct {
	base     http.RoundTripper
	m        *metrics
	endpoint func(*http.Request) string
}

func (t *providerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	code := "error"
	if err == nil {
		code = statusClass(resp.StatusCode)
	}
	t.m.provider.WithLabelValues(t.endpoint(r), code).Observe(time.Since(start).Seconds())
	return resp, err
}

// scrapeCache remembers a value computed at scrape time for a while, so that several
// Prometheus servers (or a fast scrape interval) do not each count the sessions.
type scrapeCache struct {
	mu    sync.Mutex
	at    time.Time
	value float64
}

func (c *scrapeCache) get(ttl time.Duration, compute func() float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > ttl {
		c.value, c.at = compute(), time.Now()
	}
	return c.value
}

// scrapeGauges are the gauges computed when scraped. g may be nil when only their
// descriptions are wanted (metricNames).
func scrapeGauges(g *Gateway) []prometheus.Collector {
	var sessions, storeUp scrapeCache
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	const readyHelp = "1 when the component is usable: provider metadata loaded, session store answering."
	return []prometheus.Collector{
		gauge("gatehouse_active_sessions", "Sessions in the session store (all replicas sharing it), counted at most every 15 s; -1 when the store cannot count.", nil,
			func() float64 {
				return sessions.get(15*time.Second, func() float64 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					n, err := g.sessions.CountSessions(ctx)
					if err != nil {
						return -1
					}
					return float64(n)
				})
			}),
		gauge("gatehouse_ready", readyHelp, prometheus.Labels{"component": "provider"}, func() float64 {
			if ok, _ := g.providersReady(); ok {
				return 1
			}
			return 0
		}),
		gauge("gatehouse_ready", readyHelp, prometheus.Labels{"component": "store"}, func() float64 {
			return storeUp.get(5*time.Second, func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if g.sessions.Ping(ctx) != nil {
					return 0
				}
				return 1
			})
		}),
	}
}
