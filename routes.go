package gatehouse

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// serveRoute handles a request under a route: method, session, CSRF, claim rules,
// token, then forward.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, rt *route, p string) {
	if err := g.routeRequest(w, r, rt, p); err != nil {
		g.auditFailure(r, rt.prefix, err)
		g.fail(w, r, jsonOnly(err))
	}
}

// errForwardAuthOnly answers a request the direct proxy got for a route without an
// upstream: such a route exists for forward-auth (/bff/auth) only.
var errForwardAuthOnly = &httpError{status: http.StatusNotFound, code: "not_found", reason: "forward_auth_only",
	title: "Not found", message: "There is nothing at this address."}

func (g *Gateway) routeRequest(w http.ResponseWriter, r *http.Request, rt *route, p string) error {
	if rt.target == nil {
		return errForwardAuthOnly
	}
	s, err := g.routeSession(w, r, rt, true)
	if err != nil {
		return err
	}
	if r.ContentLength > rt.MaxBody {
		return errBodyTooLarge
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
	}
	ws := isWebSocket(r)
	if ws {
		g.drain.add()
		defer g.drain.done()
	}
	token, s, err := g.routeAccess(r, rt, s, ws)
	if err != nil {
		return err
	}
	if !ws && r.Header.Get("Upgrade") != "" {
		// Only WebSockets are tunnelled: an h2c (or any other) upgrade would hand the
		// browser a raw connection to the upstream past every check of later requests.
		r.Header.Del("Upgrade")
	}
	f := upstream.Forward{Target: rt.target, Token: token, Strip: rt.strip}
	if s != nil && token != "" && rt.Token != TokenClient {
		if err := g.forwardDPoP(&f, rt, s, s.AccessTokenFor(rt.tokenKey()).TokenType); err != nil {
			return err
		}
	}
	if rt.identity != nil && s != nil {
		f.Headers = http.Header{}
		if err := g.setIdentity(f.Headers, rt, s); err != nil {
			return withSession(err, s)
		}
	}
	forwardingBody(w, r, rt)
	g.forward(w, r, f, p, s)
	return nil
}

// The checks of a request under a route, shared by the proxy (routeRequest) and
// forward-auth (forwardauth.go), which runs them on the original request the ingress
// describes: routeSession first (method, session), then, after what only the proxy
// does with the body, routeAccess (CSRF, step-up, claim rules, token).

// routeSession checks the method and loads the session the route needs. login says
// whether a person's navigation without a session is sent to log in (a redirect)
// rather than answered 401.
func (g *Gateway) routeSession(w http.ResponseWriter, r *http.Request, rt *route, login bool) (*session.Session, error) {
	if len(rt.Methods) > 0 && !slices.Contains(rt.Methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.Methods, ", "))
		return nil, errMethod
	}
	switch {
	case rt.Token == TokenUser || rt.Token == TokenExchange || len(rt.Require) > 0:
		n := sessionOrLogin
		if !login {
			n = sessionRequired
		}
		return g.gate(w, r, n)
	case rt.Token != TokenClient && rt.Token != TokenNone || rt.identity != nil:
		// An identity: block tells the upstream who is logged in, whatever the token.
		return g.gate(w, r, sessionOptional)
	}
	return nil, nil
}

// routeAccess runs the CSRF defence (the Origin check for a WebSocket handshake, ws),
// the step-up and claim rules, and gets the route's token, refreshing it when due. It
// returns the token ("" for none) and the session as it now is.
func (g *Gateway) routeAccess(r *http.Request, rt *route, s *session.Session, ws bool) (string, *session.Session, error) {
	if ws {
		if err := g.checkWebSocketOrigin(r); err != nil {
			return "", s, withSession(err, s)
		}
	} else if err := g.checkCSRF(r); err != nil {
		return "", s, withSession(err, s)
	}
	// A login too weak or too old for the route (acr, max_age rules): the SPA is told to
	// step up, before any token is minted for this request.
	if len(rt.Require) > 0 {
		if su := g.routeStepUp(rt.Require, s); su != nil {
			return "", s, errStepUpRequired(*su, r, s)
		}
	}
	// Claim rules that fail are final unless the token step is about to refresh (and so
	// re-read the claims, refreshClaims): no token is minted for a user the rules refuse.
	if len(rt.Require) > 0 && !rulesHold(rt.Require, s) && (s == nil || g.fresh(s.AccessTokenFor(rt.tokenKey()))) {
		return "", s, errForbiddenClaims.of(s)
	}

	var token string
	var err error
	switch {
	case s != nil && rt.Token != TokenNone && rt.Token != TokenClient:
		token, s, err = g.routeToken(r.Context(), r, s, rt)
	case rt.Token == TokenClient || rt.Token == TokenUserOrClient:
		token, err = g.clientToken(r.Context(), rt.tokenKey(), rt.refreshOptions())
	}
	if err != nil {
		return "", s, tokenError(err)
	}
	// And again after it, as a refresh may just have re-read the claims.
	if len(rt.Require) > 0 && !rulesHold(rt.Require, s) {
		return "", s, errForbiddenClaims.of(s)
	}
	if s != nil {
		g.touch(r.Context(), s)
	}
	return token, s, nil
}

// forward sends r as f says (target, token), and times it for gatehouse_proxy_request_seconds. p
// is the cleaned path that was matched: the request's own escaped form is kept only
// when it decodes to exactly that path (so %2F inside a segment survives, while "..",
// "//" and encoded dot segments never reach the upstream).
//
// s, when not nil, is the session the request was made in: a WebSocket or event stream
// it opens is closed when the session ends (tunnels.go).
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, f upstream.Forward, p string, s *session.Session) {
	sw, ok := w.(*statusRecorder)
	if !ok {
		sw = &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	}
	rawPath := ""
	if p == r.URL.Path {
		rawPath = r.URL.RawPath
	}
	f.Path, f.RawPath, f.ClientIP = p, rawPath, g.clientIP(r)
	if s != nil {
		f.Owner = s
	}
	start := time.Now()
	g.proxy.Serve(sw, r, f)
	d := time.Since(start)
	sw.proxied, sw.upstream = true, d
	g.metrics.observeProxy(f.Target.Name, r.Method, sw.status, d)
}

// routeToken returns the session's token for rt: the user's (for its audience), or an
// exchanged one.
func (g *Gateway) routeToken(ctx context.Context, r *http.Request, s *session.Session, rt *route) (string, *session.Session, error) {
	if rt.Token == TokenExchange {
		return g.exchangedToken(ctx, r, s, *rt.Exchange)
	}
	return g.userToken(ctx, r, s, rt.tokenKey(), rt.refreshOptions())
}

// tokenKey names the token a route uses within a session ("" for the login's token).
func (rt *route) tokenKey() string {
	if rt.Token == TokenExchange {
		return exchangeKey(*rt.Exchange)
	}
	var parts []string
	if rt.Resource != "" {
		parts = append(parts, "resource="+rt.Resource)
	}
	if rt.Audience != "" {
		parts = append(parts, "audience="+rt.Audience)
	}
	if len(rt.Scopes) > 0 {
		parts = append(parts, "scope="+strings.Join(rt.Scopes, " "))
	}
	return strings.Join(parts, "&")
}

func (rt *route) refreshOptions() idp.RefreshOptions {
	return idp.RefreshOptions{Resource: rt.Resource, Audience: rt.Audience, Scopes: rt.Scopes}
}

// tokenError maps a failure to get a token to a response: the session is over (401), or
// the provider cannot answer now (503: the session is kept, the SPA may retry).
func tokenError(err error) error {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he
	case isSessionEnd(err):
		return sessionError(err)
	case errors.Is(err, session.ErrUnavailable):
		// Before the timeouts: a store call that timed out wraps both.
		return errStoreDown.with(err)
	case errors.Is(err, idp.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return providerDown(err)
	case errors.Is(err, idp.ErrRefused), errors.Is(err, idp.ErrInvalidToken):
		return providerError(err)
	default:
		return errStoreDown.with(err)
	}
}

// rulesHold checks a route's claim rules against the session.
func rulesHold(rules []Rule, s *session.Session) bool {
	if s == nil {
		return false
	}
	for _, rule := range rules {
		if rule.Claim == "" {
			continue // acr and max_age rules: routeStepUp
		}
		have := claimValues(s, rule.Claim)
		for _, want := range rule.Contains {
			if !slices.Contains(have, want) {
				return false
			}
		}
		if len(rule.AnyOf) > 0 && !slices.ContainsFunc(rule.AnyOf, func(v string) bool { return slices.Contains(have, v) }) {
			return false
		}
	}
	return true
}

// claimValues flattens a claim to strings: array elements, or the words of a string
// (space-separated, as OAuth scope). "scope" falls back to the access token's scope.
func claimValues(s *session.Session, name string) []string {
	v, ok := s.Claims[name]
	if !ok && name == "scope" {
		v, ok = s.Token.Scope, true
	}
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if str, ok := e.(string); ok {
				out = append(out, str)
			}
		}
		return out
	case bool:
		if x {
			return []string{"true"}
		}
		return []string{"false"}
	}
	return nil
}
