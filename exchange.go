package gatehouse

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// Token exchange (RFC 8693) per route: the session's own token is traded at the
// provider for the route's narrower one, which is kept in the session (Audiences, under
// exchangeKey) until it is about to expire, like a resource token. It never goes to the
// browser.

// exchangeKey names an exchanged token within a session. It cannot collide with a
// resource token's key (tokenKey), which never starts with "exchange".
func exchangeKey(x ExchangeConfig) string {
	parts := []string{"exchange"}
	if x.Audience != "" {
		parts = append(parts, "audience="+x.Audience)
	}
	if x.Resource != "" {
		parts = append(parts, "resource="+x.Resource)
	}
	if len(x.Scopes) > 0 {
		parts = append(parts, "scope="+strings.Join(x.Scopes, " "))
	}
	if x.RequestedTokenType != "" {
		parts = append(parts, "type="+x.RequestedTokenType)
	}
	if x.SubjectToken == "id_token" {
		parts = append(parts, "subject=id_token")
	}
	return strings.Join(parts, "&")
}

// exchangedToken returns the session's token for x, exchanging the user's token for a
// new one when it is missing or about to expire. Concurrent requests of one session
// share one exchange, and so do replicas sharing a store (the session's lock).
func (g *Gateway) exchangedToken(ctx context.Context, r *http.Request, s *session.Session, x ExchangeConfig) (string, *session.Session, error) {
	key := exchangeKey(x)
	if tok := s.AccessTokenFor(key); g.fresh(tok) {
		return tok.AccessToken, s, nil
	}
	cur, err, _ := g.refreshes.Do(ctx, s.Handle+"\x00"+key, func(ctx context.Context) (*session.Session, error) {
		return g.exchange(ctx, r, s, x, key)
	})
	if err != nil {
		return "", nil, err
	}
	return cur.AccessTokenFor(key).AccessToken, cur, nil
}

// exchange is the token step of exchangedToken: the subject token (the user's access
// token, refreshed first when needed, by userToken), then lock → reload → recheck →
// exchange → save.
func (g *Gateway) exchange(ctx context.Context, r *http.Request, s *session.Session, x ExchangeConfig, key string) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, s, err := g.userToken(ctx, r, s, "", idp.RefreshOptions{})
	if err != nil {
		return nil, err
	}
	release, err := g.sessions.Lock(ctx, s)
	if err != nil {
		return nil, err
	}
	defer release()
	cur, err := g.sessions.Reload(ctx, s)
	if err != nil {
		return nil, err
	}
	if g.fresh(cur.AccessTokenFor(key)) {
		g.metrics.refreshes.WithLabelValues("not_needed").Inc()
		return cur, nil
	}
	subject, subjectType := cur.Token.AccessToken, idp.TokenTypeAccessToken
	if x.SubjectToken == "id_token" {
		subject, subjectType = cur.IDToken, idp.TokenTypeIDToken
	}
	t, err := g.providerOf(cur).idp.TokenExchange(g.dpopContext(ctx, cur), subject, idp.ExchangeOptions{
		RefreshOptions:   idp.RefreshOptions{Audience: x.Audience, Resource: x.Resource, Scopes: x.Scopes},
		SubjectTokenType: subjectType, RequestedTokenType: x.RequestedTokenType,
	})
	switch {
	case errors.Is(err, idp.ErrRefused), errors.Is(err, idp.ErrInvalidToken):
		// The provider will not exchange for this route: the route's configuration or the
		// provider's policy, not the end of the user's session.
		g.metrics.refreshes.WithLabelValues("exchange_refused").Inc()
		g.audit(r, evRefreshFailed, cur, slog.String("reason", "exchange_refused"), slog.String("token", key))
		return nil, &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "exchange_refused",
			title: "Not available", message: "The sign-in service refused a token for this service.", cause: err, level: slog.LevelWarn}
	case err != nil:
		g.metrics.refreshes.WithLabelValues("error").Inc()
		g.audit(r, evRefreshFailed, cur, slog.String("reason", "provider_unavailable"), slog.String("token", key))
		return nil, err
	}
	g.metrics.refreshes.WithLabelValues("exchanged").Inc()
	g.audit(r, evRefreshSucceeded, cur, slog.String("token", key))
	if cur.Audiences == nil {
		cur.Audiences = map[string]session.Token{}
	}
	cur.Audiences[key] = tokenFrom(t, g.now())
	if err := g.sessions.Save(ctx, cur); err != nil {
		return nil, err
	}
	return cur, nil
}
