package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

const secBackchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// secLogoutTokens: back-channel logout tokens signed with the real provider's own key (the
// suite gave oidc-provider its signing key), for a real session at the real provider, so
// that each refusal is for the one thing that is wrong with the token.
func secLogoutTokens(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw1
	bobBrowser := e.client(gw.URL, true) // keeps bob's provider session: same provider sid at every login
	var bob, bobSID string
	ensure := func(c *secCase) {
		c.Helper()
		if st, _ := e.user(c, gw, bob); bob == "" || st != 200 {
			bob = bobBrowser.login(c, "bob", "builder")
			_, claims := e.lastIDTokenOf(c, "bob")
			bobSID, _ = claims["sid"].(string)
			if bobSID == "" {
				c.Fatalf("bob's ID token has no sid: %v", claims)
			}
		}
	}
	claims := func() map[string]any {
		now := time.Now()
		return map[string]any{"iss": e.idp.Issuer(), "aud": "bff", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": secRandom(), "sub": "bob", "sid": bobSID, "events": map[string]any{secBackchannelEvent: map[string]any{}}}
	}
	sign := func(c *secCase, m map[string]any, typ string) string {
		tok := secSign(c, "RS256", e.idpKey, secKeyID, typ, m)
		e.addSensitive("forged logout token", tok)
		return tok
	}
	post := func(c *secCase, contentType, body string) *response {
		c.Helper()
		return e.client(gw.URL, false).do(c, "POST", "/bff/backchannel", strings.NewReader(body), "Content-Type", contentType)
	}
	form := "application/x-www-form-urlencoded"
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	for _, v := range []struct {
		name string
		make func(c *secCase) (contentType, body string)
	}{
		{"not a JWT", func(c *secCase) (string, string) { return form, "logout_token=not-a-jwt" }},
		{"signed with a key the provider does not publish (same kid)", func(c *secCase) (string, string) {
			return form, "logout_token=" + secSign(c, "RS256", otherKey, secKeyID, "logout+jwt", claims())
		}},
		{"alg none", func(c *secCase) (string, string) {
			return form, "logout_token=" + secSign(c, "none", nil, "", "logout+jwt", claims())
		}},
		{"HS256 signed with the client secret", func(c *secCase) (string, string) {
			return form, "logout_token=" + secSign(c, "HS256", []byte("s3cret"), secKeyID, "logout+jwt", claims())
		}},
		{"with a nonce", func(c *secCase) (string, string) {
			m := claims()
			m["nonce"] = "n-0123456789"
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"without events", func(c *secCase) (string, string) {
			m := claims()
			delete(m, "events")
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"with another event instead of back-channel logout", func(c *secCase) (string, string) {
			m := claims()
			m["events"] = map[string]any{"http://schemas.openid.net/event/account-disabled": map[string]any{}}
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"expired", func(c *secCase) (string, string) {
			m := claims()
			now := time.Now()
			m["iat"], m["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"iat in the future", func(c *secCase) (string, string) {
			m := claims()
			now := time.Now()
			m["iat"], m["exp"] = now.Add(time.Hour).Unix(), now.Add(2*time.Hour).Unix()
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"for another client of the provider (aud)", func(c *secCase) (string, string) {
			m := claims()
			m["aud"] = secShortClient
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"for us and another client of the provider (aud array)", func(c *secCase) (string, string) {
			m := claims()
			m["aud"] = []string{"bff", secShortClient}
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"with the azp of another client", func(c *secCase) (string, string) {
			m := claims()
			m["azp"] = secShortClient
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"from another issuer", func(c *secCase) (string, string) {
			m := claims()
			m["iss"] = "https://evil.example"
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"without jti", func(c *secCase) (string, string) {
			m := claims()
			delete(m, "jti")
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"without sub and sid", func(c *secCase) (string, string) {
			m := claims()
			delete(m, "sub")
			delete(m, "sid")
			return form, "logout_token=" + sign(c, m, "logout+jwt")
		}},
		{"typed as an access token (typ at+jwt)", func(c *secCase) (string, string) {
			return form, "logout_token=" + sign(c, claims(), "at+jwt")
		}},
		{"the session's own ID token", func(c *secCase) (string, string) {
			idt, _ := e.lastIDTokenOf(c, "bob")
			return form, "logout_token=" + idt
		}},
		{"a valid token in a JSON body", func(c *secCase) (string, string) {
			return "application/json", `{"logout_token":"` + sign(c, claims(), "logout+jwt") + `"}`
		}},
	} {
		s.run(t, e, "BCL", "logout token: "+v.name, "400 with Cache-Control: no-store; the session lives on", func(c *secCase) {
			ensure(c)
			ct, body := v.make(c)
			r := post(c, ct, body)
			if r.Status != 400 || r.Header.Get("Cache-Control") != "no-store" {
				c.Errorf("status %d, Cache-Control %q, want 400 no-store: %s", r.Status, r.Header.Get("Cache-Control"), r.Body)
			}
			e.alive(c, gw, bob, "bob", "after the refused logout token")
		})
	}

	var valid string
	s.run(t, e, "BCL", "logout token: a valid one (control)", "200 and the session of that provider sid ends (session_revoked)", func(c *secCase) {
		ensure(c)
		valid = sign(c, claims(), "logout+jwt")
		if r := post(c, form, "logout_token="+valid); r.Status != 200 {
			c.Fatalf("a valid logout token: %d %s", r.Status, r.Body)
		}
		if reason := e.dead(c, gw, bob, "bob after a valid logout token"); reason != "session_revoked" {
			c.Errorf("reason %q, want session_revoked", reason)
		}
	})
	s.run(t, e, "BCL", "logout token: replayed jti against a new session of the same provider session",
		"400 and the new session lives on; a fresh jti then ends it", func(c *secCase) {
			if valid == "" {
				c.Fatal("the control case produced no token")
			}
			sid := bobSID
			ensure(c)
			if bobSID != sid {
				c.Logf("the provider gave the new login another sid (%s ≠ %s)", bobSID, sid)
			}
			if r := post(c, form, "logout_token="+valid); r.Status != 400 {
				c.Errorf("the replayed token: %d, want 400", r.Status)
			}
			e.alive(c, gw, bob, "bob", "after the replay")
			if bobSID == sid {
				if r := post(c, form, "logout_token="+sign(c, claims(), "logout+jwt")); r.Status != 200 {
					c.Errorf("a fresh token for the same sid: %d", r.Status)
				}
				e.dead(c, gw, bob, "bob after a fresh token")
			}
		})
	s.run(t, e, "BCL", "logout token: the provider's own token replayed",
		"the provider's back-channel logout ends the session; the same token again is refused with 400", func(c *secCase) {
			ensure(c)
			e.idp.Reset(c)
			if _, sent := e.idp.EndSessions(c, "bob"); sent == 0 {
				c.Fatal("the provider sent no back-channel logout")
			}
			calls := e.idp.Stats(c).Backchannel
			if len(calls) == 0 || calls[0].Status != 200 {
				c.Fatalf("back-channel calls: %+v", calls)
			}
			e.dead(c, gw, bob, "bob after the provider's back-channel logout")
			var real string
			for _, tok := range e.idp.IssuedTokens(c) {
				if tok.Kind == "logout_token" && jwtClaims(tok.Value)["aud"] == "bff" {
					real = tok.Value
				}
			}
			if real == "" {
				c.Fatal("no logout token in the provider's token log")
			}
			ensure(c)
			if r := post(c, form, "logout_token="+real); r.Status != 400 {
				c.Errorf("the replayed provider token: %d, want 400", r.Status)
			}
			e.alive(c, gw, bob, "bob", "after the replay")
		})
}

// secCookies: what a stolen, forged or stale session cookie opens.
func secCookies(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw1
	enc := base64.RawURLEncoding.EncodeToString
	var alice, bob string
	ensure := func(c *secCase) {
		c.Helper()
		if st, _ := e.user(c, gw, alice); alice == "" || st != 200 {
			alice = e.client(gw.URL, true).login(c, "alice", "wonderland")
		}
		if st, _ := e.user(c, gw, bob); bob == "" || st != 200 {
			bob = e.client(gw.URL, true).login(c, "bob", "builder")
		}
	}
	decode := func(c *secCase, v string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) != 49 || b[0] != 1 {
			c.Fatalf("the session cookie is not version byte, 16-byte id, 32-byte key (%d bytes, %v)", len(b), err)
		}
		return b
	}
	// refused checks that cookie opens nothing: /bff/user 401, a route 401 with nothing
	// reaching the upstream; the sessions the cookie was made from live on.
	refused := func(c *secCase, gateway *gatehouseProc, cookie string, wantReason string) {
		c.Helper()
		e.addSensitive("manipulated cookie", cookie)
		status, m := e.user(c, gateway, cookie)
		if status != 401 {
			c.Errorf("/bff/user with the cookie: %d %v, want 401", status, m)
		} else if wantReason != "" && m["reason"] != wantReason {
			c.Errorf("/bff/user reason %v, want %s", m["reason"], wantReason)
		}
		mark := e.up.count()
		r := e.client(gateway.URL, false).do(c, "GET", "/api/x", nil, withCookie(cookie, secAPI...)...)
		if r.Status != 401 {
			c.Errorf("a route with the cookie: %d, want 401", r.Status)
		}
		e.up.untouched(c, mark, "a route with the cookie")
	}
	for _, v := range []struct {
		name   string
		forge  func(c *secCase) string
		reason string
	}{
		{"tampered: one bit of the key flipped", func(c *secCase) string {
			b := decode(c, alice)
			b[40] ^= 1
			return enc(b)
		}, "no_session"},
		{"tampered: one bit of the id flipped", func(c *secCase) string {
			b := decode(c, alice)
			b[5] ^= 1
			return enc(b)
		}, ""},
		{"truncated by one character", func(c *secCase) string { return alice[:len(alice)-1] }, "no_session"},
		{"truncated to half", func(c *secCase) string { return alice[:len(alice)/2] }, "no_session"},
		{"one character appended", func(c *secCase) string { return alice + "A" }, "no_session"},
		{"another version byte", func(c *secCase) string {
			b := decode(c, alice)
			b[0] = 2
			return enc(b)
		}, "no_session"},
		{"another session's id with the wrong key (alice's id, bob's key)", func(c *secCase) string {
			a, b := decode(c, alice), decode(c, bob)
			return enc(append(append([]byte{1}, a[1:17]...), b[17:]...))
		}, "no_session"},
		{"another session's id with a random key", func(c *secCase) string {
			a := decode(c, alice)
			key := make([]byte, 32)
			rand.Read(key)
			return enc(append(append([]byte{1}, a[1:17]...), key...))
		}, "no_session"},
		{"empty value", func(c *secCase) string { return "" }, "no_session"},
	} {
		s.run(t, e, "COOKIE", v.name, "401 on /bff/user and on a route, nothing reaches the upstream; the real sessions live on", func(c *secCase) {
			ensure(c)
			refused(c, gw, v.forge(c), v.reason)
			e.alive(c, gw, alice, "alice", "the cookie it was made from")
			e.alive(c, gw, bob, "bob", "the other session")
		})
	}
	s.run(t, e, "COOKIE", "a session cookie of another gateway (other store and keys)",
		"401 on the gateway that did not issue it", func(c *secCase) {
			other := e.client(e.gw2.URL, true).login(c, "alice", "wonderland")
			refused(c, gw, other, "")
		})
	s.run(t, e, "COOKIE", "expired: idle past session.idle_timeout (2s on gw2)",
		"401 session_expired on /bff/user and on a route; nothing reaches the upstream", func(c *secCase) {
			cookie := e.client(e.gw2.URL, true).login(c, "alice", "wonderland")
			time.Sleep(2500 * time.Millisecond)
			refused(c, e.gw2, cookie, "session_expired")
		})
	s.run(t, e, "COOKIE", "revoked: the cookie of a session that logged out",
		"401 session_revoked; nothing reaches the upstream", func(c *secCase) {
			cookie := e.client(gw.URL, true).login(c, "alice", "wonderland")
			if r := e.client(gw.URL, false).do(c, "POST", "/bff/logout", nil, withCookie(cookie, secAPI...)...); r.Status != 200 {
				c.Fatalf("logout: %d", r.Status)
			}
			refused(c, gw, cookie, "session_revoked")
		})
	s.run(t, e, "COOKIE", "revoked: by the admin API", "401 session_revoked", func(c *secCase) {
		cookie := e.client(gw.URL, true).login(c, "bob", "builder")
		sid := e.sid(c, gw, cookie)
		r := e.client(gw.AdminURL, false).do(c, "DELETE", gw.AdminURL+"/admin/sessions/"+url.PathEscape(sid), nil, "Authorization", "Bearer "+secAdminToken1)
		if r.Status/100 != 2 {
			c.Fatalf("admin revoke: %d %s", r.Status, r.Body)
		}
		refused(c, gw, cookie, "session_revoked")
	})
	s.run(t, e, "COOKIE", "revoked: by sign out other devices", "401 session_revoked for the other device", func(c *secCase) {
		keep := e.client(gw.URL, true).login(c, "alice", "wonderland")
		other := e.client(gw.URL, true).login(c, "alice", "wonderland")
		if r := e.client(gw.URL, false).do(c, "DELETE", "/bff/sessions?others=true", nil, withCookie(keep, secAPI...)...); r.Status != 200 {
			c.Fatalf("sign out other devices: %d %s", r.Status, r.Body)
		}
		refused(c, gw, other, "session_revoked")
		e.alive(c, gw, keep, "alice", "the device that signed the others out")
		alice = "" // alice's sessions are gone; the next case signs in again
	})
	s.run(t, e, "COOKIE", "an upstream setting gatehouse's cookies",
		"the browser never receives a Set-Cookie for __Host-gatehouse or its flow cookies (others pass)", func(c *secCase) {
			ensure(c)
			r := e.client(gw.URL, false).do(c, "GET", "/api/set-cookie", nil, withCookie(alice, secAPI...)...)
			if r.Status != 200 {
				c.Fatalf("%d %s", r.Status, r.Body)
			}
			var names []string
			for _, line := range r.Header.Values("Set-Cookie") {
				if ck, err := http.ParseSetCookie(line); err == nil {
					names = append(names, ck.Name)
					if strings.HasPrefix(ck.Name, secCookie) {
						c.Errorf("the upstream set %s in the browser", ck.Name)
					}
				}
			}
			if len(names) != 1 || names[0] != "app" {
				c.Errorf("cookies passed from the upstream: %v, want [app]", names)
			}
			e.alive(c, gw, alice, "alice", "after the upstream's attempt")
		})
	s.run(t, e, "COOKIE", "gatehouse's cookies never reach the upstream",
		"the upstream gets no Cookie header (no forward_cookies configured)", func(c *secCase) {
			ensure(c)
			mark := e.up.count()
			cookies := secCookie + "=" + alice + "; " + secCookie + "-flow-0011223344556677=x; " + secCookie + "-logout=y; other=1"
			r := e.client(gw.URL, false).do(c, "GET", "/api/x", nil, secHeaders(secAPI, "Cookie", cookies)...)
			seen := e.up.since(mark)
			if r.Status != 200 || len(seen) != 1 {
				c.Fatalf("%d, %d upstream requests", r.Status, len(seen))
			}
			if ck := seen[0].Header.Values("Cookie"); len(ck) != 0 {
				c.Errorf("the upstream got Cookie %q", ck)
			}
		})
	s.run(t, e, "COOKIE", "attributes of the session and flow cookies",
		"session: __Host-, HttpOnly, Secure, Path=/, SameSite=Strict, no Domain; flow: HttpOnly, Secure, Path=/, SameSite=Lax, Max-Age=600", func(c *secCase) {
			var flow *http.Cookie
			r := e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, secNavigate...)
			for _, line := range r.Header.Values("Set-Cookie") {
				if ck, err := http.ParseSetCookie(line); err == nil && strings.HasPrefix(ck.Name, secCookie+"-flow-") {
					flow = ck
				}
			}
			if flow == nil {
				c.Fatalf("/bff/login set no flow cookie: %v", r.Header.Values("Set-Cookie"))
			}
			if !flow.HttpOnly || !flow.Secure || flow.Path != "/" || flow.Domain != "" || flow.SameSite != http.SameSiteLaxMode || flow.MaxAge != 600 {
				c.Errorf("flow cookie attributes: %+v", flow)
			}
			b := e.client(gw.URL, true)
			cb := b.callback(c, b.authorize(c, "alice", "wonderland", "/"))
			var sess *http.Cookie
			for _, line := range cb.Header.Values("Set-Cookie") {
				if ck, err := http.ParseSetCookie(line); err == nil && ck.Name == secCookie {
					sess = ck
				}
			}
			if sess == nil {
				c.Fatalf("the callback set no session cookie")
			}
			if !sess.HttpOnly || !sess.Secure || sess.Path != "/" || sess.Domain != "" || sess.SameSite != http.SameSiteStrictMode || sess.MaxAge <= 0 {
				c.Errorf("session cookie attributes: %+v", sess)
			}
		})
}

// secLogs: no secret in any log line, no token in any response.
func secLogs(t *testing.T, s *secSuite, e *secEnv) {
	s.run(t, e, "LOG", "the log audit finds what it looks for (self-test)",
		"a planted code, token, client secret and cookie are each reported; a clean log gives nothing", func(c *secCase) {
			secrets := []harness.IssuedSecret{{Kind: "authorization_code", Value: "code-0123456789abcdef"}, {Kind: "access_token", Value: "at-0123456789abcdef"},
				{Kind: "client_secret", Value: "s3cret-xyz"}, {Kind: "gatehouse cookie", Value: "AQIDBAUGBwgJCgsMDQ4P"}}
			for _, sec := range secrets {
				logs := `{"time":"x","level":"DEBUG","msg":"request","path":"/bff/callback","q":"` + sec.Value + `"}` + "\n"
				if got := logLeaks(logs, secrets); len(got) != 1 || !strings.Contains(got[0], sec.Kind) || strings.Contains(got[0], sec.Value) {
					c.Errorf("%s planted in a log line: audit said %q", sec.Kind, got)
				}
			}
			if got := logLeaks(`{"level":"INFO","msg":"login","session":"abc"}`+"\n", secrets); len(got) != 0 {
				c.Errorf("a clean log: %q", got)
			}
			if got := configSecrets("provider:\n  client_secret: s3cret-xyz\nadmin:\n  token: admin-token-1\nroutes:\n  - token: user\n"); len(got) != 2 {
				c.Errorf("secrets of a configuration: %v, want the client secret and the admin token", got)
			}
		})
	s.run(t, e, "LOG", "no secret in any log line of the suite's gateways (debug logging)",
		"no authorization code, access/refresh/ID/logout token, client secret, admin token, cookie value or forged token in any log line", func(c *secCase) {
			secrets := auditSecrets(c)
			kinds := map[string]int{}
			for _, sec := range secrets {
				kinds[sec.Kind]++
			}
			for _, want := range []string{"authorization_code", "access_token", "refresh_token", "id_token", "logout_token", "fake provider secret", "forged logout token"} {
				if kinds[want] == 0 {
					c.Errorf("nothing of kind %q to look for: the audit would prove little (%v)", want, kinds)
				}
			}
			for _, want := range []string{"session cookie", "flow cookie", "logout cookie", "manipulated cookie"} {
				if kinds[want] == 0 {
					c.Errorf("no %s value collected: the audit would prove little", want)
				}
			}
			lines := 0
			for _, g := range []*gatehouseProc{e.gw1, e.gw2, e.gw3} {
				cfg, err := os.ReadFile(g.cfgPath)
				if err != nil {
					c.Fatal(err)
				}
				if !strings.Contains(string(cfg), "level: debug") {
					c.Errorf("gatehouse %s does not log at debug", g.URL)
				}
				all := append(append([]harness.IssuedSecret(nil), secrets...), configSecrets(string(cfg))...)
				logs := g.Logs()
				lines += strings.Count(logs, "\n")
				for _, leak := range logLeaks(logs, all) {
					c.Errorf("gatehouse %s: %s", g.URL, leak)
				}
			}
			var summary []string
			for k, n := range kinds {
				summary = append(summary, fmt.Sprintf("%s %d", k, n))
			}
			sort.Strings(summary)
			c.Logf("checked %d log lines of 3 gateways against %d secrets (%s)", lines, len(secrets), strings.Join(summary, ", "))
			if lines < 20 {
				c.Errorf("only %d log lines: the audit would prove little", lines)
			}
		})
	s.run(t, e, "LOG", "no token or secret in any response of the public listeners",
		"no access, refresh, ID or logout token, code or client secret in any status line, header or body the suite received (the ID token only as id_token_hint in a logout redirect)", func(c *secCase) {
			e.mu.Lock()
			responses := append([]string(nil), e.responses...)
			e.mu.Unlock()
			if len(responses) < 100 {
				c.Errorf("only %d responses recorded", len(responses))
			}
			var secrets []harness.IssuedSecret
			secrets = append(secrets, e.idp.IssuedTokens(c)...)
			for _, v := range e.fake.IssuedSecrets() {
				secrets = append(secrets, harness.IssuedSecret{Kind: "fake provider secret", Value: v})
			}
			for _, v := range []string{"s3cret", secShortSecret, e.fake.ClientSecret, secAdminToken1, secAdminToken2} {
				secrets = append(secrets, harness.IssuedSecret{Kind: "client secret or admin token", Value: v})
			}
			found := map[string]bool{}
			for _, resp := range responses {
				hay := resp
				if strings.HasPrefix(resp, "POST /bff/logout\n") || strings.HasPrefix(resp, "GET /bff/logout\n") {
					for _, sec := range secrets {
						if sec.Kind == "id_token" {
							hay = strings.ReplaceAll(hay, "id_token_hint="+sec.Value, "id_token_hint=…")
							hay = strings.ReplaceAll(hay, "id_token_hint="+url.QueryEscape(sec.Value), "id_token_hint=…")
						}
					}
				}
				for _, sec := range secrets {
					if !found[sec.Value] && strings.Contains(hay, sec.Value) {
						found[sec.Value] = true
						first, _, _ := strings.Cut(resp, "\n")
						c.Errorf("a response to %s contains a %s", first, sec.Kind)
					}
				}
			}
			c.Logf("checked %d responses against %d secrets", len(responses), len(secrets))
		})
}
