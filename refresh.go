package gatehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/internal/flight"
	"github.com/gatehouse-bff/gatehouse/session"
)

// Token refresh: a session's access token is renewed when it is about to expire, once
// per session even under concurrent requests and across replicas sharing a store (see
// docs/architecture.md, "Token refresh").

// fresh reports whether tok can be used without refreshing: it exists and is further
// from its expiry than the lead time. The lead never exceeds half the token's lifetime,
// so a provider's 10-second tokens are not refreshed on every request.
func (g *Gateway) fresh(tok session.Token) bool {
	if tok.AccessToken == "" {
		return false
	}
	lead := g.config().Provider.RefreshLead
	if !tok.Issued.IsZero() {
		lead = min(lead, tok.Expiry.Sub(tok.Issued)/2)
	}
	return g.now().Before(tok.Expiry.Add(-lead))
}

// userToken returns the session's access token for key, refreshing it first when it is
// about to expire. Concurrent requests of one session share one refresh.
//
// r, when not nil, is the request that needs the token: the audit log names its client.
func (g *Gateway) userToken(ctx context.Context, r *http.Request, s *session.Session, key string, opts idp.RefreshOptions) (string, *session.Session, error) {
	if tok := s.AccessTokenFor(key); g.fresh(tok) {
		return tok.AccessToken, s, nil
	}
	ctx, span := g.startSpan(ctx, "refresh")
	cur, err, shared := g.refreshes.Do(ctx, s.Handle+"\x00"+key, func(ctx context.Context) (*session.Session, error) {
		return g.refresh(ctx, r, s, key, opts)
	})
	if span.IsRecording() {
		span.SetAttributes(singleFlight(shared))
	}
	endSpan(span, err)
	if err != nil {
		if tok := s.AccessTokenFor(key); transient(err) && g.usable(tok) {
			// Refreshed early (the lead), but the token still works: a provider or store
			// that cannot answer now does not fail the request; a later one refreshes.
			g.log.Warn("could not refresh early; using the current access token until it expires", "session", s.Handle, "error", err)
			return tok.AccessToken, s, nil
		}
		return "", nil, err
	}
	return cur.AccessTokenFor(key).AccessToken, cur, nil
}

// usable reports whether tok can still be sent: it exists and has not expired.
func (g *Gateway) usable(tok session.Token) bool {
	return tok.AccessToken != "" && g.now().Before(tok.Expiry)
}

// transient reports whether a refresh failed for a reason that passes: the provider or
// the store could not answer (an outage, a timeout, a 429), as opposed to a refusal or
// the session's end.
func transient(err error) bool {
	return errors.Is(err, idp.ErrUnavailable) || errors.Is(err, session.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// refresh is lock → reload → recheck → refresh → save. The lock is the store's when it
// has one, so replicas sharing a store refresh a session once; a waiter that reloads
// after the winner saved finds a fresh token and uses it. A rotated refresh token is
// saved before the lock is released, so nobody uses the old one again.
func (g *Gateway) refresh(ctx context.Context, r *http.Request, s *session.Session, key string, opts idp.RefreshOptions) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	waitStart := time.Now()
	lctx, lcancel := ctx, context.CancelFunc(func() {})
	if g.lockWait > 0 {
		lctx, lcancel = context.WithTimeout(ctx, g.lockWait)
	}
	release, err := g.sessions.Lock(lctx, s)
	lcancel()
	g.metrics.lockWait.Observe(time.Since(waitStart).Seconds())
	if err != nil {
		return nil, g.refreshStoreFailed(r, s, key, err)
	}
	defer release()
	cur, err := g.sessions.Reload(ctx, s)
	if err != nil {
		if isSessionEnd(err) {
			return nil, err
		}
		return nil, g.refreshStoreFailed(r, s, key, err)
	}
	tok := cur.AccessTokenFor(key)
	if g.fresh(tok) {
		g.metrics.refreshes.WithLabelValues("not_needed").Inc()
		return cur, nil
	}
	if cur.Token.RefreshToken == "" {
		if g.usable(tok) {
			return cur, nil // no way to refresh: use it until it really expires
		}
		if _, err := g.sessions.End(ctx, cur.Handle, "expired"); err != nil {
			return nil, err
		}
		g.audit(r, evSessionExpired, cur, slog.String("reason", "no_refresh_token"))
		return nil, session.ErrExpired
	}

	opts.Issuer = cur.Issuer // a new ID token must come from the session's issuer (tenant)
	t, err := g.providerOf(cur).idp.Refresh(g.dpopContext(ctx, cur), cur.Token.RefreshToken, cur.Subject, opts)
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
	g.refreshClaims(g.dpopContext(ctx, cur), cur, t)
	if !t.RefreshExpiry.IsZero() && t.RefreshExpiry.Before(cur.ExpiresAt) {
		cur.ExpiresAt = t.RefreshExpiry
	}
	if r != nil {
		// A refresh with no request behind it (an open WebSocket's) is no use of the session.
		cur.LastSeen = g.now()
	}
	// The new refresh token must not be lost: the old one may already be dead. A save
	// that failed at once (a connection refused while Redis restarts) is tried again;
	// one that took the store's whole timeout is not, since the store already retried
	// within it and the request would hang for each try.
	for attempt := 0; ; attempt++ {
		err = g.sessions.Save(ctx, cur)
		if err == nil || isSessionEnd(err) || errors.Is(err, context.DeadlineExceeded) || attempt == 2 {
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

// refreshTimeout bounds a refresh: the wait for the session's lease, the provider's
// answer and the store's writes.
const refreshTimeout = 20 * time.Second

// refreshStoreFailed records a refresh that the store kept from happening (its lease
// not granted in time, because another replica holds it or Redis does not answer, or
// the session not read back) and returns err as a store failure: a lease wait that ran
// out is the store's doing, not the provider's.
func (g *Gateway) refreshStoreFailed(r *http.Request, s *session.Session, key string, err error) error {
	g.metrics.refreshes.WithLabelValues("store_unavailable").Inc()
	g.audit(r, evRefreshFailed, s, slog.String("reason", "store_unavailable"), slog.String("token", tokenLabel(key)))
	if !errors.Is(err, session.ErrUnavailable) {
		err = fmt.Errorf("gatehouse: refresh: the session's lease: %w: %w", session.ErrUnavailable, err)
	}
	return err
}

// refreshClaims makes the session's claims as fresh as its tokens: after a refresh
// that returned an ID token, or when the claims are older than provider.claims_max_age,
// they are rebuilt as at login, from the session's latest ID token (the new one, if any)
// and userinfo read now with the session's own access token. When that fails (the
// provider is busy, or that token has expired after a refresh for another audience), the
// claims and their age stay as they were, so the next refresh tries again; the refreshed
// tokens are saved regardless.
func (g *Gateway) refreshClaims(ctx context.Context, s *session.Session, t *idp.Tokens) {
	claimsAt := s.ClaimsAt
	if claimsAt.IsZero() {
		claimsAt = s.CreatedAt
	}
	pv := g.providerOf(s)
	if t.IDToken == "" && g.now().Sub(claimsAt) < g.cfgOf(pv).ClaimsMaxAge {
		return
	}
	if s.Token.AccessToken == "" || !g.now().Before(s.Token.Expiry) {
		return
	}
	claims, err := pv.idp.SessionClaims(ctx, s.IDToken, s.Token.AccessToken, s.Subject)
	if err != nil {
		g.log.Warn("claims not re-read after a refresh: the previous ones stay until the next refresh", "session", s.Handle, "error", err)
		return
	}
	for _, c := range protocolClaims {
		delete(claims, c)
	}
	claims["sub"] = s.Subject
	s.Claims, s.ClaimsAt = claims, g.now()
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
	ctx, span := g.startSpan(ctx, "client_credentials")
	tok, err, shared := c.flights.Do(ctx, key, func(ctx context.Context) (session.Token, error) {
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
	if span.IsRecording() {
		span.SetAttributes(singleFlight(shared))
	}
	endSpan(span, err)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

func tokenFrom(t *idp.Tokens, issued time.Time) session.Token {
	return session.Token{
		AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry, Issued: issued,
		RefreshToken: t.RefreshToken, RefreshExpiry: t.RefreshExpiry, Scope: t.Scope,
	}
}
