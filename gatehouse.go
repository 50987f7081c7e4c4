// Package gatehouse is a Backend-for-Frontend (BFF) authentication gateway for
// single-page apps, as described in "OAuth 2.0 for Browser-Based Applications" §6.1.
//
// The Gateway is an http.Handler that sits on the SPA's own origin. It logs users in
// against any OpenID Connect provider as a confidential client (authorization code with
// PKCE, state, nonce, RFC 9207 iss check), keeps the access, refresh and ID tokens
// server-side in an encrypted session store, and gives the browser only an opaque
// __Host- cookie. The SPA learns who is logged in from /bff/user, and calls its APIs
// through configured routes: the gateway checks the session and the CSRF defences,
// refreshes the access token when it is about to expire (once, even under concurrent
// requests and across replicas sharing a store), and forwards the call with an
// Authorization: Bearer header.
//
// The binary in cmd/gatehouse reads a YAML file into a Config; Go programs can embed
// the gateway directly:
//
//	gw, err := gatehouse.New(gatehouse.Config{
//		PublicURL: "https://app.example.com",
//		Provider: gatehouse.ProviderConfig{
//			Issuer:       "https://id.example.com",
//			ClientID:     "spa-bff",
//			ClientSecret: os.Getenv("CLIENT_SECRET"),
//		},
//		Routes: []gatehouse.Route{{Path: "/api/", Upstream: "http://127.0.0.1:9000"}},
//	})
//	if err != nil { … }
//	defer gw.Close()
//	http.ListenAndServe(":8080", gw)
//
// Go handlers of the embedding program can require a session with
// [Gateway.RequireSession] and read it with [SessionFrom].
//
// Several apps on one listener, each with its own public URL, providers, routes and
// cookie and sharing the store, are a [Multi] ([NewMulti]); one app with several
// providers is a Config with Providers (users pick one with /bff/login?provider=<name>).
//
// Behind an ingress that forwards requests itself (nginx auth_request, Traefik, Caddy,
// Envoy ext_authz), the same handler answers the ingress's forward-auth questions at
// /bff/auth: routes without Upstream are checked there and never proxied, and only
// requests from [Config.TrustedProxies] are answered (docs/http-api.md).
package gatehouse

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/internal/flight"
	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// Version is the gateway's version, set at build time by the binary.
var Version = "dev"

// Gateway is the BFF. It is an http.Handler for the public listener; AdminHandler serves
// the admin listener. Safe for concurrent use. Call Close when done.
type Gateway struct {
	run    atomic.Pointer[running] // the configuration served now: Reload swaps it
	log    *slog.Logger
	now    func() time.Time
	public *url.URL
	origin string
	idp    *idp.Client // the default provider's: providers[0].idp
	// providers are the app's identity providers, the default first.
	providers []*provider
	name      string           // the app's name among a Multi's frontends (Config.Name)
	base      string           // origin + the public URL's path: where /bff/ is
	basePath  string           // the public URL's path without its trailing slash: "" or "/admin"
	ownStore  bool             // the store was made by New: Close closes it
	sessions  *session.Manager // the only way to the session store
	proxy     *upstream.Proxy
	limiter   ratelimit.Limiter
	limitLog  limitLog
	bound     bool // session binding is on
	drain     drainer
	tunnels   tunnels
	cop       *http.CrossOriginProtection
	frontend  http.Handler
	metrics   *metrics
	auditLog  *slog.Logger
	// accessLog, when not nil, gets one line per request (access.go); accessKey keys its
	// session hashes.
	accessLog *slog.Logger
	accessKey []byte

	tracing tracing // off unless Config.TracerProvider is set (tracing.go)

	refreshes     flight.Group[*session.Session]
	lockWait      time.Duration // how long a refresh waits for the session's lease; 0: refreshTimeout
	clientTokens  clientTokens
	dpopKeys      dpopKeys
	identityKeys  assertionKeys // signs the routes' identity assertions (identity.go)
	revokeRetries revokeRetries

	cspConfigured bool // frontend.csp was set explicitly

	reloadFailure atomic.Pointer[string] // why the last reload failed; nil after a success

	stop    context.CancelFunc
	done    chan struct{}
	bg      sync.WaitGroup // background work other than discovery: Close waits for it
	closeMu sync.Once
}

type route struct {
	Route
	prefix   string // "/api/"
	target   *upstream.Target
	identity *routeIdentity        // nil without identity:
	strip    *upstream.HeaderNames // every route's identity header names; nil when no route has any
}

// New validates cfg and returns a Gateway. It does not contact the provider: discovery
// runs in the background and /readyz reports when it succeeded.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cspConfigured := cfg.Frontend.CSP != ""
	cfg = cfg.withDefaults()
	g := &Gateway{log: cfg.Logger, now: cfg.Now, cspConfigured: cspConfigured}
	g.public, _ = url.Parse(cfg.PublicURL)
	g.basePath = strings.TrimSuffix(g.public.Path, "/")
	g.public.Path = ""
	g.origin = g.public.Scheme + "://" + g.public.Host
	g.base = g.origin + g.basePath
	g.name = cfg.Name

	g.auditLog = cfg.AuditLogger
	if g.accessLog = cfg.AccessLogger; g.accessLog != nil {
		g.accessKey = accessHashKey(cfg)
	}
	g.metrics = newMetrics(cfg.Metrics, scrapeGauges(g)...)
	hc := http.Client{Timeout: 10 * time.Second}
	if cfg.ProviderHTTPClient != nil {
		hc = *cfg.ProviderHTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	traced, wrapUpstream := g.setupTracing(cfg, base)
	if err := g.newProviders(cfg, hc, base, &providerTransport{base: traced, m: g.metrics, endpoint: func(r *http.Request) string { return g.providerEndpointName(r.URL) }}); err != nil {
		return nil, err
	}

	keys, err := serverKeyRing(cfg)
	if err != nil {
		return nil, err
	}
	store := cfg.Session.Store
	if store == nil {
		store = memstore.New(memstore.Options{Now: cfg.Now})
		g.ownStore = true
	}
	g.sessions = &session.Manager{
		Store: store, Keys: keys, Now: cfg.Now,
		IdleTimeout: cfg.Session.IdleTimeout, AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		Observe: g.metrics.storeObserver(),
	}
	if g.tracing.tracer != nil {
		g.sessions.Trace = g.traceStore
	}

	g.cop = http.NewCrossOriginProtection()
	for _, o := range append([]string{g.origin}, cfg.CSRF.TrustedOrigins...) {
		if err := g.cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("csrf.trusted_origins: %w", err)
		}
	}

	g.proxy = upstream.New(upstream.Config{
		Transport: cfg.UpstreamTransport, WrapTransport: wrapUpstream, PublicURL: g.public, TrustedProxies: cfg.TrustedProxies,
		ProtectedCookie: g.isOwnCookie, DropHeaders: []string{cfg.CSRF.Header}, Logger: g.log,
		ErrorHandler: g.failUpstream, OnStream: g.openTunnel, OnUnauthorized: g.stepUpChallenge,
		StripHeaders: cfg.StripRequestHeaders, KeepHeaders: cfg.AllowRequestHeaders,
	})
	if err := g.identityKeys.init(cfg.Identity); err != nil {
		return nil, err
	}
	g.run.Store(newRunning(cfg))
	g.bound = cfg.Session.BindUserAgent || cfg.Session.BindIPv4Prefix > 0 || cfg.Session.BindIPv6Prefix > 0
	g.limiter = cfg.RateLimiter
	if g.limiter == nil {
		g.limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: cfg.Now})
	}

	if g.frontend, err = g.newFrontend(); err != nil {
		return nil, err
	}
	for _, w := range cfg.WeakerOptions() {
		g.log.Warn("weaker security option in use", "option", w)
	}
	if len(cfg.Session.Keys) == 0 {
		g.log.Warn(derivedKeyWarning)
	}
	if cfg.signsWithGeneratedKey() {
		g.log.Warn(generatedKeyWarning)
	}

	ctx, cancel := context.WithCancel(context.Background())
	g.stop, g.done = cancel, make(chan struct{})
	g.revokeRetries.quit = ctx.Done()
	go g.discoverAll(ctx)
	g.sessions.OnEnd(g.sessionEnded)
	g.bg.Go(func() { g.sessions.ListenForEnds(ctx, g.recheckTunnels) })
	return g, nil
}

// derivedKeyWarning is logged at startup when session.keys is unset.
const derivedKeyWarning = "session.keys is not set: the server key is derived from the client credentials, " +
	"so rotating the client secret logs everyone out and whoever holds it can open the sessions' metadata in the store; " +
	"set session.keys (gatehouse keygen; to keep today's sessions, see Rotating the server keys in docs/operations.md)"

// serverKeyRing is the ring of session.keys and session.accept_keys, or of the derived
// key when session.keys is unset.
func serverKeyRing(cfg Config) (*session.KeyRing, error) {
	keys := cfg.Session.Keys
	if len(keys) == 0 {
		keys = [][]byte{derivedServerKey(cfg.Provider)}
	}
	r, err := session.NewKeyRingAccepting(keys, cfg.Session.AcceptKeys)
	if err != nil {
		return nil, fmt.Errorf("session.keys: %w", err)
	}
	return r, nil
}

// DerivedServerKey is the server key a Gateway uses when Session.Keys is unset, derived
// from the provider settings (issuer, client id, client secret or key). Listing it in
// Session.Keys, behind a new key, moves a deployment to explicit keys without logging
// anyone out (`gatehouse keygen --derived` prints it). It is as secret as the client
// secret.
func (c Config) DerivedServerKey() []byte { return derivedServerKey(c.Provider) }

// derivedServerKey gives replicas sharing a store the same server key without extra
// configuration: it is derived from the client's credentials, which they share anyway.
func derivedServerKey(p ProviderConfig) []byte {
	material := p.Issuer + "\x00" + p.ClientID + "\x00" + p.ClientSecret
	if p.ClientKey != nil {
		if der, err := x509.MarshalPKCS8PrivateKey(p.ClientKey); err == nil {
			material += "\x00" + string(der)
		}
	}
	return session.DeriveKey([]byte(material), "server key ring (derived)")
}

// WeakerOptions lists the options in use that weaken the secure defaults, by their YAML
// names. New logs each as a warning; `gatehouse check` prints them.
func (c Config) WeakerOptions() []string {
	c = c.withDefaults()
	var w []string
	if c.Cookie.AllowNonHostPrefix && !strings.HasPrefix(c.Cookie.Name, "__Host-") {
		w = append(w, "cookie.allow_non_host_prefix")
	}
	if c.Cookie.SameSite == http.SameSiteLaxMode {
		w = append(w, "cookie.same_site=lax")
	}
	if len(c.CSRF.TrustedOrigins) > 0 {
		w = append(w, "csrf.trusted_origins")
	}
	if len(c.Provider.TrustedAudiences) > 0 {
		w = append(w, "provider.trusted_audiences")
	}
	if len(c.WebSocketOrigins) > 0 {
		// Another origin may open a socket that carries the user's cookie and, through a
		// token: user route, the user's bearer: a cross-site WebSocket hijack if that
		// origin is not as trusted as this one.
		w = append(w, "websocket_origins")
	}
	if c.Provider.SkipUserinfo {
		w = append(w, "provider.skip_userinfo")
	}
	if c.RateLimits.InsecureDisable {
		w = append(w, "rate_limits.insecure_disable")
	}
	if len(c.AllowRequestHeaders) > 0 {
		w = append(w, "allow_request_headers")
	}
	if c.InsecureDiagnostics {
		w = append(w, "insecure_diagnostics")
	}
	return w
}

// discoverLoop loads the provider metadata at start and retries with backoff until it
// works, so that /readyz turns green by itself when the provider comes up.
func (g *Gateway) discoverLoop(ctx context.Context, p *provider) {
	wait := 500 * time.Millisecond
	issuer := g.cfgOf(p).Issuer
	for {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := p.idp.Discover(dctx)
		cancel()
		if err == nil {
			g.log.Info("provider metadata loaded", "issuer", issuer)
			return
		}
		g.log.Warn("provider discovery failed; retrying", "issuer", issuer, "error", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// Close stops background work and closes the session store if the Gateway created it.
func (g *Gateway) Close() error {
	var err error
	g.closeMu.Do(func() {
		g.stop()
		<-g.done
		g.bg.Wait()
		if c, ok := g.sessions.Store.(session.Closer); ok && g.ownStore {
			err = c.Close()
		}
	})
	return err
}

// Readiness is the state of what the gateway depends on; a nil field is ready.
type Readiness struct {
	Provider error // provider metadata not loaded (yet)
	Store    error // session store not answering
	Draining bool  // Drain was called: shutting down
	// Reload says why the last configuration reload failed; nil when it succeeded or none
	// was tried. It is not a readiness failure: the previous configuration runs.
	Reload error
}

// Readiness checks the provider's metadata and pings the session store.
func (g *Gateway) Readiness(ctx context.Context) Readiness {
	var rd Readiness
	if ok, err := g.providersReady(); !ok {
		if err == nil {
			err = errors.New("discovery has not finished")
		}
		rd.Provider = err
	}
	rd.Store = g.sessions.Ping(ctx)
	rd.Draining = g.drain.isDraining()
	if why := g.reloadFailure.Load(); why != nil {
		rd.Reload = errors.New(*why)
	}
	return rd
}

// Ready reports whether the gateway can serve logins: provider metadata loaded, the
// store answering, not shutting down. The error says what is missing.
func (g *Gateway) Ready(ctx context.Context) error {
	rd := g.Readiness(ctx)
	var errs []error
	if rd.Draining {
		errs = append(errs, errDraining)
	}
	if rd.Provider != nil {
		errs = append(errs, fmt.Errorf("provider: %w", rd.Provider))
	}
	if rd.Store != nil {
		errs = append(errs, fmt.Errorf("session store: %w", rd.Store))
	}
	return errors.Join(errs...)
}

// ServeHTTP dispatches on the cleaned path: Gatehouse's own /bff/ endpoints, then the
// routes (longest prefix first), then the frontend.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	if len(r.TransferEncoding) > 0 && r.ProtoMajor == 1 {
		// net/http honours Transfer-Encoding over a Content-Length sent alongside it and
		// drops the latter, so a front proxy that believed the Content-Length would see
		// the rest of this body as another request: never keep such a connection
		// (RFC 9112 §6.1).
		w.Header().Set("Connection", "close")
	}
	sw := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	g.assignRequestID(sw, r)
	var span trace.Span // nil unless tracing is on: the request path then pays this check only
	if g.tracing.tracer != nil {
		r, span = g.startRequest(r)
	}
	if g.accessLog != nil {
		r = r.WithContext(context.WithValue(r.Context(), accessKey{}, sw))
	}
	kind := g.serve(sw, r)
	d := g.now().Sub(start)
	g.metrics.observeRequest(kind, r.Method, sw.status, d)
	if span != nil {
		g.endRequest(span, r, sw, kind)
	}
	if g.accessLog != nil {
		g.logAccess(sw, r, kind, d)
	}
}

func (g *Gateway) serve(w *statusRecorder, r *http.Request) string {
	p, ok := requestPath(r)
	if !ok {
		g.setBodyDeadline(w, r, nil, false)
		g.fail(w, r, errBadPath)
		return "invalid"
	}
	bp := p // the path under the public URL's path: where /bff/ is
	if g.basePath != "" {
		if rest, ok := strings.CutPrefix(p, g.basePath); ok && (rest == "" || rest[0] == '/') {
			bp = rest
		} else {
			bp = ""
		}
	}
	if strings.HasPrefix(bp, "/bff/") || bp == "/bff" {
		g.setBodyDeadline(w, r, nil, false)
		if isForwardAuth(bp) {
			g.serveForwardAuth(w, r)
			return "auth"
		}
		g.serveBFF(w, r, bp)
		return "bff"
	}
	if p == JWKSPath {
		g.setBodyDeadline(w, r, nil, false)
		g.serveJWKS(w, r)
		return "bff"
	}
	if rt := g.current().match(p); rt != nil {
		w.route = rt.prefix
		g.setBodyDeadline(w, r, rt, false)
		g.serveRoute(w, r, rt, p)
		return "route"
	}
	g.setBodyDeadline(w, r, nil, true)
	if g.frontend != nil {
		g.serveFrontend(w, r)
		return "frontend"
	}
	g.fail(w, r, errNotFound)
	return "none"
}

// match is the route serving cleaned path p, or nil.
func (run *running) match(p string) *route {
	for _, rt := range run.routes {
		if p == strings.TrimSuffix(rt.prefix, "/") || strings.HasPrefix(p, rt.prefix) {
			return rt
		}
	}
	return nil
}

// statusRecorder remembers the status for metrics and what the access log says of a
// request; it writes the request id into the response's headers when they go out.
// Unwrap keeps Flush and Hijack reachable through http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	id     [1]string // the request id; the header value slice of X-Request-Id
	bytes  int64
	// For the access log.
	route    string // the route's prefix, when one matched
	proxied  bool   // the request was forwarded: upstream is its duration
	upstream time.Duration
	sess     *session.Session // the request's session, when the access log is on
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.status, s.wrote = code, true
		s.stampID()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.wrote = true
		s.stampID()
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// stampID sets X-Request-Id on the response, replacing an upstream's.
func (s *statusRecorder) stampID() {
	if s.id[0] != "" {
		s.ResponseWriter.Header()[requestIDHeader] = s.id[:]
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	if !s.wrote {
		s.wrote = true
		s.stampID()
	}
	http.NewResponseController(s.ResponseWriter).Flush()
}
