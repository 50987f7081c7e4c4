package gatehouse

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// logoutState binds an RP-initiated logout's state to this browser and remembers where
// to land afterwards. It is sealed with the server key ring and kept in a cookie.
type logoutState struct {
	State     string    `json:"s"`
	ReturnURL string    `json:"r"`
	Expires   time.Time `json:"e"`
}

var logoutAAD = []byte("gatehouse logout state v1")

var errLogoutSID = errBadRequest("logout_sid_mismatch",
	"This sign-out link does not belong to your session, so nothing was changed.")

// handleLogout ends the session: POST /bff/logout (CSRF header) or GET /bff/logout?sid=.
func (g *Gateway) handleLogout(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	q := r.URL.Query()
	returnURL := g.returnPath(q.Get("returnUrl"))
	if r.Method == http.MethodGet {
		// The sid from /bff/user is the CSRF defence of the GET form: a page on another
		// site cannot learn it. Without a live session there is nothing to protect.
		if s != nil && !session.HandleMatches(q.Get("sid"), s.Handle) {
			return errLogoutSID
		}
	}

	redirect := returnURL
	if s != nil {
		if _, err := g.sessions.End(r.Context(), s.Handle, session.ReasonRevoked); err != nil {
			return errStoreDown.with(err)
		}
		g.metrics.sessions.WithLabelValues("logout").Inc()
		g.revokeAtProvider(r.Context(), s)
		state := randomString(24)
		hint := s.IDToken
		pv := g.providerOf(s)
		if g.cfgOf(pv).OmitIDTokenHint {
			hint = ""
		}
		end, ok, err := pv.idp.EndSessionURL(r.Context(), hint, g.base+"/bff/logout/callback", state)
		if err != nil {
			g.log.Warn("no end-session URL: the provider session stays", "error", err)
		}
		if ok {
			redirect = end
			ls, _ := json.Marshal(logoutState{State: state, ReturnURL: returnURL, Expires: g.now().Add(10 * time.Minute)})
			c := g.baseCookie(g.logoutCookieName(), base64.RawURLEncoding.EncodeToString(g.sessions.KeyRing().Seal(logoutAAD, ls)))
			c.SameSite = http.SameSiteLaxMode // it must come back with the provider's redirect
			c.MaxAge = 600
			http.SetCookie(w, c)
		}
		g.log.Info("logout", "session", s.Handle)
		g.audit(r, evLogout, s, slog.Bool("provider_logout", ok))
	}
	if g.sessionCookie(r) != "" {
		g.clearSessionCookie(w)
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "application/json") && !wantsHTML(r) {
		writeJSON(w, http.StatusOK, map[string]string{"redirect_url": redirect})
		return nil
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, redirect, status)
	return nil
}

// revokeAtProvider revokes the session's refresh token (RFC 7009), or its access token
// when it has none. Some providers keep offline grants alive after an end-session, so
// this is what really ends the tokens' life. Failures are logged: the local session is
// already gone.
func (g *Gateway) revokeAtProvider(ctx context.Context, s *session.Session) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	token, hint := s.Token.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = s.Token.AccessToken, "access_token"
	}
	ctx, span := g.startSpan(ctx, "revocation", attribute.String("gatehouse.token_type_hint", hint))
	pv := g.providerOf(s)
	if pv == nil {
		endSpan(span, nil)
		return // its provider is no longer configured: nothing to revoke with
	}
	err := pv.idp.Revoke(ctx, token, hint)
	endSpan(span, err)
	if err == nil {
		g.metrics.revocations.WithLabelValues("ok").Inc()
		return
	}
	g.metrics.revocations.WithLabelValues("failed").Inc()
	if !errors.Is(err, idp.ErrUnavailable) || !g.revokeRetries.start() {
		g.log.Warn("token revocation failed", "session", s.Handle, "error", err)
		return
	}
	g.log.Warn("token revocation failed; trying again later", "session", s.Handle, "error", err)
	g.bg.Go(func() { g.retryRevoke(pv, s.Handle, token, hint, err) }) // Close waits for it
}

// revokeRetries bounds the revocations tried again in the background after a busy or
// unreachable provider, so that a logout during an outage still ends the tokens'
// life at the provider once it recovers.
type revokeRetries struct {
	pending atomic.Int32
	quit    <-chan struct{} // closed by Gateway.Close
}

// Bounds of the background revocations: how many may wait at once (beyond, a failed
// revocation is only logged), and how many more times each is tried.
const (
	maxPendingRevocations = 1000
	revokeAttempts        = 4
)

func (q *revokeRetries) start() bool {
	if q.pending.Add(1) > maxPendingRevocations {
		q.pending.Add(-1)
		return false
	}
	return true
}

func (q *revokeRetries) finish() { q.pending.Add(-1) }

// retryRevoke tries a revocation again, waiting at least what the provider asked for
// (Retry-After, at most 5 minutes) and backing off 1 s, 4 s, 16 s, 64 s.
func (g *Gateway) retryRevoke(pv *provider, handle, token, hint string, err error) {
	q := &g.revokeRetries
	defer q.finish()
	for attempt := range revokeAttempts {
		wait, _ := idp.RetryAfter(err)
		wait = max(wait, time.Second<<(2*attempt))
		select {
		case <-q.quit:
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ctx, span := g.startSpan(ctx, "revocation", attribute.String("gatehouse.token_type_hint", hint), attribute.Int("gatehouse.retry", attempt+1))
		err = pv.idp.Revoke(ctx, token, hint)
		endSpan(span, err)
		cancel()
		if err == nil {
			g.metrics.revocations.WithLabelValues("ok").Inc()
			g.log.Info("token revoked after a retry", "session", handle)
			return
		}
		if !errors.Is(err, idp.ErrUnavailable) {
			break
		}
	}
	g.metrics.revocations.WithLabelValues("failed").Inc()
	g.log.Warn("token revocation failed; given up", "session", handle, "error", err)
}

// handleLogoutCallback is the post_logout_redirect_uri: GET /bff/logout/callback?state=.
func (g *Gateway) handleLogoutCallback(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	target := "/"
	if c, err := r.Cookie(g.logoutCookieName()); err == nil {
		g.clearCookie(w, g.logoutCookieName(), http.SameSiteLaxMode)
		if sealed, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
			if plain, err := g.sessions.KeyRing().Open(logoutAAD, sealed); err == nil {
				var ls logoutState
				if json.Unmarshal(plain, &ls) == nil && g.now().Before(ls.Expires) &&
					session.HandleMatches(ls.State, r.URL.Query().Get("state")) {
					target = localPath(ls.ReturnURL)
				}
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}
