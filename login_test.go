package gatehouse_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
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

func TestReusedSessionCookieAfterLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	stolen := b.cookie("__Host-gatehouse").Value
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	thief := e.browser()
	r := thief.do("GET", "/bff/user", nil, "Cookie", "__Host-gatehouse="+stolen)
	wantJSONError(t, r, 401, "unauthenticated", "session_revoked")
}

func TestLogoutGetForm(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	sid := decode(t, b.api("GET", "/bff/user"))["sid"].(string)

	for _, bad := range []string{"", "wrong", sid[:21] + "x"} {
		r := b.get("/bff/logout?sid="+url.QueryEscape(bad), "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, 400)
		if !strings.Contains(r.body, "<html") {
			t.Fatalf("a person gets a page, got %q", r.body)
		}
		wantStatus(t, b.api("GET", "/bff/user"), 200)
	}
	r := b.get("/bff/logout?sid="+sid, "Sec-Fetch-Mode", "navigate")
	wantStatus(t, r, http.StatusFound)
	if !strings.HasPrefix(r.Header.Get("Location"), e.idp.Issuer+"/end_session") {
		t.Fatalf("GET logout went to %q", r.Header.Get("Location"))
	}
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "")
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

func TestCallbackBadInputs(t *testing.T) {
	e := newEnv(t)

	t.Run("no flow cookie (state from another browser)", func(t *testing.T) {
		attacker := e.browser()
		cbURL := attacker.startLogin("/")
		victim := e.browser()
		r := victim.get(cbURL, "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, 400)
		if victim.cookie("__Host-gatehouse") != nil {
			t.Fatal("login CSRF created a session")
		}
		if !strings.Contains(r.body, "Sign in again") || strings.Contains(r.body, "goroutine") {
			t.Fatalf("page: %s", r.body)
		}
	})
	t.Run("state mismatch", func(t *testing.T) {
		b := e.browser()
		cb, _ := url.Parse(b.startLogin("/"))
		q := cb.Query()
		q.Set("state", "tampered"+q.Get("state"))
		cb.RawQuery = q.Encode()
		wantStatus(t, b.get(cb.String()), 400)
		if b.cookie("__Host-gatehouse") != nil {
			t.Fatal("session created")
		}
	})
	t.Run("replayed callback", func(t *testing.T) {
		b := e.browser()
		cb := b.startLogin("/")
		wantStatus(t, b.get(cb), 200)
		first := b.cookie("__Host-gatehouse").Value
		r := b.get(cb, "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, 400)
		if b.cookie("__Host-gatehouse").Value != first {
			t.Fatal("the replay replaced the session")
		}
		// Even with a copy of the flow cookie, a completed flow cannot complete again.
		if e.idp.Count("authorization_code") != 1 {
			t.Fatalf("replay reached the token endpoint (%d exchanges)", e.idp.Count("authorization_code"))
		}
	})
	t.Run("tampered flow cookie", func(t *testing.T) {
		b := e.browser()
		cb := b.startLogin("/")
		for _, c := range b.c.Jar.Cookies(mustURL("https" + strings.TrimPrefix(e.url, "http"))) {
			if strings.HasPrefix(c.Name, "__Host-gatehouse-flow-") {
				r := b.do("GET", cb, nil, "Cookie", c.Name+"=AAAA"+c.Value[4:])
				r2 := e.browser().do("GET", cb, nil, "Cookie", c.Name+"=garbage")
				wantStatus(t, r, 400)
				wantStatus(t, r2, 400)
			}
		}
	})
	t.Run("provider error", func(t *testing.T) {
		e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "access_denied" })
		defer e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "" })
		b := e.browser()
		r := b.get(b.startLogin("/"), "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, 403)
		if strings.Contains(r.body, "script") || strings.Contains(r.body, "provider text") {
			t.Fatal("the provider's error_description reached the page")
		}
		if !strings.Contains(r.body, "cancelled") {
			t.Fatalf("page does not explain: %s", r.body)
		}
	})
	t.Run("provider error as JSON", func(t *testing.T) {
		e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "server_error" })
		defer e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "" })
		b := e.browser()
		r := b.get(b.startLogin("/"), "Accept", "application/json")
		wantJSONError(t, r, 403, "login_refused", "server_error")
	})

	for _, tc := range []struct {
		name   string
		knobs  func(k *idptest.Knobs)
		status int
	}{
		{"iss missing while advertised", func(k *idptest.Knobs) { k.IssParam = "omit" }, 400},
		{"iss of another provider", func(k *idptest.Knobs) { k.IssParam = "https://evil.example" }, 400},
		{"ID token forged signature", func(k *idptest.Knobs) { k.SignWith = "forged" }, 400},
		{"ID token alg none", func(k *idptest.Knobs) { k.SignWith = "none" }, 400},
		{"ID token HS256 with client secret", func(k *idptest.Knobs) { k.SignWith = "HS256" }, 400},
		{"ID token wrong audience", func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c["aud"] = "someone-else" } }, 400},
		{"ID token audience array without us", func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c["aud"] = []string{"a", "b"} } }, 400},
		{"ID token wrong issuer", func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c["iss"] = "https://evil.example" } }, 400},
		{"ID token expired", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }
		}, 400},
		{"ID token wrong nonce", func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c["nonce"] = "other" } }, 400},
		{"ID token without nonce", func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { delete(c, "nonce") } }, 400},
		{"ID token at_hash mismatch", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }
		}, 400},
		{"userinfo about another subject", func(k *idptest.Knobs) { k.UserinfoSubject = "mallory" }, 400},
		{"token endpoint refuses", func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 400, "invalid_grant" }, 400},
		{"token endpoint fails", func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 500, "server_error" }, 502},
		{"token type not bearer", func(k *idptest.Knobs) { k.TokenType = "DPoP" }, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.idp.Set(tc.knobs)
			defer e.idp.Set(func(k *idptest.Knobs) { *k = idptest.Knobs{AdvertiseIss: true} })
			b := e.browser()
			r := b.get(b.startLogin("/"), "Sec-Fetch-Mode", "navigate")
			wantStatus(t, r, tc.status)
			if b.cookie("__Host-gatehouse") != nil {
				t.Fatal("a session was created")
			}
			if strings.Contains(r.body, "secret-looking") || strings.Contains(r.body, "oidc:") || strings.Contains(r.body, "idp:") {
				t.Fatalf("internal error text reached the page: %s", r.body)
			}
		})
	}
}

func TestIssuerParamOptionalWhenNotAdvertised(t *testing.T) {
	noIss := func(k *idptest.Knobs) { k.IssParam, k.AdvertiseIss = "omit", false }
	e := newEnvKnobs(t, noIss)
	b := e.browser()
	wantStatus(t, b.get(b.startLogin("/")), 200)

	strict := newEnvKnobs(t, noIss, func(c *gatehouse.Config) { c.Provider.RequireIssuerParam = true })
	b = strict.browser()
	wantStatus(t, b.get(b.startLogin("/")), 400)
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
	r := b.get("/bff/login?prompt=login&login_hint=alice%40example.com&max_age=abc&acr_values=gold&state=evil&redirect_uri=https://evil")
	u, _ := url.Parse(r.Header.Get("Location"))
	q := u.Query()
	if q.Get("prompt") != "consent login" || q.Get("login_hint") != "alice@example.com" || q.Get("audience") != "https://api.example" {
		t.Fatalf("allowed parameters not passed: %v", q)
	}
	if q.Has("max_age") || q.Has("acr_values") || q.Get("state") == "evil" || q.Get("redirect_uri") != e.url+"/bff/callback" {
		t.Fatalf("a parameter passed that should not: %v", q)
	}
}

func TestUnreadableCookieIsClearedNotFatal(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/bff/user", nil, "Cookie", "__Host-gatehouse=not-a-session")
	wantJSONError(t, r, 401, "unauthenticated", "no_session")
	cleared := false
	for _, c := range r.Cookies() {
		cleared = cleared || (c.Name == "__Host-gatehouse" && c.MaxAge < 0)
	}
	if !cleared {
		t.Fatal("an unreadable session cookie was not cleared")
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestLogoutWithoutIDTokenHint(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Provider.OmitIDTokenHint = true })
	b := e.browser()
	b.login()
	end, _ := url.Parse(decode(t, b.api("POST", "/bff/logout"))["redirect_url"].(string))
	if end.Query().Has("id_token_hint") || end.Query().Get("client_id") != e.idp.ClientID {
		t.Fatalf("end-session URL = %s", end)
	}
}

func TestHeadDoesNotConsumeAFlow(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	cb := b.startLogin("/")
	wantStatus(t, b.do("HEAD", cb, nil), http.StatusMethodNotAllowed)
	wantStatus(t, b.do("HEAD", "/bff/login", nil), http.StatusMethodNotAllowed)
	wantStatus(t, b.get(cb), 200)
}

func TestUserSlidesIdleTimeout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	e.clock.Advance(10 * time.Minute)
	idle := func(slide bool) float64 {
		q := ""
		if !slide {
			q = "?slide=false"
		}
		return decode(t, b.api("GET", "/bff/user"+q))["session"].(map[string]any)["idle_expires_in"].(float64)
	}
	if got := idle(false); got != 20*60 {
		t.Fatalf("idle_expires_in without sliding = %v, want 1200", got)
	}
	if got := idle(true); got != 30*60 {
		t.Fatalf("idle_expires_in after sliding = %v, want the full 1800", got)
	}
	if got := idle(false); got != 30*60 {
		t.Fatalf("the slide was not saved: %v", got)
	}
}

func TestUserRefusesOtherOrigins(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	before := decode(t, b.api("GET", "/bff/user?slide=false"))["session"].(map[string]any)["idle_expires_in"]
	e.clock.Advance(5 * time.Minute)
	// A page on a sibling origin of the same site (or another site) cannot slide the
	// session through /bff/user, nor list sessions.
	for _, site := range []string{"same-site", "cross-site"} {
		wantJSONError(t, b.get("/bff/user", "Sec-Fetch-Site", site, "Sec-Fetch-Mode", "cors"), 403, "csrf_rejected", "cross_origin")
		wantJSONError(t, b.get("/bff/sessions", "Sec-Fetch-Site", site, "Sec-Fetch-Mode", "cors"), 403, "csrf_rejected", "cross_origin")
	}
	wantJSONError(t, b.get("/bff/user", "Origin", "http://evil.example"), 403, "csrf_rejected", "cross_origin")
	after := decode(t, b.api("GET", "/bff/user?slide=false"))["session"].(map[string]any)["idle_expires_in"]
	if after.(float64) != before.(float64)-300 {
		t.Fatalf("idle_expires_in went from %v to %v: a refused request slid the session", before, after)
	}
	wantStatus(t, b.get("/bff/user"), 200) // no fetch metadata (curl, old clients): allowed
}
