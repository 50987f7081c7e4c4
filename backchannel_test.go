package gatehouse_test

import (
	"net/url"
	"strconv"
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

// Only logout tokens that fail are rate-limited: a burst of valid tokens from the
// provider's (shared) address beyond the limit, then a genuine logout, all get 200 and
// the genuine one ends its session; invalid tokens past the limit get 429. A flood of
// tokens with bad signatures does not make Gatehouse fetch the provider's JWKS per token.
func TestBackchannelLimitsOnlyFailures(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.RateLimits.Backchannel = gatehouse.RateLimit{PerMinute: 6, Burst: 3}
	})
	victim := e.browser()
	victim.login() // alice, provider-session-1
	for i := range 20 {
		tok := e.idp.LogoutToken("", "other-tenant-session-"+strconv.Itoa(i), "logout+jwt", nil)
		wantStatus(t, e.backchannel(tok), 200)
	}
	if victim.api("GET", "/bff/user").StatusCode != 200 {
		t.Fatal("the burst of logouts for other sessions ended the victim's")
	}
	jwks := e.idp.Count("jwks")
	e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "forged" })
	for range 3 {
		wantJSONError(t, e.backchannel(e.idp.LogoutToken("alice", "provider-session-1", "", nil)), 400, "invalid_request", "")
	}
	for range 50 {
		r := e.backchannel(e.idp.LogoutToken("alice", "provider-session-1", "", nil))
		wantJSONError(t, r, 429, "rate_limited", "")
		if r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	e.idp.Set(func(k *idptest.Knobs) { k.SignWith = "" })
	if n := e.idp.Count("jwks") - jwks; n > 1 {
		t.Fatalf("53 forged logout tokens made %d JWKS fetches, want at most 1", n)
	}
	if victim.api("GET", "/bff/user").StatusCode != 200 {
		t.Fatal("a forged logout token ended the session")
	}
	// The genuine logout, from the same address, past the limit of failures.
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "provider-session-1", "logout+jwt", nil)), 200)
	if victim.api("GET", "/bff/user").StatusCode != 401 {
		t.Fatal("the genuine back-channel logout did not end the session")
	}
}
