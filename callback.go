package gatehouse

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/internal/dpop"
	"github.com/gatehouse-bff/gatehouse/session"
)

// protocolClaims are ID token claims about the token, not the user: /bff/user leaves
// them out.
var protocolClaims = []string{"aud", "azp", "nonce", "at_hash", "c_hash", "s_hash", "exp", "iat", "nbf", "jti", "iss", "sid"}

// handleCallback completes a login: GET /bff/callback?code=…&state=…&iss=….
func (g *Gateway) handleCallback(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	f, err := g.callback(w, r)
	var he *httpError
	if err != nil && errors.As(err, &he) {
		reason := loginFailureReason(he)
		g.metrics.loginFailures.WithLabelValues(reason).Inc()
		g.audit(r, evLoginFailed, nil, slog.String("reason", reason))
	}
	if err != nil && f != nil && f.Silent {
		// A silent login never ends on an error page: the hidden frame is told the user
		// is not signed in, and a page login returns to the app with the provider's code
		// (login_required, consent_required, interaction_required, …).
		switch {
		case f.Frame:
			g.silentResult(w, false)
			return nil
		case he != nil && he.code == "login_refused":
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, withQueryParam(f.ReturnURL, "error", he.reason), http.StatusSeeOther)
			return nil
		}
	}
	return err
}

// callback completes the login and answers, or returns why it failed and, once it is
// known, the flow it was completing.
func (g *Gateway) callback(w http.ResponseWriter, r *http.Request) (*flow, error) {
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL holds the code
	q := r.URL.Query()
	f, err := g.takeFlow(w, r, q.Get("state"))
	if err != nil {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return nil, err
	}
	return f, g.completeLogin(w, r, q, f)
}

// completeLogin checks the authorization response for f, exchanges its code, creates
// the session and answers the browser.
func (g *Gateway) completeLogin(w http.ResponseWriter, r *http.Request, q url.Values, f *flow) error {
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
	// The provider this flow went to, and no other, completes it: an answer whose iss is
	// another provider's is refused (mix-up defence, RFC 9207).
	pv := g.providerNamed(f.Provider)
	if pv == nil {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return errLoginNoFlow
	}
	pcfg := g.cfgOf(pv)
	if err := pv.idp.CheckIssuerParam(r.Context(), q.Get("iss"), q.Has("iss")); err != nil {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		if errors.Is(err, idp.ErrUnavailable) {
			return errProviderDown.with(err)
		}
		if errors.Is(err, idp.ErrTenantNotAllowed) {
			return errTenantNotAllowed.with(err)
		}
		return errBadRequest("login_issuer_mismatch", "The sign-in answer did not come from the expected sign-in service. Please sign in again.").with(err)
	}
	code := q.Get("code")
	if code == "" {
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return errLoginMalformed
	}

	ctx := r.Context()
	var dpopKey []byte
	if pcfg.DPoP {
		// The session's own key pair, made now: the code exchange proves it, and the
		// tokens the provider binds to it are useless without it.
		k, err := dpop.NewKey()
		if err != nil {
			return errStoreDown.with(err)
		}
		ctx, dpopKey = dpop.WithKey(ctx, k), k.Marshal()
	}
	ctx, span := g.startSpan(ctx, "code_exchange") // the token request, the ID token's keys, userinfo
	tokens, id, err := pv.idp.Exchange(ctx, code, f.Verifier, f.Nonce)
	endSpan(span, err)
	if err != nil {
		g.metrics.logins.WithLabelValues("failed").Inc()
		if _, busy := idp.RetryAfter(err); busy {
			return providerDown(err) // 503: the provider is busy, try again
		}
		if errors.Is(err, idp.ErrUnavailable) {
			return errProviderBadGateway.with(err)
		}
		if errors.Is(err, idp.ErrTenantNotAllowed) {
			return errTenantNotAllowed.with(err)
		}
		return &httpError{status: http.StatusBadRequest, code: "login_failed", reason: "token_exchange",
			title: "Sign-in failed", message: "Gatehouse could not complete the sign-in. Please sign in again.",
			cause: err, level: slog.LevelWarn}
	}

	// max_age is measured from when this login started (OIDC Core §3.1.2.1: the user must
	// have authenticated within max_age of the request), not from now: the sign-in itself
	// takes time, and max_age=0 asks for a sign-in during this login.
	if unmet := f.stepUp().unmet(id.Claims, f.Created, pcfg.ClockSkew); unmet != "" {
		// The provider signed the user in, but not as strongly or as recently as the
		// action that asked for this login needs: no session, the old one stays.
		g.metrics.logins.WithLabelValues("rejected").Inc()
		return &httpError{status: http.StatusForbidden, code: "step_up_failed", reason: unmet,
			title: "Sign-in not strong enough", level: slog.LevelWarn,
			message: "The sign-in did not meet what this action needs (a stronger or more recent sign-in). Please try again."}
	}
	claims := id.Claims
	for _, c := range protocolClaims {
		delete(claims, c)
	}
	claims["sub"] = id.Subject
	s := &session.Session{
		// The ID token's issuer: for a multi-tenant provider, the user's tenant's.
		Subject: id.Subject, Issuer: id.Issuer, ProviderSID: id.SID,
		Frontend: g.name, Provider: g.sessionProviderName(pv),
		UserAgent: userAgent(r), IP: g.clientIP(r),
		Claims: claims, ClaimsAt: g.now(), IDToken: tokens.IDToken,
		Token: tokenFrom(tokens, g.now()), DPoPKey: dpopKey,
	}
	if !tokens.RefreshExpiry.IsZero() {
		s.ExpiresAt = tokens.RefreshExpiry // a session never outlives its refresh token
	}
	// A fresh id for every login (no fixation); the browser's previous session ends: the
	// one recorded at /bff/login, and the one whose cookie came with this request, if any.
	g.endReplaced(r, f.Previous)
	cookie, err := g.sessions.Create(r.Context(), s)
	if err != nil {
		return errStoreDown.with(err)
	}
	g.setSessionCookie(w, cookie, s.ExpiresAt)
	g.metrics.logins.WithLabelValues("completed").Inc()
	g.metrics.sessions.WithLabelValues("created").Inc()
	g.log.Info("login", "session", s.Handle, "refresh_token", s.Token.RefreshToken != "")
	g.audit(r, evLoginSucceeded, s)

	if f.Frame {
		g.silentResult(w, true)
		return nil
	}
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

// errTenantNotAllowed: a multi-tenant provider signed in a user of a tenant that
// provider.allowed_tenants does not list.
var errTenantNotAllowed = &httpError{status: http.StatusForbidden, code: "login_failed", reason: "tenant_not_allowed",
	title: "Sign-in not allowed", level: slog.LevelWarn,
	message: "Your organisation's accounts cannot sign in to this application."}

// endReplaced ends the sessions a completed login replaces: the session named by the
// flow (recorded at /bff/login, whose request carried the SameSite=Strict cookie) and
// the session of the cookie this callback carries (a provider on the same site, or
// same_site: lax). Each is ended once, with the reason "replaced" in the audit log.
func (g *Gateway) endReplaced(r *http.Request, previous string) {
	ctx := r.Context()
	var handles []string
	if previous != "" {
		handles = append(handles, previous)
	}
	if c := g.sessionCookie(r); c != "" {
		if prev, err := g.sessions.Load(ctx, c); err == nil && prev.Handle != previous && prev.Frontend == g.name {
			handles = append(handles, prev.Handle)
		}
	}
	for _, h := range handles {
		prev, err := g.sessions.Peek(ctx, h)
		if err != nil {
			prev = &session.Session{Handle: h}
		}
		if ended, _ := g.sessions.End(ctx, h, session.ReasonRevoked); ended {
			g.audit(r, evSessionRevoked, prev, slog.String("by", "login"), slog.String("reason", "replaced"))
		}
	}
}

// authErrorCodes are the error codes an authorization response may carry: RFC 6749
// §4.1.2.1 and OIDC Core §3.1.2.6. Only these reach a metric label, the audit log or the
// response; the parameter is attacker-chosen (anyone can send a callback for a flow they
// started), and one label value per string would be an unbounded set of series.
var authErrorCodes = []string{
	// RFC 6749 §4.1.2.1
	"invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
	"invalid_scope", "server_error", "temporarily_unavailable",
	// OIDC Core §3.1.2.6
	"interaction_required", "login_required", "account_selection_required", "consent_required",
	"invalid_request_uri", "invalid_request_object", "request_not_supported",
	"request_uri_not_supported", "registration_not_supported",
}

// otherProviderError stands for every error code outside authErrorCodes.
const otherProviderError = "provider_error"

// safeErrorCode returns a provider's error code if it is one of authErrorCodes, and
// otherProviderError for anything else.
func safeErrorCode(code string) string {
	if slices.Contains(authErrorCodes, code) {
		return code
	}
	return otherProviderError
}

// loginFailureReason is the reason of a failed callback in the metric and the audit
// log: the error's reason, with the provider's codes as provider_<code>.
func loginFailureReason(he *httpError) string {
	reason := he.reason
	switch {
	case he.code == "login_refused" && reason != otherProviderError:
		reason = "provider_" + reason // provider_access_denied, …
	case he.code == "step_up_failed":
		reason = "step_up_" + reason // step_up_acr, step_up_max_age
	case reason == "":
		reason = he.code
	}
	return reason
}

// withQueryParam appends k=v to the query of the local URL u, before its fragment.
func withQueryParam(u, k, v string) string {
	frag := ""
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u, frag = u[:i], u[i:]
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + url.QueryEscape(k) + "=" + url.QueryEscape(v) + frag
}
