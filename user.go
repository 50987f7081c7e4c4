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
	if err != nil {
		return nil, err
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
	return s, nil
}

// sessionOrFail loads the session, turning failures into responses. A cookie that no
// longer opens a session is cleared, unless the store merely could not answer.
func (g *Gateway) sessionOrFail(w http.ResponseWriter, r *http.Request) (*session.Session, error) {
	s, err := g.loadSession(r)
	if err == nil {
		return s, nil
	}
	he := sessionError(err)
	if he.status == http.StatusUnauthorized && g.sessionCookie(r) != "" {
		g.clearSessionCookie(w)
	}
	return nil, he
}

// touchInterval is how stale LastSeen may get before a request writes it: a tenth of
// the idle timeout, so the idle timeout is honoured to within 10% with one write per
// session every few minutes at most.
func (g *Gateway) touchInterval() time.Duration {
	return min(max(g.cfg.Session.IdleTimeout/10, time.Second), 5*time.Minute)
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

type userResponse struct {
	Claims    map[string]any `json:"claims"`
	SID       string         `json:"sid"`
	Session   sessionTimes   `json:"session"`
	LogoutURL string         `json:"logout_url"`
}

type sessionTimes struct {
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	ExpiresIn     int64     `json:"expires_in"`
	IdleExpiresIn int64     `json:"idle_expires_in"`
}

// handleUser answers GET /bff/user: who is logged in. Never a token.
func (g *Gateway) handleUser(w http.ResponseWriter, r *http.Request) error {
	if err := g.checkSameOrigin(r); err != nil {
		return jsonOnly(err)
	}
	s, err := g.sessionOrFail(w, r)
	if err != nil {
		return jsonOnly(err)
	}
	if r.URL.Query().Get("slide") != "false" {
		s = g.touch(r.Context(), s)
	}
	now := g.now()
	writeJSON(w, http.StatusOK, userResponse{
		Claims: s.Claims,
		SID:    s.Handle,
		Session: sessionTimes{
			CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
			ExpiresIn:     int64(s.ExpiresAt.Sub(now).Seconds()),
			IdleExpiresIn: int64(g.sessions.IdleExpiry(s).Sub(now).Seconds()),
		},
		LogoutURL: "/bff/logout?sid=" + url.QueryEscape(s.Handle),
	})
	return nil
}

// jsonOnly marks an error to be rendered as JSON even for a navigation: /bff/user and
// /bff/sessions are APIs whatever the browser asks for.
func jsonOnly(err error) error {
	var he *httpError
	if errors.As(err, &he) {
		c := *he
		c.forceJSON = true
		return &c
	}
	return err
}
