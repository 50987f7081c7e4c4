package gatehouse

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// protocolClaims are ID token claims about the token, not the user: /bff/user leaves
// them out.
var protocolClaims = []string{"aud", "azp", "nonce", "at_hash", "c_hash", "s_hash", "exp", "iat", "nbf", "jti", "iss", "sid"}

// handleCallback completes a login: GET /bff/callback?code=…&state=…&iss=….
func (g *Gateway) handleCallback(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	err := g.callback(w, r)
	var he *httpError
	if err != nil && errors.As(err, &he) {
		reason := he.reason
		if he.code == "login_refused" {
			reason = "provider_" + reason // provider_access_denied, …
		}
		if reason == "" {
			reason = he.code
		}
		g.metrics.loginFailures.WithLabelValues(reason).Inc()
		g.audit(r, evLoginFailed, nil, slog.String("reason", reason))
	}
	return err
}

func (g *Gateway) callback(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL holds the code
	q := r.URL.Query()
	f, err := g.takeFlow(w, r, q.Get("state"))
	if err != nil {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return err
	}
	if code := q.Get("error"); code != "" {
		// The provider refused or the user cancelled. Its error_description is never
		// shown: it is provider text, and an attacker can craft it.
		g.metrics.logins.WithLabelValues("refused").Inc()
		he := &httpError{status: http.StatusForbidden, code: "login_refused", reason: safeErrorCode(code),
			title: "Sign-in was not completed", level: slog.LevelInfo,
			message: "The sign-in service did not sign you in (it was cancelled or refused). You can try again."}
		if code == "access_denied" {
			he.message = "Sign-in was cancelled or access was denied. You can try again."
		}
		return he
	}
	if err := g.idp.CheckIssuerParam(r.Context(), q.Get("iss"), q.Has("iss")); err != nil {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		if errors.Is(err, idp.ErrUnavailable) {
			return errProviderDown.with(err)
		}
		return errBadRequest("login_issuer_mismatch", "The sign-in answer did not come from the expected sign-in service. Please sign in again.").with(err)
	}
	code := q.Get("code")
	if code == "" {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return errLoginMalformed
	}

	tokens, id, err := g.idp.Exchange(r.Context(), code, f.Verifier, f.Nonce)
	if err != nil {
		g.metrics.logins.WithLabelValues("failed").Inc()
		if _, busy := idp.RetryAfter(err); busy {
			return providerDown(err) // 503: the provider is busy, try again
		}
		if errors.Is(err, idp.ErrUnavailable) {
			return errProviderBadGateway.with(err)
		}
		return &httpError{status: http.StatusBadRequest, code: "login_failed", reason: "token_exchange",
			title: "Sign-in failed", message: "Gatehouse could not complete the sign-in. Please sign in again.",
			cause: err, level: slog.LevelWarn}
	}

	claims := id.Claims
	for _, c := range protocolClaims {
		delete(claims, c)
	}
	claims["sub"] = id.Subject
	s := &session.Session{
		Subject: id.Subject, Issuer: g.idp.Issuer(), ProviderSID: id.SID,
		UserAgent: userAgent(r), IP: g.clientIP(r),
		Claims: claims, ClaimsAt: g.now(), IDToken: tokens.IDToken,
		Token: tokenFrom(tokens, g.now()),
	}
	if !tokens.RefreshExpiry.IsZero() {
		s.ExpiresAt = tokens.RefreshExpiry // a session never outlives its refresh token
	}
	// A fresh id for every login (no fixation); the browser's previous session ends.
	if old := g.sessionCookie(r); old != "" {
		if prev, err := g.sessions.Load(r.Context(), old); err == nil {
			if ended, _ := g.sessions.End(r.Context(), prev.Handle, session.ReasonRevoked); ended {
				g.audit(r, evSessionRevoked, prev, slog.String("by", "login"), slog.String("reason", "replaced"))
			}
		}
	}
	cookie, err := g.sessions.Create(r.Context(), s)
	if err != nil {
		return errStoreDown.with(err)
	}
	g.setSessionCookie(w, cookie, s.ExpiresAt)
	g.metrics.logins.WithLabelValues("completed").Inc()
	g.metrics.sessions.WithLabelValues("created").Inc()
	g.log.Info("login", "session", s.Handle, "refresh_token", s.Token.RefreshToken != "")
	g.audit(r, evLoginSucceeded, s)

	// The browser arrived here by a cross-site redirect from the provider, and a
	// SameSite=Strict cookie is not sent on any request of that navigation, redirects
	// included. A page that navigates on makes the next request same-site, so the first
	// load of returnUrl is already authenticated.
	g.renderPage(w, http.StatusOK, page{
		Title: "Signed in", Message: "You are signed in. Continuing…",
		Link: f.ReturnURL, LinkText: "Continue", Refresh: f.ReturnURL,
	})
	return nil
}

// safeErrorCode keeps a provider's error code if it is a plain RFC 6749 code, for the
// page and the logs; anything else becomes "provider_error".
func safeErrorCode(code string) string {
	if len(code) > 40 {
		return "provider_error"
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r == '_') {
			return "provider_error"
		}
	}
	return code
}
