package gatehouse_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestLoginUserLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "no_session")

	r := b.get("/bff/login?returnUrl=" + url.QueryEscape("/orders?id=7"))
	wantStatus(t, r, http.StatusFound)
	auth, _ := url.Parse(r.Header.Get("Location"))
	q := auth.Query()
	if !strings.HasPrefix(auth.String(), e.idp.Issuer+"/authorize") || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" ||
		q.Get("redirect_uri") != e.url+"/bff/callback" || q.Get("response_type") != "code" ||
		q.Get("scope") != "openid profile email offline_access" {
		t.Fatalf("authorize URL lacks a required parameter: %s", auth)
	}
	var flow *http.Cookie
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, "__Host-gatehouse-flow-") {
			flow = c
		}
	}
	if flow == nil || !flow.HttpOnly || !flow.Secure || flow.Path != "/" || flow.Domain != "" ||
		flow.SameSite != http.SameSiteLaxMode || flow.MaxAge != 600 {
		t.Fatalf("flow cookie = %+v; want HttpOnly, Secure, Path=/, no Domain, SameSite=Lax, Max-Age=600", flow)
	}

	r = b.get(auth.String())
	cb := b.get(r.Header.Get("Location"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, cb, http.StatusOK)
	if !strings.Contains(cb.body, `content="0;url=/orders?id=7"`) {
		t.Fatalf("callback page does not navigate on to returnUrl: %s", cb.body)
	}
	if cb.Header.Get("Referrer-Policy") != "no-referrer" || cb.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("callback headers: %v", cb.Header)
	}
	var sc *http.Cookie
	for _, c := range cb.Cookies() {
		if c.Name == "__Host-gatehouse" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.Path != "/" || sc.Domain != "" || sc.SameSite != http.SameSiteStrictMode || len(sc.Value) < 43 {
		t.Fatalf("session cookie = %+v; want __Host-, HttpOnly, Secure, Path=/, SameSite=Strict, >=256 bits", sc)
	}
	if b.cookie(flow.Name) != nil {
		t.Fatal("flow cookie survived the callback")
	}

	r = b.api("GET", "/bff/user")
	wantStatus(t, r, 200)
	u := decode(t, r)
	claims := u["claims"].(map[string]any)
	if claims["sub"] != "alice" || claims["email"] != "alice@example.com" || claims["name"] != "Alice Example" {
		t.Fatalf("claims = %v", claims)
	}
	if g, _ := claims["groups"].([]any); len(g) != 1 || g[0] != "staff" {
		t.Fatalf("userinfo claims were not merged: %v", claims)
	}
	for _, c := range []string{"nonce", "aud", "exp", "iat", "sid", "at_hash", "iss"} {
		if _, ok := claims[c]; ok {
			t.Errorf("protocol claim %q leaked into /bff/user", c)
		}
	}
	sid, _ := u["sid"].(string)
	sess, _ := u["session"].(map[string]any)
	if len(sid) != 22 || u["logout_url"] != "/bff/logout?sid="+sid || sess["expires_in"].(float64) < 3600 ||
		sess["idle_expires_in"].(float64) > 1800 {
		t.Fatalf("/bff/user = %v", u)
	}
	if strings.Contains(r.body, sc.Value) || strings.Contains(r.body, "at-") || strings.Contains(r.body, "rt-") {
		t.Fatal("/bff/user leaks the cookie or a token")
	}

	// Logout without the CSRF header changes nothing.
	wantJSONError(t, b.do("POST", "/bff/logout", nil, "Accept", "application/json"), 403, "csrf_rejected", "missing_header")
	wantStatus(t, b.api("GET", "/bff/user"), 200)

	r = b.api("POST", "/bff/logout?returnUrl=/bye")
	wantStatus(t, r, 200)
	end, err := url.Parse(decode(t, r)["redirect_url"].(string))
	if err != nil || !strings.HasPrefix(end.String(), e.idp.Issuer+"/end_session?") {
		t.Fatalf("logout redirect_url = %v", end)
	}
	eq := end.Query()
	if eq.Get("id_token_hint") == "" || eq.Get("post_logout_redirect_uri") != e.url+"/bff/logout/callback" ||
		eq.Get("state") == "" || eq.Get("client_id") != e.idp.ClientID {
		t.Fatalf("end-session URL lacks parameters: %s", end)
	}
	if e.idp.Count("revoke") != 1 {
		t.Fatalf("refresh token revoked %d times, want 1", e.idp.Count("revoke"))
	}
	if b.cookie("__Host-gatehouse") != nil {
		t.Fatal("session cookie not cleared")
	}
	// The provider sends the browser back: it lands on returnUrl.
	r = b.get("/bff/logout/callback?state=" + url.QueryEscape(eq.Get("state")))
	wantStatus(t, r, http.StatusFound)
	if r.Header.Get("Location") != "/bye" {
		t.Fatalf("logout callback went to %q", r.Header.Get("Location"))
	}
	// A forged state lands on / instead.
	b2 := e.browser()
	b2.login()
	wantStatus(t, b2.api("POST", "/bff/logout?returnUrl=/bye"), 200)
	r = b2.get("/bff/logout/callback?state=forged")
	if r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/" {
		t.Fatalf("a forged logout state led to %d %q, want / ", r.StatusCode, r.Header.Get("Location"))
	}
}

func TestReturnURLVariants(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ in, want string }{
		{"/ok/path?x=1#frag", "/ok/path?x=1#frag"},
		{"/", "/"},
		{"", "/"},
		{"//evil.example", "/"},
		{"https://evil.example/", "/"},
		{"/\\evil.example", "/"},
		{"\\\\evil.example", "/"},
		{"/%2F%2Fevil.example", "/"},
		{"/%2fevil.example", "/"},
		{"/%5Cevil.example", "/"},
		{"%2F%2Fevil.example", "/"},
		{"/%252F%252Fevil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/\tevil", "/"},
		{"/ok\r\nSet-Cookie: x=1", "/"},
		{" /x", "/"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b := e.browser()
			cb := b.get(b.startLogin(tc.in), "Sec-Fetch-Mode", "navigate")
			wantStatus(t, cb, 200)
			want := `content="0;url=` + htmlEscape(tc.want) + `"`
			if !strings.Contains(cb.body, want) {
				t.Fatalf("returnUrl %q: callback page does not go to %q:\n%s", tc.in, tc.want, cb.body)
			}
		})
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "#", "#", "?", "?").Replace(s)
}

func TestSeveralTabsLogInAtOnce(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	cb1 := b.startLogin("/one")
	cb2 := b.startLogin("/two")
	r2 := b.get(cb2)
	wantStatus(t, r2, 200)
	r1 := b.get(cb1)
	wantStatus(t, r1, 200)
	if !strings.Contains(r1.body, "url=/one") || !strings.Contains(r2.body, "url=/two") {
		t.Fatal("flows got mixed up")
	}
	// The second completed login replaced the first session; one works.
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

func TestAuthParams(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Provider.AuthParams = map[string]string{"prompt": "consent", "audience": "https://api.example"}
		c.Provider.AllowedAuthParams = []string{"prompt", "login_hint", "max_age"}
	})
	b := e.browser()
	r := b.get("/bff/login?prompt=login&login_hint=alice%40example.com&ui_locales=fr&state=evil&redirect_uri=https://evil")
	u, _ := url.Parse(r.Header.Get("Location"))
	q := u.Query()
	if q.Get("prompt") != "consent login" || q.Get("login_hint") != "alice@example.com" || q.Get("audience") != "https://api.example" {
		t.Fatalf("allowed parameters not passed: %v", q)
	}
	if q.Has("ui_locales") || q.Get("state") == "evil" || q.Get("redirect_uri") != e.url+"/bff/callback" {
		t.Fatalf("a parameter passed that should not: %v", q)
	}
	// acr_values and max_age are step-up parameters: passed whatever the list says (the
	// callback holds the login to them, TestStepUpLogin), refused when unreadable.
	r = b.get("/bff/login?acr_values=gold&max_age=0")
	u, _ = url.Parse(r.Header.Get("Location"))
	if q := u.Query(); q.Get("acr_values") != "gold" || q.Get("max_age") != "0" {
		t.Fatalf("step-up parameters not passed: %v", q)
	}
	wantStatus(t, b.get("/bff/login?max_age=abc"), http.StatusBadRequest)
}

func TestHeadDoesNotConsumeAFlow(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	cb := b.startLogin("/")
	wantStatus(t, b.do("HEAD", cb, nil), http.StatusMethodNotAllowed)
	wantStatus(t, b.do("HEAD", "/bff/login", nil), http.StatusMethodNotAllowed)
	wantStatus(t, b.get(cb), 200)
}

// TestReloginEndsThePreviousSessionWithoutItsCookie: with the provider on another site,
// the SameSite=Strict session cookie is not sent on the redirect back to the callback. The
// session the browser had when it went to /bff/login (a same-site request, which carries
// the cookie) still ends when the new login completes, so a stolen old cookie dies with it.
// Another browser's login ends nothing of this one's.
func TestReloginEndsThePreviousSessionWithoutItsCookie(t *testing.T) {
	e := newEnv(t)
	u := mustURL(e.url)
	b := e.browser()
	b.login()
	old := b.cookie("__Host-gatehouse").Value
	bystander := e.browser()
	bystander.login()

	cb := b.startLogin("/") // /bff/login carries the session cookie
	// What a browser does on the cross-site redirect from the provider: no Strict cookie.
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-gatehouse", Value: "", Path: "/", MaxAge: -1}})
	if b.cookie("__Host-gatehouse") != nil {
		t.Fatal("the test could not drop the session cookie")
	}
	wantStatus(t, b.get(cb, "Sec-Fetch-Mode", "navigate"), 200)
	if c := b.cookie("__Host-gatehouse"); c == nil || c.Value == old {
		t.Fatal("the login issued no new session cookie")
	}
	wantStatus(t, b.api("GET", "/bff/user"), 200)

	thief := e.browser()
	thief.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-gatehouse", Value: old, Path: "/", Secure: true}})
	wantJSONError(t, thief.api("GET", "/bff/user"), 401, "unauthenticated", "session_revoked")
	e.wantAudit("session_revoked", map[string]any{"by": "login", "reason": "replaced", "subject": "alice"})
	wantStatus(t, bystander.api("GET", "/bff/user"), 200)

	// A login started without a session names none.
	anon := e.browser()
	wantStatus(t, anon.get(anon.startLogin("/")), 200)
	wantStatus(t, bystander.api("GET", "/bff/user"), 200)
}
