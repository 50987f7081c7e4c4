package gatehouse

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

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
	returnURL := localPath(q.Get("returnUrl"))
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
		if g.config().Provider.OmitIDTokenHint {
			hint = ""
		}
		end, ok, err := g.idp.EndSessionURL(r.Context(), hint, g.origin+"/bff/logout/callback", state)
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
	if err := g.idp.Revoke(ctx, token, hint); err != nil {
		g.log.Warn("token revocation failed", "session", s.Handle, "error", err)
		g.metrics.revocations.WithLabelValues("failed").Inc()
		return
	}
	g.metrics.revocations.WithLabelValues("ok").Inc()
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
