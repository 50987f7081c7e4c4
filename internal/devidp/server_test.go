package devidp

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDiscovery(t *testing.T) {
	for _, path := range []string{"", "/dex", "/idp/"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			e := newEnv(t, path, nil) // go-oidc has already checked that issuer matches exactly
			r := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, e.url("/.well-known/openid-configuration")))
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("discovery: %d %s", r.status, r.header.Get("Content-Type"))
			}
			d := r.json(t)
			base := strings.TrimSuffix(e.srv.Issuer(), "/")
			want := map[string]any{
				"issuer":                                         e.srv.Issuer(),
				"authorization_endpoint":                         base + "/authorize",
				"token_endpoint":                                 base + "/token",
				"userinfo_endpoint":                              base + "/userinfo",
				"jwks_uri":                                       base + "/jwks",
				"revocation_endpoint":                            base + "/revoke",
				"end_session_endpoint":                           base + "/end_session",
				"response_types_supported":                       []any{"code"},
				"code_challenge_methods_supported":               []any{"S256"},
				"grant_types_supported":                          []any{"authorization_code", "refresh_token", "client_credentials"},
				"token_endpoint_auth_methods_supported":          []any{"client_secret_basic", "client_secret_post"},
				"id_token_signing_alg_values_supported":          []any{"RS256"},
				"authorization_response_iss_parameter_supported": true,
				"backchannel_logout_supported":                   true,
				"backchannel_logout_session_supported":           true,
			}
			for k, v := range want {
				if !reflect.DeepEqual(d[k], v) {
					t.Errorf("%s = %#v, want %#v", k, d[k], v)
				}
			}
			// Every advertised endpoint is served (anything but 404/405 will do).
			for _, k := range []string{"authorization_endpoint", "jwks_uri", "end_session_endpoint", "userinfo_endpoint"} {
				r := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, d[k].(string)))
				if r.status == http.StatusNotFound || r.status == http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d", k, d[k], r.status)
				}
			}
			jwks := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, d["jwks_uri"].(string))).json(t)
			keys, _ := jwks["keys"].([]any)
			if len(keys) != 1 {
				t.Fatalf("jwks = %v", jwks)
			}
			key := keys[0].(map[string]any)
			if key["kty"] != "RSA" || key["alg"] != "RS256" || key["use"] != "sig" || key["kid"] == "" || key["d"] != nil {
				t.Errorf("jwk = %v", key)
			}
		})
	}
}

// TestPagesSayDevelopmentOnly: every HTML page carries the notice, loads
// nothing from elsewhere and cannot be framed.
func TestPagesSayDevelopmentOnly(t *testing.T) {
	e := newEnv(t, "", nil)
	f := newFlow()
	cases := []struct {
		name       string
		url        string
		wantStatus int
	}{
		{name: "home", url: e.url("/"), wantStatus: 200},
		{name: "sessions", url: e.url("/sessions"), wantStatus: 200},
		{name: "login", url: e.authURL(f), wantStatus: 200},
		{name: "error", url: e.url("/authorize?client_id=nobody"), wantStatus: 400},
		{name: "signed out", url: e.url("/end_session"), wantStatus: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newBrowser(t).get(tc.url)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d", r.status, tc.wantStatus)
			}
			if !strings.Contains(r.body, "Development identity provider — not for production") {
				t.Errorf("page lacks the notice:\n%s", r.body)
			}
			if strings.Contains(r.body, "<script") || strings.Contains(r.body, "src=") || strings.Contains(r.body, "<link") {
				t.Errorf("page loads resources:\n%s", r.body)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
		})
	}
}

// TestSessionCookie: the provider's cookie cannot collide with Gatehouse's
// __Host-gatehouse* cookies and is not readable by scripts.
func TestSessionCookie(t *testing.T) {
	e := newEnv(t, "", nil)
	b := newBrowser(t)
	id := loginForm(t, b.get(e.authURL(newFlow())))
	r := b.post(e.url("/login"), url.Values{"request": {id}, "user": {"alice"}})
	var found bool
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name != sessionCookie {
			continue
		}
		found = true
		if strings.HasPrefix(c.Name, "__Host-gatehouse") || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Errorf("cookie = %+v", c)
		}
	}
	if !found {
		t.Fatalf("no %s cookie set: %v", sessionCookie, r.header["Set-Cookie"])
	}
}

// TestSweep: expired sessions, codes, grants and tokens are dropped.
func TestSweep(t *testing.T) {
	e := newEnv(t, "", nil)
	e.codeFlow("alice", false)
	newBrowser(t).get(e.authURL(newFlow())) // a login form left open
	counts := func() []int {
		e.srv.st.mu.Lock()
		defer e.srv.st.mu.Unlock()
		st := e.srv.st
		return []int{len(st.sessions), len(st.logins), len(st.codes), len(st.grants), len(st.refresh), len(st.access)}
	}
	if got := counts(); !reflect.DeepEqual(got, []int{1, 1, 1, 1, 1, 1}) {
		t.Fatalf("before: sessions, logins, codes, grants, refresh, access = %v", got)
	}
	e.clock.Advance(DefaultRefreshTokenTTL + time.Minute)
	newBrowser(t).get(e.url("/")) // any request sweeps
	if got := counts(); !reflect.DeepEqual(got, []int{0, 0, 0, 0, 0, 0}) {
		t.Errorf("after: sessions, logins, codes, grants, refresh, access = %v, want all 0", got)
	}
}
