package gatehouse

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Forward-auth: an ingress (nginx auth_request, Traefik forwardAuth, Caddy forward_auth,
// Envoy ext_authz) that forwards the browser's requests itself asks GET /bff/auth whether
// a request may pass, and with which token. The request it sends carries the browser's
// headers (cookie, Origin, Sec-Fetch-*, X-CSRF) and describes the original request in the
// ingress's own convention:
//
//   - nginx: X-Original-Method and X-Original-URI (set in its auth location);
//     ingress-nginx: X-Original-Method and X-Original-URL (the whole URL);
//   - Traefik and Caddy: X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host and
//     X-Forwarded-Proto;
//   - Envoy's ext_authz HTTP service: the original path appended to /bff/auth, with the
//     original method as the request's own.
//
// Gatehouse believes that description only from trusted_proxies. It runs on the original
// request exactly the checks of its own proxy (routeSession and routeAccess: method,
// session, CSRF whatever the method, step-up, claim rules, token refreshed once) and
// answers instead of forwarding: 200 with Authorization for the ingress to copy
// upstream, or the error the proxy would have given.

// forwardAuthPrefix is the forward-auth endpoint; Envoy appends the original path to it.
const forwardAuthPrefix = "/bff/auth"

var (
	// errForwardAuthUntrusted: the description of the original request came from a peer
	// outside trusted_proxies, or there was none. Without it nothing can be decided, so
	// never 200; 400 rather than 401 or 403, which an ingress would show the browser as
	// a login or a refusal: this is the ingress's configuration at fault (nginx turns it
	// into a 500).
	errForwardAuthUntrusted = &httpError{status: http.StatusBadRequest, code: "bad_request", reason: "forward_auth_untrusted",
		title: "Bad request", message: "This address answers the ingress in front of Gatehouse only.", level: slog.LevelWarn}
	errForwardAuthAmbiguous = &httpError{status: http.StatusBadRequest, code: "bad_request", reason: "forward_auth_ambiguous",
		title: "Bad request", message: "The request to check was described more than once.", level: slog.LevelWarn}
	errForwardAuthNoURI = &httpError{status: http.StatusBadRequest, code: "bad_request", reason: "forward_auth_original_uri",
		title: "Bad request", message: "The ingress did not say which request to check.", level: slog.LevelWarn}
	// errNoRoute: the original path is under no route. 403, not 404: an ingress passes
	// 403 on to the browser (nginx turns any other refusal into a 500), and the answer is
	// a refusal: only routes are let through.
	errNoRoute = &httpError{status: http.StatusForbidden, code: "forbidden", reason: "no_route",
		title: "Access denied", message: "This address is not open through Gatehouse."}
	// errForwardAuthDPoP: a DPoP-bound token cannot be handed to an ingress, as its proof
	// is bound to the upstream's URL. 502, as the direct proxy answers a bound token on a
	// route without dpop.
	errForwardAuthDPoP = &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "dpop_forward_auth",
		title: "Not available", message: "This service is not set up to receive the sign-in's tokens.", level: slog.LevelWarn}
)

// isForwardAuth reports whether cleaned path p is the forward-auth endpoint.
func isForwardAuth(p string) bool {
	return p == forwardAuthPrefix || strings.HasPrefix(p, forwardAuthPrefix+"/")
}

// serveForwardAuth answers an ingress's question about the original request r describes.
func (g *Gateway) serveForwardAuth(w *statusRecorder, r *http.Request) {
	or, nginx, err := g.originalRequest(r)
	if err != nil {
		g.auditFailure(r, forwardAuthPrefix, err)
		g.fail(w, r, jsonOnly(err))
		return
	}
	rt, err := g.forwardAuth(w, or, nginx)
	if rt != nil {
		w.route = rt.prefix
	}
	if err != nil {
		prefix := forwardAuthPrefix
		if rt != nil {
			prefix = rt.prefix
		}
		g.auditFailure(or, prefix, err)
		g.fail(w, or, jsonOnly(err))
	}
}

// forwardAuth runs the route's checks on the original request or and writes the 200.
func (g *Gateway) forwardAuth(w http.ResponseWriter, or *http.Request, nginx bool) (*route, error) {
	p, ok := requestPath(or)
	if !ok || strings.HasPrefix(p, "/bff/") || p == "/bff" {
		return nil, errNoRoute
	}
	rt := g.current().match(p)
	if rt == nil {
		return nil, errNoRoute
	}
	// nginx's auth_request turns a redirect into a 500: it gets the 401, and its
	// error_page asks again in the forwarded convention, whose answer reaches the browser
	// (deploy/forward-auth/nginx.conf).
	s, err := g.routeSession(w, or, rt, g.config().ForwardAuth.RedirectNavigations && !nginx)
	if err != nil {
		return rt, err
	}
	token, s, err := g.routeAccess(or, rt, s, isWebSocket(or))
	if err != nil {
		return rt, err
	}
	h := w.Header()
	if s != nil && token != "" {
		if s.AccessTokenFor(rt.tokenKey()).TokenType == "DPoP" {
			return rt, errForwardAuthDPoP.of(s)
		}
		h.Set("Authorization", "Bearer "+token)
	}
	// The route's identity headers and assertion, for the ingress to copy upstream like
	// Authorization (its configuration must also drop the browser's own copies).
	if err := g.setIdentity(h, rt, s); err != nil {
		return rt, withSession(err, s)
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return rt, nil
}

// originalRequest is the request the ingress asks about, as r describes it: r with the
// original method, URI and host. Its headers are r's (the browser's, passed on by the
// ingress). nginx reports that the description was nginx's (X-Original-URI).
func (g *Gateway) originalRequest(r *http.Request) (or *http.Request, nginx bool, err error) {
	ap, perr := netip.ParseAddrPort(r.RemoteAddr)
	if perr != nil || !g.trusted(ap.Addr().Unmap()) {
		return nil, false, errForwardAuthUntrusted
	}
	// One description, in one convention: a browser may add another ingress's headers,
	// which this ingress passes on untouched; believing the wrong one would check a
	// request other than the one forwarded.
	h := r.Header
	envoy := r.URL.Path != forwardAuthPrefix
	n := 0
	for _, set := range []bool{len(h["X-Original-Uri"]) > 0, len(h["X-Original-Url"]) > 0, len(h["X-Forwarded-Uri"]) > 0, envoy} {
		if set {
			n++
		}
	}
	for _, name := range []string{"X-Original-Uri", "X-Original-Url", "X-Original-Method", "X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host"} {
		if len(h[name]) > 1 {
			n = 2
		}
	}
	if n > 1 {
		return nil, false, errForwardAuthAmbiguous
	}
	var method, uri, host string
	switch {
	case len(h["X-Original-Uri"]) > 0:
		// nginx: the Host header is the browser's (proxy_set_header Host $host).
		method, uri, nginx = h.Get("X-Original-Method"), h.Get("X-Original-URI"), true
	case len(h["X-Original-Url"]) > 0:
		// ingress-nginx: the whole URL. Its host is the browser's.
		u, perr := url.Parse(h.Get("X-Original-URL"))
		if perr != nil || u.Host == "" || u.Opaque != "" {
			return nil, false, errForwardAuthNoURI
		}
		method, uri, host, nginx = h.Get("X-Original-Method"), u.RequestURI(), u.Host, true
	case len(h["X-Forwarded-Uri"]) > 0:
		method, uri, host = h.Get("X-Forwarded-Method"), h.Get("X-Forwarded-Uri"), h.Get("X-Forwarded-Host")
	case envoy:
		// Envoy: /bff/auth<original path>, as sent (the cleaned path of r is not the
		// original's: "/bff/auth/a/../b" was cleaned to "/bff/auth/b"). The Host header is
		// the browser's.
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), forwardAuthPrefix+"/")
		if !ok {
			return nil, false, errForwardAuthNoURI
		}
		method, uri = r.Method, "/"+rest
		if r.URL.RawQuery != "" {
			uri += "?" + r.URL.RawQuery
		}
	default:
		return nil, false, errForwardAuthNoURI
	}
	if !validMethod(method) || uri == "" || uri[0] != '/' {
		return nil, false, errForwardAuthNoURI
	}
	u, perr := url.ParseRequestURI(uri)
	if perr != nil {
		return nil, false, errForwardAuthNoURI
	}
	c := *r
	c.Method, c.URL, c.RequestURI = method, u, uri
	c.ContentLength, c.Body = 0, http.NoBody
	if host != "" {
		c.Host = host // what CrossOriginProtection compares Origin with
	}
	return &c, nginx, nil
}
