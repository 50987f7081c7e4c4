package gatehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

// MultiConfig is a gateway of several apps (frontends), each a Config with its own Name,
// PublicURL, providers, routes, frontend, cookie and session timeouts. They share the
// session store, the rate limiter, the metrics and the loggers: a Config that leaves one
// of those unset gets the first app's (or, for all unset, one made for them all).
type MultiConfig struct {
	Frontends []Config
	// DefaultFrontend names the app that serves a request no app's public URL matches.
	// Default "": such a request is answered 404.
	DefaultFrontend string
}

// Multi serves several apps on one listener: a request goes to the app whose public URL
// has the request's host and the longest path prefix of its path. Each app is a Gateway
// of its own (reachable with Frontend), so an app's sessions open only in that app; they
// share one store, whose records say which app and provider each session belongs to.
type Multi struct {
	state    atomic.Pointer[multiState]
	store    session.Store
	ownStore bool
	registry *prometheus.Registry // nil when the apps' Config.Metrics was given
	log      *slog.Logger
	shared   Config     // the shared parts: Session.Store, RateLimiter, Metrics, loggers, tracer, transport
	mu       sync.Mutex // serialises Reload and Close
	closed   bool
}

type multiState struct {
	cfg  MultiConfig
	apps []*multiApp // longest path first within a host
	def  *multiApp
}

type multiApp struct {
	name string
	host string // lower-case host[:port] of the public URL
	path string // its path without the trailing slash: "" or "/admin"
	gw   *Gateway
}

// NewMulti validates every app's configuration and the conflicts between them, and
// returns the Multi serving them. It reports every problem at once, each app's prefixed
// with frontends[i].
func NewMulti(cfg MultiConfig) (*Multi, error) {
	m := &Multi{}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Frontends = slices.Clone(cfg.Frontends)
	m.share(cfg.Frontends)
	st := &multiState{cfg: cfg}
	for _, c := range cfg.Frontends {
		gw, err := New(c)
		if err != nil {
			for _, a := range st.apps {
				a.gw.Close()
			}
			m.closeStore()
			return nil, fmt.Errorf("frontends[%s]: %w", c.Name, err)
		}
		st.apps = append(st.apps, newMultiApp(c, gw))
	}
	st.index()
	m.state.Store(st)
	return m, nil
}

// share fills in what the apps share and each left unset: the store, the rate limiter,
// the metrics registry, the loggers, the tracer and the upstream transport. The first
// app's (or, unset in all, ones made here) are kept for apps added by Reload.
func (m *Multi) share(fs []Config) {
	sh := fs[0]
	for _, c := range fs {
		if sh.Session.Store == nil {
			sh.Session.Store = c.Session.Store
		}
	}
	if sh.Session.Store == nil {
		sh.Session.Store = memstore.New(memstore.Options{Now: sh.Now})
		m.ownStore = true
	}
	m.store = sh.Session.Store
	if sh.RateLimiter == nil {
		sh.RateLimiter = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: sh.Now})
	}
	if sh.Metrics == nil {
		m.registry = prometheus.NewRegistry()
		m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		sh.Metrics = m.registry
	}
	if sh.Logger == nil {
		sh.Logger = slog.Default()
	}
	m.log = sh.Logger
	m.shared = sh
	m.fill(fs, false)
}

// fill gives each app the shared parts: those it left unset, or (force, for Reload) all.
func (m *Multi) fill(fs []Config, force bool) {
	sh := m.shared
	for i := range fs {
		c := &fs[i]
		if force || c.Session.Store == nil {
			c.Session.Store = sh.Session.Store
		}
		if force || c.RateLimiter == nil {
			c.RateLimiter = sh.RateLimiter
		}
		if force || c.Metrics == nil {
			c.Metrics = sh.Metrics
		}
		if force || c.Logger == nil {
			c.Logger = sh.Logger
		}
		if force || c.AuditLogger == nil {
			c.AuditLogger = sh.AuditLogger
		}
		if force || c.AccessLogger == nil {
			c.AccessLogger = sh.AccessLogger
		}
		if force || c.TracerProvider == nil {
			c.TracerProvider = sh.TracerProvider
		}
		if force || c.UpstreamTransport == nil {
			c.UpstreamTransport = sh.UpstreamTransport
		}
	}
}

func newMultiApp(c Config, gw *Gateway) *multiApp {
	u, _ := url.Parse(c.PublicURL)
	return &multiApp{name: c.Name, host: strings.ToLower(u.Host), path: strings.TrimSuffix(u.Path, "/"), gw: gw}
}

// index orders the apps for matching and finds the default.
func (st *multiState) index() {
	slices.SortStableFunc(st.apps, func(a, b *multiApp) int { return len(b.path) - len(a.path) })
	st.def = nil
	for _, a := range st.apps {
		if a.name == st.cfg.DefaultFrontend && st.cfg.DefaultFrontend != "" {
			st.def = a
		}
	}
}

// Validate checks every app's Config and the conflicts between them: names, public URLs
// and cookie names. It returns every problem at once.
func (c MultiConfig) Validate() error {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	if len(c.Frontends) == 0 {
		bad("frontends", "lists no app")
	}
	names := map[string]int{}
	where := map[string]int{}   // host + path → index
	cookies := map[string]int{} // host + cookie name → index
	for i, f := range c.Frontends {
		field := fmt.Sprintf("frontends[%d]", i)
		switch j, dup := names[f.Name]; {
		case !validName(f.Name):
			bad(field+".name", "%q is not a name (letters, digits, - and _, at most 64)", f.Name)
		case dup:
			bad(field+".name", "%q names frontends[%d] too", f.Name, j)
		default:
			names[f.Name] = i
		}
		if err := f.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, field+"."+line)
			}
		}
		d := f.withDefaults()
		u, err := url.Parse(d.PublicURL)
		if err != nil || u.Host == "" {
			continue // reported by its Validate
		}
		host, p := strings.ToLower(u.Host), strings.TrimSuffix(u.Path, "/")
		if j, dup := where[host+p]; dup {
			bad(field+".public_url", "%q is the public URL of frontends[%d] too", d.PublicURL, j)
		} else {
			where[host+p] = i
		}
		if j, dup := cookies[host+"\x00"+d.Cookie.Name]; dup {
			bad(field+".cookie.name", "%q is frontends[%d]'s cookie on the same host: each app needs its own", d.Cookie.Name, j)
		} else {
			cookies[host+"\x00"+d.Cookie.Name] = i
		}
	}
	if c.DefaultFrontend != "" {
		if _, ok := names[c.DefaultFrontend]; !ok {
			bad("default_frontend", "%q is none of the frontends' names", c.DefaultFrontend)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// match is the app serving r, or nil.
func (st *multiState) match(r *http.Request) *multiApp {
	host := strings.ToLower(r.Host)
	p, ok := requestPath(r)
	if ok {
		for _, a := range st.apps {
			if a.host != host {
				continue
			}
			if a.path == "" || p == a.path || strings.HasPrefix(p, a.path+"/") {
				return a
			}
		}
	}
	return st.def
}

// errUnknownFrontend answers a request no app's public URL matches.
var errUnknownFrontend = &httpError{status: http.StatusNotFound, code: "not_found", reason: "unknown_frontend",
	title: "Not found", message: "No application is served at this address.", level: slog.LevelDebug}

// ServeHTTP passes r to the app whose public URL matches it.
func (m *Multi) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := m.state.Load()
	if a := st.match(r); a != nil {
		a.gw.ServeHTTP(w, r)
		return
	}
	st.apps[0].gw.fail(w, r, errUnknownFrontend)
}

// Frontend returns the app called name, or nil.
func (m *Multi) Frontend(name string) *Gateway {
	for _, a := range m.state.Load().apps {
		if a.name == name {
			return a.gw
		}
	}
	return nil
}

// Frontends names the apps served now.
func (m *Multi) Frontends() []string {
	var out []string
	for _, a := range m.state.Load().apps {
		out = append(out, a.name)
	}
	slices.Sort(out)
	return out
}

// Readiness is every app's, joined: a provider not ready in any app makes it not ready.
func (m *Multi) Readiness(ctx context.Context) Readiness {
	var rd Readiness
	var provider, reload []error
	for i, a := range m.state.Load().apps {
		ar := a.gw.Readiness(ctx)
		if ar.Provider != nil {
			provider = append(provider, fmt.Errorf("frontend %s: %w", a.name, ar.Provider))
		}
		if ar.Reload != nil {
			reload = append(reload, ar.Reload)
		}
		if i == 0 {
			rd.Store, rd.Draining = ar.Store, ar.Draining
		}
	}
	rd.Provider = errors.Join(provider...)
	if len(reload) > 0 {
		rd.Reload = reload[0]
	}
	return rd
}

// Ready reports whether every app can serve logins.
func (m *Multi) Ready(ctx context.Context) error {
	var errs []error
	for _, a := range m.state.Load().apps {
		if err := a.gw.Ready(ctx); err != nil {
			errs = append(errs, fmt.Errorf("frontend %s: %w", a.name, err))
		}
	}
	return errors.Join(errs...)
}

// LimitListener bounds the connections per client on ln (server.max_connections_per_client
// of the first app: the listener is shared).
func (m *Multi) LimitListener(ln net.Listener) net.Listener {
	return m.state.Load().apps[0].gw.LimitListener(ln)
}

// Drain makes every app refuse new sessions and answers not ready, then waits for the
// requests in flight (see Gateway.Drain).
func (m *Multi) Drain(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, a := range m.state.Load().apps {
		wg.Go(func() {
			if err := a.gw.Drain(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close closes every app and the store the Multi made.
func (m *Multi) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, a := range m.state.Load().apps {
		errs = append(errs, a.gw.Close())
	}
	errs = append(errs, m.closeStore())
	return errors.Join(errs...)
}

func (m *Multi) closeStore() error {
	if c, ok := m.store.(session.Closer); ok && m.ownStore {
		return c.Close()
	}
	return nil
}

// ReloadFailed records on every app that a configuration reload failed before Reload
// could be called (the file did not parse): /readyz and the metrics show it.
func (m *Multi) ReloadFailed(err error) {
	for _, a := range m.state.Load().apps {
		a.gw.ReloadFailed(err)
	}
}

// Reload applies cfg: apps of the same name are reloaded (Gateway.Reload: live fields
// change at once, others are listed in needRestart, prefixed with the app's name), new
// apps start, and removed apps stop serving. Sessions are not touched: those of a
// removed app stay in the store until they expire, and open again if it comes back.
// A failed reload changes nothing.
func (m *Multi) Reload(cfg MultiConfig) (needRestart []string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := cfg.Validate(); err != nil {
		for _, a := range m.state.Load().apps {
			a.gw.ReloadFailed(err)
		}
		return nil, err
	}
	old := m.state.Load()
	cfg.Frontends = slices.Clone(cfg.Frontends)
	// What the apps share stays what NewMulti gave them.
	m.fill(cfg.Frontends, true)
	next := &multiState{cfg: cfg}
	var started []*Gateway
	for _, c := range cfg.Frontends {
		var kept *multiApp
		for _, a := range old.apps {
			if a.name == c.Name && a.gw.config().PublicURL == c.PublicURL {
				kept = a
			}
		}
		if kept != nil {
			restart, err := kept.gw.Reload(c)
			if err != nil {
				for _, g := range started {
					g.Close()
				}
				return nil, fmt.Errorf("frontends[%s]: %w", c.Name, err)
			}
			for _, f := range restart {
				needRestart = append(needRestart, "frontends["+c.Name+"]."+f)
			}
			next.apps = append(next.apps, kept)
			continue
		}
		gw, err := New(c)
		if err != nil {
			for _, g := range started {
				g.Close()
			}
			return nil, fmt.Errorf("frontends[%s]: %w", c.Name, err)
		}
		started = append(started, gw)
		next.apps = append(next.apps, newMultiApp(c, gw))
	}
	next.index()
	m.state.Store(next)
	for _, a := range old.apps {
		if !slices.Contains(next.apps, a) {
			m.log.Info("frontend removed: its sessions stay in the store until they expire", "frontend", a.name)
			a.gw.Close()
		}
	}
	for _, g := range started {
		m.log.Info("frontend added", "frontend", g.name)
	}
	return needRestart, nil
}

// AdminHandler serves the admin listener for every app: the probes (ready when every
// app is), /metrics (shared), and the admin API, whose session lists hold every app's
// sessions with their frontend and provider (?frontend= narrows them to one app).
func (m *Multi) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	m.handleProbes(mux)
	if m.registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	}
	each := func(h func(g *Gateway, w http.ResponseWriter, r *http.Request) error) http.Handler {
		first := m.state.Load().apps[0].gw
		return first.adminAuth(func(w http.ResponseWriter, r *http.Request) error {
			return h(first, w, r)
		})
	}
	mux.Handle("GET /admin/sessions", each(func(_ *Gateway, w http.ResponseWriter, r *http.Request) error {
		out, err := m.adminList(r)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"sub": r.URL.Query().Get("sub"), "sessions": out})
		return nil
	}))
	mux.Handle("DELETE /admin/sessions", each(func(_ *Gateway, w http.ResponseWriter, r *http.Request) error {
		ended := 0
		for _, a := range m.apps(r) {
			n, err := a.gw.endSubject(r)
			ended += n
			if err != nil {
				return err
			}
		}
		writeJSON(w, http.StatusOK, map[string]int{"ended": ended})
		return nil
	}))
	mux.Handle("DELETE /admin/sessions/{sid}", each(func(g *Gateway, w http.ResponseWriter, r *http.Request) error {
		return g.adminEndSession(w, r)
	}))
	return mux
}

// apps are the apps an admin request is about: the one ?frontend= names, or all.
func (m *Multi) apps(r *http.Request) []*multiApp {
	apps := m.state.Load().apps
	if name := r.URL.Query().Get("frontend"); name != "" {
		return slices.DeleteFunc(slices.Clone(apps), func(a *multiApp) bool { return a.name != name })
	}
	return apps
}

func (m *Multi) adminList(r *http.Request) ([]sessionInfo, error) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		return nil, errBadRequest("sub_required", "GET /admin/sessions needs ?sub=<subject>.")
	}
	out := []sessionInfo{}
	for _, a := range m.apps(r) {
		list, err := a.gw.subjectSessions(r, sub, "")
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			out = append(out, infoOf(s, ""))
		}
	}
	slices.SortFunc(out, func(a, b sessionInfo) int { return b.LastSeenAt.Compare(a.LastSeenAt) })
	return out, nil
}

// HealthHandler serves only the probes (see Gateway.HealthHandler).
func (m *Multi) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	m.handleProbes(mux)
	return mux
}

func (m *Multi) handleProbes(mux *http.ServeMux) {
	registerProbes(mux, m.Ready, func() []string {
		var warnings []string
		for _, a := range m.state.Load().apps {
			if why := a.gw.reloadFailure.Load(); why != nil {
				warnings = append(warnings, "frontend "+a.name+": configuration reload failed, the previous configuration is running: "+*why)
			}
		}
		return warnings
	})
}
