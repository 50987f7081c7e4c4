package gatehouse

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

// handleDiagnostics: GET /bff/diagnostics, for developers only (insecure_diagnostics,
// refused by Validate unless public_url is loopback). It shows what Gatehouse made of
// its configuration, the provider and the caller's request and session: never a token,
// secret or cookie value, only whether they are there and when they expire.
func (g *Gateway) handleDiagnostics(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	cfg := g.config()
	now := g.now()
	out := map[string]any{"version": Version, "public_url": g.origin, "time": now.UTC()}

	prov := map[string]any{"issuer": cfg.Provider.Issuer, "client_id": cfg.Provider.ClientID,
		"scopes": cfg.Provider.Scopes, "client_secret_set": cfg.Provider.ClientSecret != "",
		"client_key_set": cfg.Provider.ClientKey != nil}
	if ok, err := g.idp.Ready(); ok {
		if meta, err := g.idp.Metadata(r.Context()); err == nil {
			prov["metadata"] = meta
		}
	} else if err != nil {
		prov["discovery_error"] = err.Error()
	}
	out["provider"] = prov

	var routes []map[string]any
	for _, rt := range g.current().routes {
		routes = append(routes, map[string]any{"path": rt.prefix, "upstream": rt.Upstream, "token": rt.Token,
			"methods": rt.Methods, "rules": len(rt.Require), "audience": rt.Audience, "resource": rt.Resource})
	}
	out["routes"] = routes
	out["rate_limits"] = cfg.RateLimits
	out["session_config"] = map[string]any{"store": fmt.Sprintf("%T", g.sessions.Store),
		"idle_timeout": cfg.Session.IdleTimeout.String(), "absolute_timeout": cfg.Session.AbsoluteTimeout.String(),
		"bind_user_agent": cfg.Session.BindUserAgent, "bind_ipv4_prefix": cfg.Session.BindIPv4Prefix,
		"bind_ipv6_prefix": cfg.Session.BindIPv6Prefix, "cookie": cfg.Cookie.Name}
	out["weaker_options"] = cfg.WeakerOptions()

	headers := map[string]string{}
	for _, h := range []string{"Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Forwarded-Host", cfg.CSRF.Header} {
		if v := r.Header.Get(h); v != "" {
			headers[h] = truncate(v, 200)
		}
	}
	out["request"] = map[string]any{"peer": r.RemoteAddr, "client_ip": g.clientIP(r), "user_agent": userAgent(r),
		"headers": headers, "session_cookie_present": g.sessionCookie(r) != ""}

	if s, err := g.loadSession(r); err == nil {
		tokens := map[string]any{"session": tokenInfo(s.Token.AccessToken != "", s.Token.Expiry, now)}
		keys := make([]string, 0, len(s.Audiences))
		for k := range s.Audiences {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tokens[k] = tokenInfo(s.Audiences[k].AccessToken != "", s.Audiences[k].Expiry, now)
		}
		out["session"] = map[string]any{"sid": s.Handle, "subject": s.Subject, "claims": s.Claims,
			"created_at": s.CreatedAt.UTC(), "expires_at": s.ExpiresAt.UTC(), "idle_expires_at": g.sessions.IdleExpiry(s).UTC(),
			"refresh_token": s.Token.RefreshToken != "", "id_token": s.IDToken != "", "access_tokens": tokens,
			"provider_sid": s.ProviderSID != ""}
	} else {
		out["session"] = map[string]any{"error": sessionError(err).reason}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}

func tokenInfo(present bool, expiry time.Time, now time.Time) map[string]any {
	m := map[string]any{"present": present}
	if !expiry.IsZero() {
		m["expires_at"] = expiry.UTC()
		m["expires_in"] = int64(expiry.Sub(now).Seconds())
	}
	return m
}
