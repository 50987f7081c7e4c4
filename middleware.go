package gatehouse

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// Session is the logged-in user of a request, for Go handlers embedded next to the
// gateway. It never exposes the refresh or ID token; AccessToken hands out a fresh
// access token for calling APIs on the user's behalf.
type Session struct {
	g *Gateway
	s *session.Session
}

type sessionKey struct{}

// SessionFrom returns the session RequireSession put in ctx.
func SessionFrom(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(*Session)
	return s, ok
}

// ID is the session's public handle (the sid of /bff/user).
func (s *Session) ID() string { return s.s.Handle }

// Subject is the user's "sub" at the provider.
func (s *Session) Subject() string { return s.s.Subject }

// Claims are the user's claims (ID token and userinfo). The map must not be modified.
func (s *Session) Claims() map[string]any { return s.s.Claims }

// ExpiresAt is the session's absolute end.
func (s *Session) ExpiresAt() time.Time { return s.s.ExpiresAt }

// AccessToken returns the user's access token, refreshed first if it is about to
// expire. An error that ends the session (the provider refused the refresh) wraps
// session.ErrRefreshFailed.
func (s *Session) AccessToken(ctx context.Context) (string, error) {
	return s.AccessTokenFor(ctx, "", "")
}

// AccessTokenFor returns an access token for another API (RFC 8707 resource, or an
// audience parameter), obtained with the session's refresh token and cached in it.
func (s *Session) AccessTokenFor(ctx context.Context, resource, audience string) (string, error) {
	rt := &route{Route: Route{Resource: resource, Audience: audience}}
	tok, cur, err := s.g.userToken(ctx, nil, s.s, rt.tokenKey(), rt.refreshOptions())
	if err != nil {
		return "", err
	}
	s.s = cur
	return tok, nil
}

// DPoPProof returns a DPoP proof (RFC 9449) of the session's key for one request with
// token (from AccessToken, AccessTokenFor or ExchangedToken), to send in its DPoP header
// with "Authorization: DPoP <token>". It is an error when the session has no DPoP key
// (provider.dpop is off). TokenType says whether a token needs one.
func (s *Session) DPoPProof(method string, u *url.URL, token string) (string, error) {
	k := s.g.sessionKey(s.s)
	if k == nil {
		return "", errors.New("gatehouse: this session has no DPoP key (provider.dpop is off)")
	}
	return k.Proof(method, u, token, "", time.Now())
}

// TokenType is "DPoP" when the session's tokens are bound to its DPoP key, else "Bearer".
func (s *Session) TokenType() string {
	if s.s.Token.TokenType == "DPoP" {
		return "DPoP"
	}
	return "Bearer"
}

// ExchangedToken returns a token for another API obtained by exchanging the user's
// token (RFC 8693) as x describes, cached in the session until it is about to expire.
func (s *Session) ExchangedToken(ctx context.Context, x ExchangeConfig) (string, error) {
	tok, cur, err := s.g.exchangedToken(ctx, nil, s.s, x)
	if err != nil {
		return "", err
	}
	s.s = cur
	return tok, nil
}

// RequireSession lets a request through to next only with a live session and, like the
// gateway's routes, passing the CSRF checks (the X-CSRF header and cross-origin
// protection) — except a top-level page navigation, which cannot carry the header and
// must not change state. Without a session, API calls get 401 JSON and navigations are
// redirected to login. next reads the session with SessionFrom.
func (g *Gateway) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := g.gate(w, r, sessionOrLogin)
		if err != nil {
			g.fail(w, r, err)
			return
		}
		if !isNavigation(r) {
			if err := g.checkCSRF(r); err != nil {
				g.fail(w, r, err)
				return
			}
		}
		s = g.touch(r.Context(), s)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, &Session{g: g, s: s})))
	})
}
