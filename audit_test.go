package gatehouse_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// auditEvents parses the audit log.
func (e *env) auditEvents() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("audit line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// wantAudit finds the last event named ev whose fields include want.
func (e *env) wantAudit(ev string, want map[string]any) map[string]any {
	e.t.Helper()
	evs := e.auditEvents()
	for i := len(evs) - 1; i >= 0; i-- {
		m := evs[i]
		if m["event"] != ev || m["msg"] != ev {
			continue
		}
		ok := true
		for k, v := range want {
			if m[k] != v {
				ok = false
			}
		}
		if ok {
			if _, has := m["time"]; !has {
				e.t.Fatalf("audit event %s has no time: %v", ev, m)
			}
			return m
		}
	}
	e.t.Fatalf("no audit event %s with %v; audit log:\n%s", ev, want, e.audit.String())
	return nil
}

func TestAuditLog(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) { c.Admin.Token = "admin-token-123" })
	e.idp.Set(func(k *idptest.Knobs) { k.RotateRefresh = true })
	b := e.browser()
	ua := "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"
	b.get("/bff/login", "User-Agent", ua)
	e.wantAudit("login_started", map[string]any{"ip": "127.0.0.1", "user_agent": ua})

	b.login()
	sid := decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	e.wantAudit("login_succeeded", map[string]any{"subject": "alice", "session": sid, "ip": "127.0.0.1"})

	// A callback whose state no flow knows.
	b.get("/bff/callback?code=x&state=nope")
	e.wantAudit("login_failed", map[string]any{"reason": "login_no_flow"})
	// The provider refuses.
	e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "access_denied" })
	b2 := e.browser()
	b2.get(b2.startLogin("/"))
	e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "" })
	e.wantAudit("login_failed", map[string]any{"reason": "provider_access_denied"})

	// A back-channel logout of another provider session (the fake provider's tokens
	// are dated by the real clock: before the test clock moves).
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "bc-session" })
	e.browser().login()
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "" })
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "bc-session", "", nil)), 200)
	e.wantAudit("backchannel_logout", map[string]any{"outcome": "accepted", "subject": "alice", "sessions_ended": float64(1)})
	e.backchannel("not-a-jwt")
	e.wantAudit("backchannel_logout", map[string]any{"outcome": "rejected"})

	b.do("GET", "/api/x", nil) // no CSRF header
	e.wantAudit("csrf_rejected", map[string]any{"route": "/api/", "reason": "missing_header", "subject": "alice", "session": sid})
	b.api("GET", "/api/admin/x")
	e.wantAudit("route_denied", map[string]any{"route": "/api/admin/", "reason": "claims", "subject": "alice"})

	e.clock.Advance(2 * time.Minute) // the access token expired
	wantStatus(t, b.api("GET", "/api/x"), 200)
	e.wantAudit("refresh_succeeded", map[string]any{"subject": "alice", "session": sid, "token": "session"})

	// Another device; the first revokes it.
	other := e.browser()
	other.login()
	otherSID := decode(t, other.api("GET", "/bff/user"))["sid"].(string)
	wantStatus(t, b.api("DELETE", "/bff/sessions/"+otherSID), 204)
	e.wantAudit("session_revoked", map[string]any{"session": otherSID, "by": "user", "subject": "alice"})

	// An admin ends the session of a third device.
	third := e.browser()
	third.login()
	thirdSID := decode(t, third.api("GET", "/bff/user"))["sid"].(string)
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	req, _ := http.NewRequest("DELETE", admin.URL+"/admin/sessions/"+thirdSID, nil)
	req.Header.Set("Authorization", "Bearer admin-token-123")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("admin delete: %v %v", r, err)
	}
	e.wantAudit("session_revoked", map[string]any{"session": thirdSID, "by": "admin", "subject": "alice"})
	req, _ = http.NewRequest("GET", admin.URL+"/admin/sessions?sub=alice", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	http.DefaultClient.Do(req)
	e.wantAudit("admin_denied", map[string]any{"route": "/admin/sessions"})

	// The provider refuses the refresh: the session ends.
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_grant" })
	e.clock.Advance(2 * time.Minute)
	wantJSONError(t, b.api("GET", "/api/x"), 401, "unauthenticated", "refresh_failed")
	e.wantAudit("refresh_failed", map[string]any{"reason": "refused", "session": sid})
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 0, "" })

	// Logout, back-channel logout, idle expiry.
	b.login()
	sid = decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	e.wantAudit("logout", map[string]any{"session": sid, "subject": "alice"})

	b.login()
	sid = decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	e.clock.Advance(31 * time.Minute)
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "session_expired")
	e.wantAudit("session_expired", map[string]any{"session": sid})

	// Nothing secret, ever.
	log := e.audit.String()
	for _, s := range append(e.idp.AccessTokens(), e.idp.ClientSecret, "admin-token-123") {
		if strings.Contains(log, s) {
			t.Errorf("the audit log contains a secret (%.8s…)", s)
		}
	}
	if regexp.MustCompile(`"code"|__Host-gatehouse=|refresh_token"`).MatchString(log) {
		t.Error("the audit log has a code, cookie or token field")
	}
}
