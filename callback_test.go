package gatehouse_test

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

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

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestIDTokenIssuedInTheFuture(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) {
		k.IDTokenMutate = func(c map[string]any) {
			c["iat"] = time.Now().Add(time.Hour).Unix()
			c["exp"] = time.Now().Add(2 * time.Hour).Unix()
		}
	})
	b := e.browser()
	r := b.get(b.startLogin("/"), "Accept", "application/json")
	wantJSONError(t, r, 400, "login_failed", "token_exchange")
}

// provider.trusted_audiences reaches the ID token check: an ID token for this client and
// a project of the provider is refused by default (OIDC Core §3.1.3.7) and accepted once
// the project is trusted.
func TestCallbackTrustedAudiences(t *testing.T) {
	extraAud := func(k *idptest.Knobs) {
		k.IDTokenMutate = func(c map[string]any) { c["aud"] = []string{c["aud"].(string), "project-1"} }
	}
	e := newEnvKnobs(t, extraAud)
	b := e.browser()
	if r := b.get(b.startLogin("/app"), "Sec-Fetch-Mode", "navigate"); r.StatusCode != 400 {
		t.Fatalf("an ID token with an untrusted audience: callback %d, want 400", r.StatusCode)
	}
	e = newEnvKnobs(t, extraAud, func(c *gatehouse.Config) { c.Provider.TrustedAudiences = []string{"project-1"} })
	e.browser().login()
	if w := (gatehouse.Config{Provider: gatehouse.ProviderConfig{TrustedAudiences: []string{"project-1"}}}).WeakerOptions(); !slices.Contains(w, "provider.trusted_audiences") {
		t.Fatalf("WeakerOptions = %v, want provider.trusted_audiences", w)
	}
}

// TestCallbackErrorCodesAreAFixedSet: the callback's error parameter is attacker-chosen
// (anyone can start a flow and send its callback), so it reaches the login-failure metric,
// the audit log and the response only as one of the codes of RFC 6749 §4.1.2.1 and OIDC
// Core §3.1.2.6, or as provider_error: the metric's series stay a fixed set.
func TestCallbackErrorCodesAreAFixedSet(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 1000, Burst: 1000}
		c.RateLimits.Callback = gatehouse.RateLimit{PerMinute: 1000, Burst: 1000}
	})
	refuse := func(code string) *resp {
		t.Helper()
		b := e.browser()
		cb, _ := url.Parse(b.startLogin("/"))
		q := cb.Query()
		q.Del("code")
		q.Set("error", code)
		q.Set("error_description", "provider text "+code)
		cb.RawQuery = q.Encode()
		return b.get(cb.String(), "Accept", "application/json")
	}
	series := func() []string {
		var out []string
		for _, line := range strings.Split(scrape(t, e), "\n") {
			if strings.HasPrefix(line, "gatehouse_login_failures_total{") {
				out = append(out, line)
			}
		}
		return out
	}
	wantJSONError(t, refuse("access_denied"), 403, "login_refused", "access_denied")
	wantJSONError(t, refuse("login_required"), 403, "login_refused", "login_required")
	wantJSONError(t, refuse("attacker_chosen"), 403, "login_refused", "provider_error")
	before := series()
	if len(before) != 3 {
		t.Fatalf("series after three known kinds of refusal: %q", before)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		b := make([]byte, 1+r.IntN(30))
		for j := range b {
			b[j] = "abcdefghijklmnopqrstuvwxyz_"[r.IntN(27)]
		}
		code := string(b)
		if i%4 == 0 {
			code += "\u00e9<script>" // not even a plain token
		}
		wantJSONError(t, refuse(code), 403, "login_refused", "")
	}
	after := series()
	if len(after) != len(before) {
		t.Fatalf("40 random error codes made %d login-failure series (want %d):\n%s", len(after), len(before), strings.Join(after, "\n"))
	}
	if !slices.Contains(after, `gatehouse_login_failures_total{reason="provider_error"} 41`) {
		t.Fatalf("the random codes were not counted as provider_error:\n%s", strings.Join(after, "\n"))
	}
	allowed := []string{"provider_access_denied", "provider_login_required", "provider_error"}
	for _, ev := range e.auditEvents() {
		if ev["event"] != "login_failed" {
			continue
		}
		if reason, _ := ev["reason"].(string); !slices.Contains(allowed, reason) {
			t.Errorf("audit login_failed reason %q, want one of %q", reason, allowed)
		}
	}
}
