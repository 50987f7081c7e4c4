package gatehouse

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// need says what a request needs of its session.
type need int

const (
	// sessionNone: the request does not involve a session (the gate is not called).
	sessionNone need = iota
	// sessionOptional: a request without a live session goes on anonymously.
	sessionOptional
	// sessionRequired: a request without a live session fails with 401, and a cookie that
	// no longer opens a session is cleared.
	sessionRequired
	// sessionOrLogin is sessionRequired, except that a person's page navigation is sent to
	// log in and back instead.
	sessionOrLogin
)

// gate is the one policy for requests that involve a session, wherever they arrive
// (routes, /bff/ endpoints, the frontend, RequireSession): it loads the session and, when
// there is none, decides between going on anonymously, 401 (clearing a dead cookie) and
// a redirect to login. A store that cannot answer fails the request closed (503),
// whatever was needed. The error it returns is rendered by fail.
func (g *Gateway) gate(w http.ResponseWriter, r *http.Request, n need) (*session.Session, error) {
	s, err := g.loadSession(r)
	if err == nil {
		return s, nil
	}
	he := sessionError(err)
	switch {
	case he.status != http.StatusUnauthorized:
		return nil, he
	case n == sessionOptional:
		return nil, nil
	case n == sessionOrLogin && isNavigation(r):
		// A person opened a protected address: send them to log in and back.
		return nil, loginRedirect(r)
	}
	if g.sessionCookie(r) != "" {
		g.clearSessionCookie(w)
	}
	return nil, he
}

// loginRedirect sends a person who opened a protected address to log in, and back.
func loginRedirect(r *http.Request) *httpError {
	return &httpError{status: http.StatusFound, redirect: "/bff/login?returnUrl=" + url.QueryEscape(localPath(r.URL.RequestURI()))}
}

// loadSession returns the request's session, or an error from the session package
// (ErrNoSession, ErrExpired, ErrRevoked, ErrRefreshFailed, or a store failure).
func (g *Gateway) loadSession(r *http.Request) (*session.Session, error) {
	c := g.sessionCookie(r)
	if c == "" {
		return nil, session.ErrNoSession
	}
	s, err := g.sessions.Load(r.Context(), c)
	if errors.Is(err, session.ErrExpired) {
		h, _ := session.HandleOf(c)
		g.audit(r, evSessionExpired, nil, slog.String("session", h))
	}
	if errors.Is(err, session.ErrUnknownKey) {
		h, _ := session.HandleOf(c)
		g.log.Warn("a session is sealed with a server key this replica does not hold, so it answers 401 here: "+
			"a key was made primary before every replica accepted it (list it in session.accept_keys everywhere first)", "session", h)
	}
	if err != nil {
		return nil, err
	}
	if s.Frontend != g.name || g.providerOf(s) == nil {
		// Another app's session (its cookie copied here), or one of a provider this app
		// no longer has: not a session of this app.
		g.log.Info("a session of another app or provider was presented and refused", "session", s.Handle, "frontend", s.Frontend, "provider", s.Provider)
		return nil, session.ErrNoSession
	}
	if g.bound {
		if why := g.bindingHolds(r, s); why != "" {
			if _, err := g.sessions.End(r.Context(), s.Handle, session.ReasonRevoked); err != nil {
				return nil, err
			}
			g.metrics.sessions.WithLabelValues("revoked_binding").Inc()
			g.audit(r, evSessionRevoked, s, slog.String("by", "gatehouse"), slog.String("reason", why))
			return nil, session.ErrRevoked
		}
	}
	noteSession(r, s)
	return s, nil
}

// touchInterval is how stale LastSeen may get before a request writes it: a tenth of
// the idle timeout, so the idle timeout is honoured to within 10% with one write per
// session every few minutes at most.
func (g *Gateway) touchInterval() time.Duration {
	return min(max(g.config().Session.IdleTimeout/10, time.Second), 5*time.Minute)
}

// touch extends the idle timeout of an active session, rarely enough that the hot path
// almost never writes. It returns the session as it now is.
func (g *Gateway) touch(ctx context.Context, s *session.Session) *session.Session {
	if g.now().Sub(s.LastSeen) < g.touchInterval() {
		return s
	}
	cur, err := g.sessions.Touch(ctx, s, g.touchInterval())
	if err != nil {
		if !isSessionEnd(err) {
			g.log.Warn("could not extend a session", "session", s.Handle, "error", err)
		}
		return s
	}
	return cur
}

func isSessionEnd(err error) bool {
	return errors.Is(err, session.ErrExpired) || errors.Is(err, session.ErrRevoked) ||
		errors.Is(err, session.ErrRefreshFailed) || errors.Is(err, session.ErrNoSession)
}
