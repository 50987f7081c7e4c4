package gatehouse

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gatehouse-bff/gatehouse/session"
)

// Audit events, one JSON line each on the audit logger. The event name is both the
// record's message and its "event" field.
const (
	evLoginStarted      = "login_started"
	evLoginSucceeded    = "login_succeeded"
	evLoginFailed       = "login_failed"
	evLogout            = "logout"
	evRefreshSucceeded  = "refresh_succeeded"
	evRefreshFailed     = "refresh_failed"
	evSessionExpired    = "session_expired"
	evSessionRevoked    = "session_revoked"
	evBackchannelLogout = "backchannel_logout"
	evCSRFRejected      = "csrf_rejected"
	evRateLimited       = "rate_limited"
	evRouteDenied       = "route_denied"
	evAdminDenied       = "admin_denied"
	evStepUpRequired    = "step_up_required"
)

// auditEvents lists every event, for the metric's label values and the docs' test.
var auditEvents = []string{evLoginStarted, evLoginSucceeded, evLoginFailed, evLogout, evRefreshSucceeded,
	evRefreshFailed, evSessionExpired, evSessionRevoked, evBackchannelLogout, evCSRFRejected, evRateLimited, evRouteDenied, evAdminDenied, evStepUpRequired}

// audit writes one audit event. r may be nil (work not tied to a browser request) and so
// may s. Fields: event, subject, session (the session's public handle, never the cookie),
// ip (the peer, or the client a trusted proxy names), user_agent, request_id, then attrs (route,
// reason, by, …). Callers never pass a token, code, secret or cookie value.
func (g *Gateway) audit(r *http.Request, event string, s *session.Session, attrs ...slog.Attr) {
	g.metrics.audit.WithLabelValues(event).Inc()
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	if !g.auditLog.Enabled(ctx, slog.LevelInfo) {
		return
	}
	all := make([]slog.Attr, 0, 7+len(attrs))
	all = append(all, slog.String("event", event))
	if s != nil {
		all = append(all, slog.String("subject", s.Subject))
		if s.Handle != "" {
			all = append(all, slog.String("session", s.Handle))
		}
	}
	if r != nil {
		all = append(all, slog.String("ip", g.clientIP(r)), slog.String("user_agent", userAgent(r)))
		if id := requestID(r); id != "" {
			all = append(all, slog.String("request_id", id))
		}
	}
	all = append(all, attrs...)
	g.auditLog.LogAttrs(ctx, slog.LevelInfo, event, all...)
}

// auditFailure records the audit event a failed request calls for, if any: CSRF
// refusals and claim-rule denials. route is the route's prefix or the /bff/ endpoint.
func (g *Gateway) auditFailure(r *http.Request, route string, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		return
	}
	switch {
	case he.code == "csrf_rejected":
		g.audit(r, evCSRFRejected, he.sess, slog.String("route", route), slog.String("reason", he.reason))
	case he.code == "step_up_required":
		g.audit(r, evStepUpRequired, he.sess, slog.String("route", route), slog.String("source", "route"))
	case he == errForbiddenClaims || he.reason == "claims":
		g.audit(r, evRouteDenied, he.sess, slog.String("route", route), slog.String("reason", "claims"))
	}
}
