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

// observedStore times every store operation for gatehouse_store_operation_seconds and
// counts failures. It offers every optional capability; where the store lacks one it
// behaves exactly as the session Manager does without it (a lease that only the
// in-process lock backs, Get for GetFresh, Get-then-Set for Add, Set and Delete without
// indexes), so wrapping changes nothing but the metrics.
type observedStore struct {
	s      session.Store
	m      *metrics
	timers map[string]prometheus.Observer // by operation, resolved once: no label work per call
}

var storeOps = []string{"get", "get_fresh", "set", "delete", "add", "lock", "set_indexed", "delete_indexed", "members", "ping"}

func newObservedStore(s session.Store, m *metrics) *observedStore {
	o := &observedStore{s: s, m: m, timers: map[string]prometheus.Observer{}}
	for _, op := range storeOps {
		o.timers[op] = m.storeOps.WithLabelValues(op)
	}
	return o
}

var (
	_ session.Store   = (*observedStore)(nil)
	_ session.Adder   = (*observedStore)(nil)
	_ session.Locker  = (*observedStore)(nil)
	_ session.Indexer = (*observedStore)(nil)
	_ session.Pinger  = (*observedStore)(nil)
	_ session.Fresher = (*observedStore)(nil)
)

func (o *observedStore) done(op string, start time.Time, err error) {
	o.timers[op].Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, context.Canceled) {
		o.m.storeErrors.WithLabelValues(op).Inc()
	}
}

func (o *observedStore) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	b, err := o.s.Get(ctx, key)
	o.done("get", start, err)
	return b, err
}

func (o *observedStore) GetFresh(ctx context.Context, key string) ([]byte, error) {
	f, ok := o.s.(session.Fresher)
	if !ok {
		return o.Get(ctx, key)
	}
	start := time.Now()
	b, err := f.GetFresh(ctx, key)
	o.done("get_fresh", start, err)
	return b, err
}

func (o *observedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := o.s.Set(ctx, key, value, ttl)
	o.done("set", start, err)
	return err
}

func (o *observedStore) Delete(ctx context.Context, key string) (bool, error) {
	start := time.Now()
	ok, err := o.s.Delete(ctx, key)
	o.done("delete", start, err)
	return ok, err
}

func (o *observedStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	a, ok := o.s.(session.Adder)
	if !ok {
		// What the gateway did before it had Adder: good enough for jti replay checks
		// within one process, which is all a store without Add can offer.
		if _, err := o.Get(ctx, key); err == nil {
			return false, nil
		} else if !errors.Is(err, session.ErrNotFound) {
			return false, err
		}
		return true, o.Set(ctx, key, value, ttl)
	}
	start := time.Now()
	added, err := a.Add(ctx, key, value, ttl)
	o.done("add", start, err)
	return added, err
}

func (o *observedStore) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	l, ok := o.s.(session.Locker)
	if !ok {
		return func() {}, nil // the Manager's in-process lock is all there is
	}
	start := time.Now()
	release, err := l.Lock(ctx, name, ttl)
	o.done("lock", start, err)
	return release, err
}

func (o *observedStore) SetIndexed(ctx context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	ix, ok := o.s.(session.Indexer)
	if !ok {
		return o.Set(ctx, key, value, ttl)
	}
	start := time.Now()
	err := ix.SetIndexed(ctx, key, value, ttl, indexes...)
	o.done("set_indexed", start, err)
	return err
}

func (o *observedStore) DeleteIndexed(ctx context.Context, key string, indexes ...string) (bool, error) {
	ix, ok := o.s.(session.Indexer)
	if !ok {
		return o.Delete(ctx, key)
	}
	start := time.Now()
	existed, err := ix.DeleteIndexed(ctx, key, indexes...)
	o.done("delete_indexed", start, err)
	return existed, err
}

func (o *observedStore) Members(ctx context.Context, index string) ([]string, error) {
	ix, ok := o.s.(session.Indexer)
	if !ok {
		return nil, session.ErrNoIndex
	}
	start := time.Now()
	keys, err := ix.Members(ctx, index)
	o.done("members", start, err)
	return keys, err
}

func (o *observedStore) Ping(ctx context.Context) error {
	p, ok := o.s.(session.Pinger)
	if !ok {
		return nil
	}
	start := time.Now()
	err := p.Ping(ctx)
	o.done("ping", start, err)
	return err
}

// sessionCounter is the optional store capability behind gatehouse_active_sessions.
type sessionCounter interface {
	CountSessions(ctx context.Context) (int, error)
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
					c, ok := g.store.(sessionCounter)
					if !ok {
						return -1
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					n, err := c.CountSessions(ctx)
					if err != nil {
						return -1
					}
					return float64(n)
				})
			}),
		gauge("gatehouse_ready", readyHelp, prometheus.Labels{"component": "provider"}, func() float64 {
			if ok, _ := g.idp.Ready(); ok {
				return 1
			}
			return 0
		}),
		gauge("gatehouse_ready", readyHelp, prometheus.Labels{"component": "store"}, func() float64 {
			return storeUp.get(5*time.Second, func() float64 {
				p, ok := g.store.(session.Pinger)
				if !ok {
					return 1
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if p.Ping(ctx) != nil {
					return 0
				}
				return 1
			})
		}),
	}
}
