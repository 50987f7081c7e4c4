// Package upstream forwards requests to upstream APIs with net/http/httputil's
// ReverseProxy (Rewrite, never Director), after the gateway has decided that a request
// may pass and which access token it carries.
//
// It owns the header hygiene between a browser and an API: the browser's Authorization
// header, Gatehouse's own cookies (and every cookie not explicitly forwarded), spoofed
// forwarding headers, method and path overrides and other gateways' identity headers
// (DefaultStripHeaders), X-Gatehouse-* and the names of Forward.Strip never reach the
// upstream (the gateway's own identity headers arrive as Forward.Headers); the upstream cannot set Gatehouse's
// cookies in the browser, not even in a 103 Early Hints: informational responses are
// filtered as final ones are. Streams (server-sent events, chunked responses) are flushed as
// they arrive and WebSocket upgrades pass through, also through a caller's ResponseWriter
// wrapper that implements Unwrap (they are reached with http.ResponseController). The
// caller learns of each forward that became such a stream (Config.OnStream) and can end
// it at any time: the gateway closes a session's streams when the session ends.
//
// The package renders no error bodies. A forward that fails before the response started
// goes to Config.ErrorHandler as an *Error whose Kind says why: ErrUnreachable,
// ErrTimeout (no response headers within the target's timeout), ErrBodyTooLarge or
// ErrClientGone. Without an ErrorHandler the status code alone is sent: 502, 504, 413
// or 499.
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
	// Fast carries the target's HTTP/1.1 requests with valyala/fasthttp's request and
	// response handling over the proxy's own connection pool instead of net/http's
	// Transport. Protocol upgrades (WebSocket, h2c) and requests with Expect:
	// 100-continue still take the standard path; so does everything when the URL's scheme
	// is neither http nor https. The hygiene, hooks, errors and what a browser sees are the
	// same on both paths (the conformance suite, docs/configuration.md).
	Fast bool
}

// Config configures a Proxy.
type Config struct {
	// Transport carries the requests. Default: NewTransport(). A Transport that puts
	// the request URL in its errors must do so as a *url.Error, which Error strips.
	Transport http.RoundTripper
	// WrapTransport, when set, wraps what carries every forward, whichever path its target
	// takes (Transport or the fast path): tracing's client spans go here.
	WrapTransport func(http.RoundTripper) http.RoundTripper
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
	// StripHeaders are request headers removed before forwarding in addition to
	// DefaultStripHeaders; KeepHeaders are entries of those lists forwarded after all.
	// Each entry is a header name or a prefix followed by "*"; see CheckHeaderRules.
	// Forwarding and method- or path-override headers are removed whatever they say.
	StripHeaders, KeepHeaders []string
	// ErrorHandler writes the response when a forward fails before any of the
	// upstream's response was sent (an informational 1xx may have been). r is the
	// request given to Serve; err is an *Error. Default: the status code alone, no body.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives ReverseProxy's own errors, such as a response body that broke
	// off mid-stream. Default: slog.Default().
	Logger *slog.Logger
	// OnStream, when set, is called for each forward with an Owner whose response turns
	// out to be long-lived: a protocol switch (WebSocket) or a server-sent event stream
	// (Content-Type text/event-stream). stop ends the forward (both connections, for a
	// WebSocket) from any goroutine, at any time; done, which OnStream returns, is
	// called once the forward has ended, however it ended.
	OnStream func(t *Target, owner any, stop func()) (done func())
	// OnUnauthorized, when set, sees every 401 response before it is sent on, with the
	// request given to Serve, and may change it (its status, headers and body): the
	// gateway turns an upstream's step-up challenge into an answer the SPA can act on.
	OnUnauthorized func(in *http.Request, resp *http.Response)
}

// Forward is one request to forward.
type Forward struct {
	Target   *Target
	Token    string // bearer token for the upstream, "" for none
	Path     string // cleaned request path the caller matched Target with
	RawPath  string // when not empty, the request's escaped path to forward instead (only when it decodes to Path)
	ClientIP string // the browser's address as the gateway determined it
	// Owner, when not nil, is handed to Config.OnStream if the response is a stream
	// (the gateway's session).
	Owner any
	// DPoP, when set, makes Token a DPoP-bound token (RFC 9449): it is sent as
	// "Authorization: DPoP <token>" with the proof DPoP returns for the outbound method,
	// URL and token in the DPoP header.
	DPoP func(method string, u *url.URL, token string) (string, error)
	// Headers are set on the outbound request after the header hygiene and after
	// Target.Headers, replacing any value of the same name: the identity headers and
	// assertion the gateway computed for this request. Nil for none.
	Headers http.Header
	// Strip, when not nil, names more request headers that never pass from the browser,
	// whatever Config.KeepHeaders says (every route's identity header names).
	Strip *HeaderNames
}

// The kinds of failed forward, as Error.Kind.
var (
	// ErrUnreachable: the upstream could not be reached or gave no usable response.
	ErrUnreachable = errors.New("upstream: unreachable")
	// ErrTimeout: the target's Timeout passed before the response headers arrived.
	ErrTimeout = errors.New("upstream: timed out")
	// ErrBodyTooLarge: reading the request body hit an http.MaxBytesReader's limit.
	ErrBodyTooLarge = errors.New("upstream: request body too large")
	// ErrClientGone: the request's context was canceled: the browser went away.
	ErrClientGone = errors.New("upstream: client went away")
)

// Error is a failed forward, as Config.ErrorHandler receives it. Its text never holds
// the request's URL, which may carry secrets in its query.
type Error struct {
	// Kind is ErrUnreachable, ErrTimeout, ErrBodyTooLarge or ErrClientGone.
	Kind error
	// Target is the target's Name.
	Target string
	// Cause is the underlying error's text, stripped of any URL.
	Cause string
}

func (e *Error) Error() string {
	s := "upstream: failed"
	if e.Kind != nil {
		s = e.Kind.Error()
	}
	s += ": target " + e.Target
	if e.Cause != "" {
		s += ": " + e.Cause
	}
	return s
}

// Unwrap returns Kind, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

// Proxy forwards requests to Targets. Safe for concurrent use.
type Proxy struct {
	cfg     Config
	rp      *httputil.ReverseProxy
	fast    *fastTransport // for Targets with Fast
	headers *requestFilter
}

// NewTransport returns the shared transport: many idle connections per upstream host
// (Go's default of 2 throttles a busy proxy), bounded dial and TLS handshake times,
// HTTP/2 when the upstream offers it, and no compression the browser did not ask for.
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
		// A proxy passes the browser's Accept-Encoding on as it is: asking for gzip on its
		// own would make the transport decode the answer (CPU, and the upstream's
		// Content-Length lost) for a client that did not ask for it.
		DisableCompression: true,
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
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = writeStatus
	}
	// Header maps hold canonical keys: deleting by a canonical name costs no allocation
	// per request, where "X-CSRF" would be canonicalised (and allocated) on every call.
	drop := make([]string, len(cfg.DropHeaders))
	for i, name := range cfg.DropHeaders {
		drop[i] = http.CanonicalHeaderKey(name)
	}
	cfg.DropHeaders = drop
	p := &Proxy{cfg: cfg, headers: newRequestFilter(cfg.StripHeaders, cfg.KeepHeaders), fast: newFastTransport(cfg.Transport)}
	var rt http.RoundTripper = pathTransport{cfg.Transport, p.fast}
	if cfg.WrapTransport != nil {
		rt = cfg.WrapTransport(rt)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      answerTransport{rt},
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

// forward is one request's state. It is the request's context itself, so that Serve
// allocates no context.WithValue; the hooks find it with forwardOf.
type forward struct {
	context.Context // the request's, canceled early if the target's timeout passes
	Forward
	in     *http.Request // as given to Serve, for the ErrorHandler
	w      writer        // what ReverseProxy writes to: it filters informational responses
	state  atomic.Int32  // waiting, answered or timedOut; leaves waiting once
	cancel context.CancelFunc
	done   func() // from Config.OnStream, when the response is a stream
	// byConn: the fast path carries the forward and bounds it on its connection instead of
	// with a context and a timer of its own (no allocation): the wait for headers ends at
	// deadline (zero for none), and a stream stops when its body's connection is expired.
	byConn   bool
	deadline time.Time
	conn     *fastConn // the connection that carried the response, when byConn
	release  func()    // ends what the fast path's fallback set up (fastTransport.standard)
}

const (
	waiting  int32 = iota
	answered       // response headers arrived: the timeout no longer applies
	timedOut
)

type ctxKey struct{}

func (f *forward) Value(key any) any {
	if key == (ctxKey{}) {
		return f
	}
	return f.Context.Value(key)
}

func forwardOf(r *http.Request) *forward { return r.Context().Value(ctxKey{}).(*forward) }

// Serve forwards r as f describes. f.Target must not be nil.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, f Forward) {
	fw := &forward{Context: r.Context(), Forward: f, in: r, w: writer{ResponseWriter: w, p: p}}
	if h := w.Header(); len(h) > 0 {
		fw.w.own = h.Clone()
	}
	t := f.Target.Timeout
	switch {
	case f.Target.Fast && p.fast.takes(r, &fw.Forward):
		fw.byConn = true
		if t > 0 {
			fw.deadline = time.Now().Add(t)
		}
	case t > 0 || f.Owner != nil:
		var timer *time.Timer
		fw.Context, timer = fw.bound(fw.Context, t)
		defer fw.cancel()
		if timer != nil {
			defer timer.Stop()
		}
	}
	defer fw.finish() // deferred: a stream cut mid-copy ends in a panic (http.ErrAbortHandler)
	p.rp.ServeHTTP(&fw.w, r.WithContext(fw))
}

// bound gives the forward a context of its own under parent, which f.cancel (a stream's
// stop) cancels, and, when wait > 0, the timer that cancels it if no response headers came
// within wait. Only the wait for headers is bounded: a stream may then run as long as it
// likes.
func (f *forward) bound(parent context.Context, wait time.Duration) (context.Context, *time.Timer) {
	ctx, cancel := context.WithCancel(parent)
	f.cancel = cancel
	if wait <= 0 {
		return ctx, nil
	}
	return ctx, time.AfterFunc(wait, func() {
		if f.state.CompareAndSwap(waiting, timedOut) {
			cancel()
		}
	})
}

func (f *forward) finish() {
	if f.done != nil {
		f.done()
	}
	if f.release != nil {
		f.release()
	}
}

// isStream reports whether a response lives as long as its connection: a protocol
// switch, or server-sent events.
func isStream(resp *http.Response) bool {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return true
	}
	ct := resp.Header.Get("Content-Type")
	return len(ct) >= len("text/event-stream") && strings.EqualFold(ct[:len("text/event-stream")], "text/event-stream")
}

// answerTransport marks a forward answered when its response headers arrive; if the
// timeout won the race, the response is dropped and errorHandler reports the timeout.
type answerTransport struct {
	next http.RoundTripper // Config.WrapTransport's, over pathTransport
}

// pathTransport sends a forward by the path its target chose.
type pathTransport struct {
	standard http.RoundTripper
	fast     *fastTransport
}

func (t pathTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if forwardOf(req).Target.Fast {
		return t.fast.RoundTrip(req)
	}
	return t.standard.RoundTrip(req)
}

func (t answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f := forwardOf(req)
	resp, err := t.next.RoundTrip(req)
	if err == nil && !f.state.CompareAndSwap(waiting, answered) {
		resp.Body.Close()
		return nil, ErrTimeout
	}
	return resp, err
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := forwardOf(pr.In)
	t := f.Target

	// Path: the cleaned path the gateway matched, minus the prefix if asked, under the
	// upstream's base path.
	rel, rawRel := f.Path, f.RawPath
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
	delete(h, "Dpop") // the browser's DPoP proof (canonical key): a proof is the gateway's to make
	switch {
	case f.Token != "" && f.DPoP != nil:
		// RFC 9449 §7.1: the bound token with the DPoP scheme, and a fresh proof of the
		// session's key for exactly this request (method and URL without query).
		proof, err := f.DPoP(pr.Out.Method, out, f.Token)
		if err != nil {
			p.cfg.Logger.Error("no DPoP proof for a forward; sent without a token", "target", t.Name, "error", err)
			break
		}
		h.Set("Authorization", "DPoP "+f.Token)
		h.Set("DPoP", proof)
	case f.Token != "":
		h.Set("Authorization", "Bearer "+f.Token)
	}
	for _, name := range p.cfg.DropHeaders {
		delete(h, name)
	}
	p.filterCookies(pr.Out, t)

	// ReverseProxy already removed the inbound X-Forwarded-For/Host/Proto and Forwarded;
	// remove the other forwarding headers, method and path overrides and other gateways'
	// identity headers too, then set our own forwarding headers.
	for name := range h {
		if p.headers.drops(name, f.Strip) {
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
		peer = f.ClientIP
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
	for name, vals := range f.Headers {
		h[name] = vals
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
	if p.cfg.OnStream != nil {
		if f := forwardOf(resp.Request); f.Owner != nil && isStream(resp) {
			// The outbound request's context is the forward's: canceling it closes the
			// upgraded connection (ReverseProxy watches it) or aborts the body copy. On the
			// fast path, expiring the body's connection aborts the copy.
			stop := f.cancel
			if f.byConn { // the fast path carried it (takes implies carries)
				// Not the body's: a wrapper (tracing) may have wrapped it. The connection
				// is not reused after the stream, so that a stop racing the stream's end
				// cannot expire another request's connection.
				f.conn.stream = true
				stop = f.conn.expire
			}
			f.done = p.cfg.OnStream(f.Target, f.Owner, stop)
		}
	}
	// An upstream must not plant or overwrite the gateway's cookies.
	p.filterResponseHeader(resp.Header)
	if resp.StatusCode == http.StatusUnauthorized && p.cfg.OnUnauthorized != nil {
		p.cfg.OnUnauthorized(forwardOf(resp.Request).in, resp)
	}
	return nil
}

// errorHandler classifies a failed forward for the ErrorHandler. r is the outbound
// request: it carries the token, so it is not what the ErrorHandler gets.
func (p *Proxy) errorHandler(_ http.ResponseWriter, r *http.Request, err error) {
	f := forwardOf(r)
	e := &Error{Target: f.Target.Name}
	switch {
	case f.state.Load() == timedOut:
		e.Kind, e.Cause = ErrTimeout, "no response headers within "+f.Target.Timeout.String()
	case errors.As(err, new(*http.MaxBytesError)):
		e.Kind, e.Cause = ErrBodyTooLarge, describe(err)
	case errors.Is(f.in.Context().Err(), context.Canceled):
		e.Kind, e.Cause = ErrClientGone, describe(err)
	default:
		e.Kind, e.Cause = ErrUnreachable, describe(err)
	}
	f.w.Header() // puts back the gateway's own headers if a 1xx was sent
	p.cfg.ErrorHandler(f.w.ResponseWriter, f.in, e)
}

// describe reduces a transport error to its cause without the URL (which may carry a
// query string).
func describe(err error) string {
	var ue *url.Error
	for errors.As(err, &ue) {
		if ue.Err == nil {
			return ue.Op
		}
		err = ue.Err
	}
	return err.Error()
}

// writeStatus is the default ErrorHandler.
func writeStatus(w http.ResponseWriter, _ *http.Request, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, ErrTimeout):
		status = http.StatusGatewayTimeout
	case errors.Is(err, ErrBodyTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClientGone):
		status = 499 // nobody reads it; for the access log, as nginx
	}
	w.WriteHeader(status)
}
