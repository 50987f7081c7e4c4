package gatehouse

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// handleBackchannel implements OpenID Connect Back-Channel Logout 1.0: POST
// /bff/backchannel with logout_token=<JWT>, from the provider, server to server.
//
// Only requests that fail take a token from the sender's rate-limit bucket: the token is
// verified first (against cached keys; the key set bounds JWKS refetches), so that a
// flood of valid or invalid tokens from a provider's shared address never refuses a
// genuine logout. Past the limit, failures get 429 instead of 400.
func (g *Gateway) handleBackchannel(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	w.Header().Set("Cache-Control", "no-store")
	invalid := func(cause error) error {
		if err := g.limitByIP(w, r, limitBackchannel); err != nil {
			return err
		}
		g.metrics.backchannel.WithLabelValues("rejected").Inc()
		g.audit(r, evBackchannelLogout, nil, slog.String("outcome", "rejected"))
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", forceJSON: true, cause: cause, level: slog.LevelWarn}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return invalid(errors.New("content type is not application/x-www-form-urlencoded"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return invalid(errors.New("unreadable form"))
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return invalid(errors.New("no logout_token"))
	}
	// The token's iss picks which of the app's providers verifies it, with its own keys.
	pv := g.logoutTokenProvider(raw)
	if pv == nil {
		return invalid(errors.New("logout token from an issuer that is none of this app's providers"))
	}
	lt, err := pv.idp.VerifyLogoutToken(r.Context(), raw)
	if errors.Is(err, idp.ErrUnavailable) {
		return &httpError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", forceJSON: true, cause: err, level: slog.LevelWarn}
	}
	if err != nil {
		return invalid(err)
	}

	// A logout token is used once: remember its jti until it expires.
	once := lt.Issuer + "\x00" + lt.JTI
	pcfg := g.cfgOf(pv)
	ttl := max(lt.Expiry.Sub(g.now())+pcfg.ClockSkew, time.Second)
	added, err := g.sessions.AddOnce(r.Context(), once, ttl)
	if err != nil {
		return &httpError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", forceJSON: true, cause: err, level: slog.LevelError}
	}
	if !added {
		return invalid(errors.New("replayed logout token (jti seen before)"))
	}

	ended, err := g.endProviderSessions(r.Context(), pv, lt)
	if err != nil {
		// Forget the jti so the provider (or an operator) can retry.
		g.sessions.ForgetOnce(context.WithoutCancel(r.Context()), once)
		return &httpError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", forceJSON: true, cause: err, level: slog.LevelError}
	}
	g.metrics.backchannel.WithLabelValues("accepted").Inc()
	g.metrics.sessions.WithLabelValues("backchannel").Add(float64(ended))
	g.log.Info("back-channel logout", "sessions_ended", ended, "by_sid", lt.SID != "")
	g.audit(r, evBackchannelLogout, &session.Session{Subject: lt.Subject}, slog.String("outcome", "accepted"), slog.Int("sessions_ended", ended), slog.Bool("by_sid", lt.SID != ""))
	w.WriteHeader(http.StatusOK)
	return nil
}

// endProviderSessions ends the sessions a logout token names: those created under its
// sid (checked against its sub when both are given), or every session of its sub when
// it has no sid or the gateway is configured to end them all.
func (g *Gateway) endProviderSessions(ctx context.Context, pv *provider, lt *idp.LogoutToken) (int, error) {
	// Only this app's sessions of this provider: another app's sessions, or another
	// provider's with the same issuer and client, are not this token's to end.
	mine := func(s *session.Session) bool { return s.Frontend == g.name && g.providerOf(s) == pv }
	var targets []*session.Session
	if lt.SID != "" {
		// The token's issuer, not the configured one: a multi-tenant provider's token ends
		// only its own tenant's sessions.
		list, err := g.sessions.ListProviderSession(ctx, lt.Issuer, lt.SID)
		if err != nil {
			return 0, err
		}
		for _, s := range list {
			if (lt.Subject == "" || s.Subject == lt.Subject) && mine(s) {
				targets = append(targets, s)
			}
		}
	}
	if lt.Subject != "" && (lt.SID == "" || g.cfgOf(pv).BackchannelLogoutAllSessions) {
		list, err := g.sessions.ListSubject(ctx, lt.Subject)
		if err != nil {
			return 0, err
		}
		for _, s := range list {
			if s.Issuer == lt.Issuer && mine(s) {
				targets = append(targets, s)
			}
		}
	}
	ended := 0
	for _, s := range targets {
		ok, err := g.sessions.End(ctx, s.Handle, session.ReasonRevoked)
		if err != nil {
			return ended, err
		}
		if ok {
			ended++
		}
	}
	return ended, nil
}
