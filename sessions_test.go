package gatehouse_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

func (e *env) backchannel(token string) *resp {
	form := url.Values{"logout_token": {token}}
	return e.browser().do("POST", "/bff/backchannel", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
}

func TestBackchannelLogout(t *testing.T) {
	e := newEnv(t)
	b1, b2, other := e.browser(), e.browser(), e.browser()
	b1.login() // sid provider-session-1
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "provider-session-2" })
	b2.login()
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "bob-session"; k.Subject = "bob" })
	other.login()
	e.idp.Set(func(k *idptest.Knobs) { k.SID = ""; k.Subject = "" })

	alive := func(b *browser) bool { return b.api("GET", "/bff/user").StatusCode == 200 }

	for _, tc := range []struct {
		name  string
		token func() string
	}{
		{"forged signature", func() string {
			e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "forged" })
			defer e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "" })
			return e.idp.LogoutToken("alice", "provider-session-1", "logout+jwt", nil)
		}},
		{"alg none", func() string {
			e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "none" })
			defer e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "" })
			return e.idp.LogoutToken("alice", "provider-session-1", "", nil)
		}},
		{"wrong audience", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { c["aud"] = "other-client" })
		}},
		{"wrong issuer", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { c["iss"] = "https://evil.example" })
		}},
		{"with nonce (an ID token replayed)", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { c["nonce"] = "n" })
		}},
		{"no events claim", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { delete(c, "events") })
		}},
		{"neither sub nor sid", func() string { return e.idp.LogoutToken("", "", "", nil) }},
		{"expired", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })
		}},
		{"no iat", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { delete(c, "iat") })
		}},
		{"no jti", func() string {
			return e.idp.LogoutToken("alice", "provider-session-1", "", func(c map[string]any) { delete(c, "jti") })
		}},
		{"typed as an access token", func() string { return e.idp.LogoutToken("alice", "provider-session-1", "at+jwt", nil) }},
		{"not a JWT", func() string { return "not-a-jwt" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.backchannel(tc.token())
			wantJSONError(t, r, 400, "invalid_request", "")
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Fatal("400 without Cache-Control: no-store")
			}
			if !alive(b1) || !alive(b2) {
				t.Fatal("a refused logout token ended a session")
			}
		})
	}
	wantStatus(t, e.browser().do("POST", "/bff/backchannel", strings.NewReader("logout_token=x"), "Content-Type", "text/plain"), 400)
	wantStatus(t, e.browser().get("/bff/backchannel"), 405)

	// By sid, without typ (Dex omits it): only that provider session ends.
	tok := e.idp.LogoutToken("alice", "provider-session-1", "", nil)
	r := e.backchannel(tok)
	wantStatus(t, r, 200)
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatal("200 without Cache-Control: no-store")
	}
	if alive(b1) || !alive(b2) || !alive(other) {
		t.Fatal("sid logout ended the wrong sessions")
	}
	wantJSONError(t, b1.api("GET", "/bff/user"), 401, "unauthenticated", "")
	// Replay of the same jti is refused.
	wantJSONError(t, e.backchannel(tok), 400, "invalid_request", "")

	// By sub only (typ logout+jwt): every session of that subject.
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "", "logout+jwt", nil)), 200)
	if alive(b2) || !alive(other) {
		t.Fatal("sub logout ended the wrong sessions")
	}
	// A sid whose sessions belong to another sub is not ended.
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "bob-session", "", nil)), 200)
	if !alive(other) {
		t.Fatal("a logout token for alice ended bob's session")
	}
}

func TestBackchannelAllSessionsOption(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Provider.BackchannelLogoutAllSessions = true })
	b1, b2 := e.browser(), e.browser()
	b1.login()
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "provider-session-2" })
	b2.login()
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "provider-session-1", "", nil)), 200)
	if b1.api("GET", "/bff/user").StatusCode != 401 || b2.api("GET", "/bff/user").StatusCode != 401 {
		t.Fatal("backchannel_logout_all_sessions did not end every session of the subject")
	}
}

func TestSessionsAPI(t *testing.T) {
	e := newEnv(t)
	laptop, phone := e.browser(), e.browser()
	laptop.do("GET", "/bff/login", nil) // not logged in yet
	laptop.login()
	phone.login()
	e.idp.Set(func(k *idptest.Knobs) { k.Subject = "bob" })
	bob := e.browser()
	bob.login()

	wantJSONError(t, e.browser().api("GET", "/bff/sessions"), 401, "unauthenticated", "no_session")
	r := laptop.api("GET", "/bff/sessions")
	wantStatus(t, r, 200)
	list := decode(t, r)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("alice has %d sessions listed, want 2", len(list))
	}
	laptopSID := decode(t, laptop.api("GET", "/bff/user"))["sid"].(string)
	phoneSID := decode(t, phone.api("GET", "/bff/user"))["sid"].(string)
	bobSID := decode(t, bob.api("GET", "/bff/user"))["sid"].(string)
	for _, item := range list {
		m := item.(map[string]any)
		if (m["sid"] == laptopSID) != (m["current"] == true) {
			t.Fatalf("current flag wrong: %v", m)
		}
		if m["user_agent"] != "Go-http-client/1.1" || m["ip"] != "127.0.0.1" || m["created_at"] == "" {
			t.Fatalf("session entry incomplete: %v", m)
		}
	}
	if strings.Contains(r.body, "at-") || strings.Contains(r.body, laptop.cookie("__Host-gatehouse").Value) {
		t.Fatal("the session list leaks a token or cookie")
	}

	// Signing out another device needs the CSRF header, and only works on one's own.
	wantJSONError(t, laptop.do("DELETE", "/bff/sessions/"+phoneSID, nil), 403, "csrf_rejected", "missing_header")
	wantJSONError(t, laptop.api("DELETE", "/bff/sessions/"+bobSID), 404, "not_found", "")
	wantJSONError(t, laptop.api("DELETE", "/bff/sessions/garbage"), 404, "not_found", "")
	wantStatus(t, bob.api("GET", "/bff/user"), 200)
	wantStatus(t, laptop.api("DELETE", "/bff/sessions/"+phoneSID), 204)
	wantJSONError(t, phone.api("GET", "/bff/user"), 401, "unauthenticated", "session_revoked")
	wantStatus(t, laptop.api("GET", "/bff/user"), 200)

	// Sign out every other device.
	tablet := e.browser()
	e.idp.Set(func(k *idptest.Knobs) { k.Subject = "" })
	tablet.login()
	r = laptop.api("DELETE", "/bff/sessions?others=true")
	wantStatus(t, r, 200)
	if decode(t, r)["ended"] != float64(1) {
		t.Fatalf("others=true ended %v", decode(t, r)["ended"])
	}
	wantStatus(t, tablet.api("GET", "/bff/user"), 401)
	wantStatus(t, laptop.api("GET", "/bff/user"), 200)
	wantStatus(t, bob.api("GET", "/bff/user"), 200)
}

func TestAdminAPI(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Admin.Token = "admin-secret-token" })
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	call := func(method, path, token string) *resp {
		req, _ := http.NewRequest(method, admin.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return &resp{Response: r, body: sb.String()}
	}
	wantStatus(t, call("GET", "/healthz", ""), 200)
	deadline := time.Now().Add(5 * time.Second)
	for call("GET", "/readyz", "").StatusCode != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	wantStatus(t, call("GET", "/readyz", ""), 200)

	b1, b2 := e.browser(), e.browser()
	b1.login()
	b2.login()
	m := call("GET", "/metrics", "")
	if m.StatusCode != 200 || !strings.Contains(m.body, `gatehouse_logins_total{outcome="completed"} 2`) ||
		!strings.Contains(m.body, `gatehouse_http_requests_seconds_count{kind="bff",method="GET",status="200"}`) {
		t.Fatalf("/metrics: %d\n%s", m.StatusCode, m.body)
	}
	if strings.Contains(m.body, "alice") || strings.Contains(m.body, b1.cookie("__Host-gatehouse").Value) {
		t.Fatal("metrics carry user data")
	}
	wantJSONError(t, call("GET", "/admin/sessions?sub=alice", ""), 401, "unauthorized", "")
	wantJSONError(t, call("GET", "/admin/sessions?sub=alice", "wrong"), 401, "unauthorized", "")
	r := call("GET", "/admin/sessions?sub=alice", "admin-secret-token")
	wantStatus(t, r, 200)
	list := decode(t, r)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("admin sees %d sessions", len(list))
	}
	sid := list[0].(map[string]any)["sid"].(string)
	wantStatus(t, call("DELETE", "/admin/sessions/"+sid, "admin-secret-token"), 204)
	wantStatus(t, call("DELETE", "/admin/sessions/"+sid, "admin-secret-token"), 404)
	r = call("DELETE", "/admin/sessions?sub=alice", "admin-secret-token")
	wantStatus(t, r, 200)
	if decode(t, r)["ended"] != float64(1) {
		t.Fatalf("ended = %v", decode(t, r)["ended"])
	}
	wantStatus(t, b1.api("GET", "/bff/user"), 401)
	wantStatus(t, b2.api("GET", "/bff/user"), 401)

	// Without a token configured the admin API does not exist.
	e2 := newEnv(t)
	admin2 := httptest.NewServer(e2.gw.AdminHandler())
	defer admin2.Close()
	req, _ := http.NewRequest("GET", admin2.URL+"/admin/sessions?sub=alice", nil)
	req.Header.Set("Authorization", "Bearer ")
	res, _ := http.DefaultClient.Do(req)
	if res.StatusCode != 404 {
		t.Fatalf("admin API without a token: %d", res.StatusCode)
	}
}

func TestReadyzReportsProviderDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	issuer := down.URL
	down.Close()
	gw, err := gatehouse.New(gatehouse.Config{PublicURL: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler),
		Provider: gatehouse.ProviderConfig{Issuer: issuer, ClientID: "c", ClientSecret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	rec := httptest.NewRecorder()
	gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "provider") {
		t.Fatalf("/readyz with the provider down = %d %s", rec.Code, rec.Body)
	}
	// Logins fail with a clear 503 page, not a 500.
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/bff/login", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	gw.ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Fatalf("/bff/login with the provider down = %d %s", rec.Code, rec.Body)
	}
}
