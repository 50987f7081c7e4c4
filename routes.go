package gatehouse

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/internal/flight"
	"github.com/gatehouse-bff/gatehouse/session"
)

// serveRoute handles a request under a route: method, session, CSRF, claim rules,
// token, then forward.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, rt *route, p string) {
	if err := g.routeRequest(w, r, rt, p); err != nil {
		g.auditFailure(r, rt.prefix, err)
		g.fail(w, r, jsonOnly(err))
	}
}

func (g *Gateway) routeRequest(w http.ResponseWriter, r *http.Request, rt *route, p string) error {
	if len(rt.Methods) > 0 && !slices.Contains(rt.Methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.Methods, ", "))
		return errMethod
	}
	needUser := rt.Token == TokenUser || len(rt.Require) > 0
	wantUser := rt.Token != TokenClient && rt.Token != TokenNone
	var s *session.Session
	if wantUser {
		var err error
		s, err = g.loadSession(r)
		if err != nil {
			he := sessionError(err)
			if he.status != http.StatusUnauthorized {
				return he // the store cannot answer: fail closed, whatever the token mode
			}
			if needUser {
				if isNavigation(r) {
					// A person opened a protected address: send them to log in and back.
					g.redirectToLogin(w, r)
					return nil
				}
				if g.sessionCookie(r) != "" {
					g.clearSessionCookie(w)
				}
				return he
			}
			s = nil
		}
	}
	if r.ContentLength > rt.MaxBody {
		return errBodyTooLarge
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
	}
	if isWebSocket(r) {
		if err := g.checkWebSocketOrigin(r); err != nil {
			return withSession(err, s)
		}
		g.drain.add()
		defer g.drain.done()
	} else if err := g.checkCSRF(r); err != nil {
		return withSession(err, s)
	}
	if len(rt.Require) > 0 && !rulesHold(rt.Require, s) {
		return errForbiddenClaims.of(s)
	}

	var token string
	var err error
	switch {
	case s != nil:
		token, s, err = g.userToken(r.Context(), r, s, rt.tokenKey(), rt.refreshOptions())
	case rt.Token == TokenClient || rt.Token == TokenUserOrClient:
		token, err = g.clientToken(r.Context(), rt.tokenKey(), rt.refreshOptions())
	}
	if err != nil {
		return tokenError(err)
	}
	if s != nil {
		g.touch(r.Context(), s)
	}
	if !isWebSocket(r) && r.Header.Get("Upgrade") != "" {
		// Only WebSockets are tunnelled: an h2c (or any other) upgrade would hand the
		// browser a raw connection to the upstream past every check of later requests.
		r.Header.Del("Upgrade")
	}

	// Forward the path that was matched. The request's own escaped form is kept only
	// when it decodes to exactly that path (so %2F inside a segment survives, while
	// "..", "//" and encoded dot segments never reach the upstream).
	rawPath := ""
	if p == r.URL.Path {
		rawPath = r.URL.RawPath
	}
	g.proxy.Serve(w, r, rt.target, token, p, rawPath, g.clientIP(r))
	return nil
}

// redirectToLogin sends a person who opened a protected address to log in, and back.
func (g *Gateway) redirectToLogin(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/bff/login?returnUrl="+url.QueryEscape(localPath(r.URL.RequestURI())), http.StatusFound)
}

// isNavigation reports whether r is a person's top-level page load: only those may be
// redirected to login. A frame is not one (Sec-Fetch-Dest: iframe), so a page on another
// site cannot start logins by framing protected addresses.
func isNavigation(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "", "document":
	default:
		return false
	}
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && wantsHTML(r) && !isWebSocket(r)
}

// tokenKey names the token a route uses within a session ("" for the login's token).
func (rt *route) tokenKey() string {
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
	case errors.Is(err, idp.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return errProviderDown.with(err)
	case errors.Is(err, idp.ErrRefused), errors.Is(err, idp.ErrInvalidToken):
		return providerError(err)
	default:
		return errStoreDown.with(err)
	}
}

// fresh reports whether tok can be used without refreshing: it exists and is further
// from its expiry than the lead time. The lead never exceeds half the token's lifetime,
// so a provider's 10-second tokens are not refreshed on every request.
func (g *Gateway) fresh(tok session.Token) bool {
	if tok.AccessToken == "" {
		return false
	}
	lead := g.cfg.Provider.RefreshLead
	if !tok.Issued.IsZero() {
		lead = min(lead, tok.Expiry.Sub(tok.Issued)/2)
	}
	return g.now().Before(tok.Expiry.Add(-lead))
}

// rulesHold checks a route's claim rules against the session.
func rulesHold(rules []Rule, s *session.Session) bool {
	if s == nil {
		return false
	}
	for _, rule := range rules {
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

// userToken returns the session's access token for key, refreshing it first when it is
// about to expire. Concurrent requests of one session share one refresh.
//
// r, when not nil, is the request that needs the token: the audit log names its client.
func (g *Gateway) userToken(ctx context.Context, r *http.Request, s *session.Session, key string, opts idp.RefreshOptions) (string, *session.Session, error) {
	if tok := s.AccessTokenFor(key); g.fresh(tok) {
		return tok.AccessToken, s, nil
	}
	cur, err, _ := g.refreshes.Do(ctx, s.Handle+"\x00"+key, func(ctx context.Context) (*session.Session, error) {
		return g.refresh(ctx, r, s, key, opts)
	})
	if err != nil {
		return "", nil, err
	}
	return cur.AccessTokenFor(key).AccessToken, cur, nil
}

// refresh is lock → reload → recheck → refresh → save. The lock is the store's when it
// has one, so replicas sharing a store refresh a session once; a waiter that reloads
// after the winner saved finds a fresh token and uses it. A rotated refresh token is
// saved before the lock is released, so nobody uses the old one again.
func (g *Gateway) refresh(ctx context.Context, r *http.Request, s *session.Session, key string, opts idp.RefreshOptions) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	waitStart := time.Now()
	release, err := g.sessions.Lock(ctx, s)
	g.metrics.lockWait.Observe(time.Since(waitStart).Seconds())
	if err != nil {
		return nil, err
	}
	defer release()
	cur, err := g.sessions.Reload(ctx, s)
	if err != nil {
		return nil, err
	}
	tok := cur.AccessTokenFor(key)
	if g.fresh(tok) {
		g.metrics.refreshes.WithLabelValues("not_needed").Inc()
		return cur, nil
	}
	if cur.Token.RefreshToken == "" {
		if tok.AccessToken != "" && g.now().Before(tok.Expiry) {
			return cur, nil // no way to refresh: use it until it really expires
		}
		if _, err := g.sessions.End(ctx, cur.Handle, "expired"); err != nil {
			return nil, err
		}
		g.audit(r, evSessionExpired, cur, slog.String("reason", "no_refresh_token"))
		return nil, session.ErrExpired
	}

	t, err := g.idp.Refresh(ctx, cur.Token.RefreshToken, cur.Subject, opts)
	var te *idp.TokenError
	switch {
	case key != "" && errors.As(err, &te) && (te.Code == "invalid_target" || te.Code == "invalid_scope"):
		// The provider will not mint a token for this route's audience: a configuration
		// problem of that route, not the end of the user's session.
		g.metrics.refreshes.WithLabelValues("refused_audience").Inc()
		g.audit(r, evRefreshFailed, cur, slog.String("reason", "audience_refused"), slog.String("token", tokenLabel(key)))
		return nil, &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "audience_refused",
			title: "Not available", message: "The sign-in service refused a token for this service.", cause: err, level: slog.LevelWarn}
	case errors.Is(err, idp.ErrRefused), errors.Is(err, idp.ErrInvalidToken):
		g.metrics.refreshes.WithLabelValues("refused").Inc()
		g.audit(r, evRefreshFailed, cur, slog.String("reason", "refused"), slog.String("token", tokenLabel(key)))
		g.log.Warn("the provider refused to refresh; ending the session", "session", cur.Handle, "error", err)
		if _, endErr := g.sessions.End(ctx, cur.Handle, session.ReasonRefreshFailed); endErr != nil {
			return nil, endErr
		}
		g.metrics.sessions.WithLabelValues("refresh_failed").Inc()
		return nil, session.ErrRefreshFailed
	case err != nil:
		g.metrics.refreshes.WithLabelValues("error").Inc()
		g.audit(r, evRefreshFailed, cur, slog.String("reason", "provider_unavailable"), slog.String("token", tokenLabel(key)))
		return nil, err
	}
	g.metrics.refreshes.WithLabelValues("ok").Inc()
	g.audit(r, evRefreshSucceeded, cur, slog.String("token", tokenLabel(key)))

	nt := tokenFrom(t, g.now())
	if key == "" {
		cur.Token = nt
	} else {
		if cur.Audiences == nil {
			cur.Audiences = map[string]session.Token{}
		}
		aud := nt
		aud.RefreshToken, aud.RefreshExpiry = "", time.Time{}
		cur.Audiences[key] = aud
		cur.Token.RefreshToken, cur.Token.RefreshExpiry = nt.RefreshToken, nt.RefreshExpiry
	}
	if t.IDToken != "" {
		cur.IDToken = t.IDToken
	}
	if !t.RefreshExpiry.IsZero() && t.RefreshExpiry.Before(cur.ExpiresAt) {
		cur.ExpiresAt = t.RefreshExpiry
	}
	cur.LastSeen = g.now()
	// The new refresh token must not be lost: the old one may already be dead.
	for attempt := 0; ; attempt++ {
		err = g.sessions.Save(ctx, cur)
		if err == nil || isSessionEnd(err) || attempt == 2 {
			break
		}
		time.Sleep(100 * time.Millisecond << attempt)
	}
	if err != nil {
		g.log.Error("could not save refreshed tokens", "session", cur.Handle, "error", err)
		return nil, err
	}
	return cur, nil
}

// tokenLabel names a route's token for the audit log: "session" for the login's token,
// else its audience, resource and scopes (configuration, never a token).
func tokenLabel(key string) string {
	if key == "" {
		return "session"
	}
	return key
}

// clientTokens caches client-credentials tokens, one per key, shared by all users.
type clientTokens struct {
	mu      sync.Mutex
	tokens  map[string]session.Token
	flights flight.Group[session.Token]
}

// clientToken returns the gateway's own token for key, fetching it when missing or
// about to expire.
func (g *Gateway) clientToken(ctx context.Context, key string, opts idp.RefreshOptions) (string, error) {
	c := &g.clientTokens
	c.mu.Lock()
	tok := c.tokens[key]
	c.mu.Unlock()
	if g.fresh(tok) {
		return tok.AccessToken, nil
	}
	tok, err, _ := c.flights.Do(ctx, key, func(ctx context.Context) (session.Token, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		t, err := g.idp.ClientCredentials(ctx, opts)
		if err != nil {
			g.metrics.clientTokens.WithLabelValues("error").Inc()
			return session.Token{}, err
		}
		g.metrics.clientTokens.WithLabelValues("ok").Inc()
		nt := tokenFrom(t, g.now())
		c.mu.Lock()
		if c.tokens == nil {
			c.tokens = map[string]session.Token{}
		}
		c.tokens[key] = nt
		c.mu.Unlock()
		return nt, nil
	})
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}
