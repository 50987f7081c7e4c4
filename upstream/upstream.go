// Package upstream forwards requests to upstream APIs with net/http/httputil's
// ReverseProxy (Rewrite, never Director), after the gateway has decided that a request
// may pass and which access token it carries.
//
// It owns the header hygiene between a browser and an API: the browser's Authorization
// header, Gatehouse's own cookies (and every cookie not explicitly forwarded) and spoofed
// forwarding headers never reach the upstream; the upstream cannot set Gatehouse's
// cookies in the browser. Streams (server-sent events, chunked responses) are flushed as
// they arrive and WebSocket upgrades pass through. An unreachable upstream gives 502, one
// that does not answer within the target's timeout 504, both as JSON.
package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is where one route forwards to.
type Target struct {
	// Name identifies the target in logs and metrics (the route's path).
	Name string
	// Prefix is the route's path prefix ("/api/"); with StripPrefix it is removed.
	Prefix      string
	StripPrefix bool
	// URL is the upstream base; its path is prepended to the forwarded path.
	URL *url.URL
	// Timeout bounds the wait for the upstream's response headers. Zero means none.
	Timeout time.Duration
	// Headers are set on every forwarded request.
	Headers http.Header
	// ForwardCookies names the browser cookies the upstream may see. Default none.
	ForwardCookies []string
}

// Config configures a Proxy.
type Config struct {
	// Transport carries the requests. Default: NewTransport().
	Transport http.RoundTripper
	// PublicURL is the gateway's public origin; it fills X-Forwarded-Host and
	// X-Forwarded-Proto.
	PublicURL *url.URL
	// TrustedProxies may pass X-Forwarded-For to us; from anyone else it is replaced.
	TrustedProxies []netip.Prefix
	// ProtectedCookie reports whether a cookie name is the gateway's own: such cookies
	// are never forwarded, and Set-Cookie headers for them from upstream are dropped.
	ProtectedCookie func(name string) bool
	// DropHeaders are request headers removed before forwarding (the CSRF header).
	DropHeaders []string
	// Logger receives upstream errors (never URLs with queries, never headers).
	Logger *slog.Logger
	// Observe, when set, is called after each proxied request with the target name, the
	// request method, the status sent to the client and the time taken.
	Observe func(target, method string, status int, d time.Duration)
}

// Proxy forwards requests to Targets. Safe for concurrent use.
type Proxy struct {
	cfg Config
	rp  *httputil.ReverseProxy
}

type ctxKey struct{}

// forward is the per-request state the Rewrite and error hooks read from the context.
type forward struct {
	target   *Target
	token    string
	path     string // cleaned path the gateway matched
	rawPath  string // escaped form to forward, "" to derive from path
	clientIP string
	timedOut atomic.Bool
	headers  chan struct{} // closed when response headers arrived
}

// NewTransport returns the shared transport: many idle connections per upstream host
// (Go's default of 2 throttles a busy proxy), bounded dial and TLS handshake times, and
// HTTP/2 when the upstream offers it.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // an API gateway does not follow HTTP_PROXY by surprise
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProtectedCookie == nil {
		cfg.ProtectedCookie = func(string) bool { return false }
	}
	p := &Proxy{cfg: cfg}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      cfg.Transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BufferPool:     bufferPool{},
	}
	return p
}

// bufferPool reuses the 32 KiB copy buffers ReverseProxy would otherwise allocate for
// every response.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// Serve forwards r to t with token as its bearer token ("" for none). path is the
// cleaned request path the caller matched t with; rawPath, when not empty, is the
// request's escaped path to forward instead (only when it decodes to path). clientIP is
// the browser's address as the gateway determined it.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Target, token, path, rawPath, clientIP string) {
	f := &forward{target: t, token: token, path: path, rawPath: rawPath, clientIP: clientIP, headers: make(chan struct{})}
	ctx := r.Context()
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(t.Timeout, func() {
			select {
			case <-f.headers:
			default:
				f.timedOut.Store(true)
				cancel()
			}
		})
		defer timer.Stop()
	}
	ctx = context.WithValue(ctx, ctxKey{}, f)
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	p.rp.ServeHTTP(sw, r.WithContext(ctx))
	if p.cfg.Observe != nil {
		p.cfg.Observe(t.Name, r.Method, sw.status, time.Since(start))
	}
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(ctxKey{}).(*forward)
	t := f.target

	// Path: the cleaned path the gateway matched, minus the prefix if asked, under the
	// upstream's base path.
	rel, rawRel := f.path, f.rawPath
	if t.StripPrefix {
		rel = "/" + strings.TrimPrefix(strings.TrimPrefix(rel, strings.TrimSuffix(t.Prefix, "/")), "/")
		if rawRel != "" {
			rawRel = "/" + strings.TrimPrefix(strings.TrimPrefix(rawRel, strings.TrimSuffix(t.Prefix, "/")), "/")
		}
	}
	out := pr.Out.URL
	out.Scheme, out.Host = t.URL.Scheme, t.URL.Host
	base := strings.TrimSuffix(t.URL.Path, "/")
	out.Path = base + rel
	out.RawPath = ""
	if rawRel != "" && rawRel != rel {
		out.RawPath = strings.TrimSuffix(t.URL.EscapedPath(), "/") + rawRel
		if u, err := url.PathUnescape(out.RawPath); err != nil || u != out.Path {
			out.RawPath = "" // never forward an escaped path that means something else
		}
	}
	out.RawQuery = pr.In.URL.RawQuery
	out.Fragment, out.RawFragment = "", ""
	pr.Out.Host = ""

	h := pr.Out.Header
	h.Del("Authorization")
	h.Del("Proxy-Authorization")
	if f.token != "" {
		h.Set("Authorization", "Bearer "+f.token)
	}
	for _, name := range p.cfg.DropHeaders {
		h.Del(name)
	}
	p.filterCookies(pr.Out, t)

	// Forwarding headers: ReverseProxy already removed the inbound X-Forwarded-For/Host/
	// Proto and Forwarded; remove the other spoofable ones too, then set our own.
	for name := range h {
		if strings.HasPrefix(name, "X-Forwarded-") || spoofable[name] {
			delete(h, name)
		}
	}
	if p.trusted(pr.In.RemoteAddr) {
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			h["X-Forwarded-For"] = prior
		}
	}
	peer, _, err := net.SplitHostPort(pr.In.RemoteAddr)
	if err != nil {
		peer = f.clientIP
	}
	if prior := h.Get("X-Forwarded-For"); prior != "" {
		h.Set("X-Forwarded-For", prior+", "+peer)
	} else if peer != "" {
		h.Set("X-Forwarded-For", peer)
	}
	if p.cfg.PublicURL != nil {
		h.Set("X-Forwarded-Host", p.cfg.PublicURL.Host)
		h.Set("X-Forwarded-Proto", p.cfg.PublicURL.Scheme)
	}
	for name, vals := range t.Headers {
		h[name] = append([]string(nil), vals...)
	}
}

// spoofable are request headers a browser could set to pass for a proxy or for an
// authenticated user, in canonical form.
var spoofable = map[string]bool{}

func init() {
	for _, name := range []string{"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
		"X-Forwarded-Ssl", "X-Original-Url", "X-Original-Forwarded-For", "X-Rewrite-Url", "X-Client-Ip", "True-Client-Ip",
		"Cf-Connecting-Ip", "X-Cluster-Client-Ip", "Client-Ip", "X-Forwarded-User", "X-Forwarded-Email",
		"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Access-Token", "X-Remote-User"} {
		spoofable[name] = true
	}
}

// filterCookies keeps only the browser cookies the target may see, and never the
// gateway's own.
func (p *Proxy) filterCookies(out *http.Request, t *Target) {
	if len(t.ForwardCookies) == 0 {
		delete(out.Header, "Cookie")
		return
	}
	cookies := out.Cookies()
	delete(out.Header, "Cookie")
	var kept []string
	for _, c := range cookies {
		if p.cfg.ProtectedCookie(c.Name) {
			continue
		}
		for _, name := range t.ForwardCookies {
			if c.Name == name {
				kept = append(kept, c.Name+"="+c.Value)
				break
			}
		}
	}
	if len(kept) > 0 {
		out.Header.Set("Cookie", strings.Join(kept, "; "))
	}
}

func (p *Proxy) trusted(remoteAddr string) bool {
	if len(p.cfg.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if f, ok := resp.Request.Context().Value(ctxKey{}).(*forward); ok {
		select {
		case <-f.headers:
		default:
			close(f.headers)
		}
	}
	// An upstream must not plant or overwrite the gateway's cookies.
	if vals := resp.Header.Values("Set-Cookie"); len(vals) > 0 {
		resp.Header.Del("Set-Cookie")
		for _, v := range vals {
			c, err := http.ParseSetCookie(v)
			if err != nil || p.cfg.ProtectedCookie(c.Name) {
				continue
			}
			resp.Header.Add("Set-Cookie", v)
		}
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	f, _ := r.Context().Value(ctxKey{}).(*forward)
	name := ""
	if f != nil {
		name = f.target.Name
	}
	switch {
	case f != nil && f.timedOut.Load():
		p.cfg.Logger.Warn("upstream timed out", "route", name, "timeout", f.target.Timeout)
		WriteError(w, http.StatusGatewayTimeout, "gateway_timeout", "upstream_timeout")
	case errors.As(err, new(*http.MaxBytesError)):
		WriteError(w, http.StatusRequestEntityTooLarge, "payload_too_large", "max_body")
	case errors.Is(r.Context().Err(), context.Canceled):
		// The browser went away; nobody reads an answer. 499 in the access log, as nginx.
		w.WriteHeader(499)
	default:
		p.cfg.Logger.Warn("upstream unreachable", "route", name, "error", describe(err))
		WriteError(w, http.StatusBadGateway, "bad_gateway", "upstream_unreachable")
	}
}

// describe reduces a transport error to its cause without the URL (which may carry a
// query string).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// WriteError writes the gateway's JSON error body.
func WriteError(w http.ResponseWriter, status int, code, reason string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	body := `{"error":"` + code + `"`
	if reason != "" {
		body += `,"reason":"` + reason + `"`
	}
	w.Write([]byte(body + "}\n"))
}

// statusWriter records the status for metrics. It forwards Flush and Hijack through
// Unwrap (http.ResponseController), so streaming and WebSockets keep working.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.status, s.wrote = code, true
	}
	if code == http.StatusSwitchingProtocols {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush is here, not only through Unwrap, because ReverseProxy asserts http.Flusher for
// SSE on older paths.
func (s *statusWriter) Flush() {
	http.NewResponseController(s.ResponseWriter).Flush()
}
