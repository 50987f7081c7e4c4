package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// stack is a provider, an upstream and a gatehouse wired together.
type stack struct {
	idp *harness.Provider
	gw  *gatehouseProc
	api *upstream
}

type stackOpts struct {
	accessTTL    time.Duration
	extraYAML    string // appended to the gatehouse config
	providerYAML string // appended to its provider: block (indented by two spaces)
	logYAML      string // appended to its log: block (indented by two spaces)
	issuerPath   string
	store        string
	port         int
	jwks         json.RawMessage // the provider's private signing keys; default fresh ones
	par          string          // the provider's pushed authorization requests (harness.ProviderConfig.PAR)
}

func startStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	port := o.port
	if port == 0 {
		port = freePort(t)
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := harness.StartProvider(t, harness.ProviderConfig{
		IssuerPath: o.issuerPath, AccessTokenTTL: o.accessTTL, JWKS: o.jwks, PAR: o.par,
		Clients:   []harness.Client{harness.BFFClient(public)},
		Resources: []harness.Resource{{Resource: "https://orders.example", Scope: "orders:read"}},
	})
	api := startUpstream(t)
	store := o.store
	if store == "" {
		store = "memory"
	}
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access, groups]
  auth_params: {prompt: consent}
  allowed_auth_params: [prompt, login_hint]
  refresh_lead: 2s
%ssession:
  store: %s
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
log:
  level: debug
%sroutes:
  - path: /api/
    upstream: %s
  - path: /client/
    upstream: %s
    token: client
  - path: /orders/
    upstream: %s
    resource: https://orders.example
  - path: /admin-api/
    upstream: %s
    require:
      - claim: groups
        contains: admin
%s`, port, public, idp.Issuer(), o.providerYAML, store, o.logYAML, api.URL, api.URL, api.URL, api.URL, o.extraYAML)
	return &stack{idp: idp, api: api, gw: startGatehouse(t, port, cfg)}
}

func TestE2ELoginUserLogout(t *testing.T) {
	s := startStack(t, stackOpts{})
	b := newBrowser(t, s.gw.URL)

	if status, m := b.user(); status != 401 || m["reason"] != "no_session" {
		t.Fatalf("anonymous /bff/user = %d %v", status, m)
	}
	cb := b.login("alice", "wonderland", "/dashboard?tab=2")
	expect(t, cb, 200)
	if !strings.Contains(cb.Body, `url=/dashboard?tab=2`) {
		t.Fatalf("callback page: %s", cb.Body)
	}
	status, u := b.user()
	if status != 200 {
		t.Fatalf("/bff/user after login = %d", status)
	}
	claims := u["claims"].(map[string]any)
	if claims["sub"] != "alice" || claims["email"] != "alice@example.com" || claims["name"] != "Alice" {
		t.Fatalf("claims = %v", claims)
	}

	// Logout: the session ends, the refresh token is revoked at the provider, and the
	// provider session ends once the user confirms on its page.
	before := s.idp.Stats(t)
	expect(t, b.do("POST", "/bff/logout", nil, "Accept", "application/json"), 403)
	if status, _ := b.user(); status != 200 {
		t.Fatal("logout without the CSRF header ended the session")
	}
	r := b.api("POST", "/bff/logout?returnUrl=/goodbye")
	expect(t, r, 200)
	end := jsonBody(t, r)["redirect_url"].(string)
	if !strings.HasPrefix(end, s.idp.Issuer()) {
		t.Fatalf("logout redirect_url = %q", end)
	}
	if after := s.idp.Stats(t); after.Revocations != before.Revocations+1 {
		t.Fatalf("revocations: %d → %d", before.Revocations, after.Revocations)
	}
	if status, m := b.user(); status != 401 {
		t.Fatalf("/bff/user after logout = %d %v", status, m)
	}
	done := harness.ConfirmLogout(t, b.c, end)
	done.Body.Close()
	if loc := done.Header.Get("Location"); !strings.HasPrefix(loc, s.gw.URL+"/bff/logout/callback") {
		t.Fatalf("the provider sent the browser to %q after logout", loc)
	}
	r = b.get(done.Header.Get("Location")) // follows on to returnUrl (404 here: no frontend)
	if r.URL.Path != "/goodbye" {
		t.Fatalf("logout callback led to %s", r.URL)
	}

	// The revoked refresh token is refused by the provider itself.
	var refresh string
	for _, tok := range s.idp.IssuedTokens(t) {
		if tok.Kind == "refresh_token" {
			refresh = tok.Value
		}
	}
	if refresh == "" {
		t.Fatal("the provider issued no refresh token (offline_access with prompt=consent)")
	}
	req, _ := http.NewRequest("POST", s.idp.Issuer()+"/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()))
	req.SetBasicAuth("bff", "s3cret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("the provider accepted the revoked refresh token: %d", res.StatusCode)
	}

	// The provider session is gone: a new login asks for credentials again.
	r = b.get("/bff/login", "Sec-Fetch-Mode", "navigate")
	if !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("after logout the provider did not ask for credentials: %s", r.URL)
	}
	assertNoSecretLeak(t, s, b)
}

// assertNoSecretLeak checks every token the provider issued against every response the
// browsers received from the gateway and against the gateway's logs.
func assertNoSecretLeak(t *testing.T, s *stack, browsers ...*browser) {
	t.Helper()
	assertNoSecretLeakIn(t, s.idp, s.gw.Logs(), browsers...)
}

// assertNoSecretLeakIn checks the provider's tokens and authorization codes (and the client
// secret) against the given logs and its tokens against every gateway response the browsers
// received. The ID token may appear in one place only: the id_token_hint of the
// RP-initiated logout URL (the token goes back to the provider that issued it, after the
// session ended). Authorization codes travel through the browser by design, never into logs.
func assertNoSecretLeakIn(t *testing.T, idp *harness.Provider, logs string, browsers ...*browser) {
	t.Helper()
	secrets := idp.IssuedTokens(t)
	if len(secrets) == 0 {
		t.Fatal("the provider's token log is empty: the leak check would prove nothing")
	}
	if strings.Contains(logs, "s3cret") {
		t.Error("gatehouse's logs contain the client secret")
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec.Value) {
			t.Errorf("gatehouse's logs contain a %s", sec.Kind)
		}
		if sec.Kind == "authorization_code" {
			continue // the code travels through the browser by design (and is single-use)
		}
		for _, b := range browsers {
			seen := b.rec.all()
			if sec.Kind == "id_token" {
				seen = strings.ReplaceAll(seen, "id_token_hint="+sec.Value, "id_token_hint=…")
				seen = strings.ReplaceAll(seen, "id_token_hint="+url.QueryEscape(sec.Value), "id_token_hint=…")
			}
			if strings.Contains(seen, sec.Value) {
				t.Errorf("a response to the browser contains a %s", sec.Kind)
			}
		}
	}
}

func TestE2EBadInputs(t *testing.T) {
	s := startStack(t, stackOpts{})

	t.Run("access denied at the provider", func(t *testing.T) {
		b := newBrowser(t, s.gw.URL)
		r := b.get("/bff/login", "Sec-Fetch-Mode", "navigate")
		resp := harness.AbortLogin(t, b.c, r.URL.String())
		resp.Body.Close()
		cb := b.get(resp.Header.Get("Location"), "Sec-Fetch-Mode", "navigate")
		expect(t, cb, 403)
		if !strings.Contains(cb.Body, "cancelled") || strings.Contains(cb.Body, "error_description") {
			t.Fatalf("page: %s", cb.Body)
		}
		if status, _ := b.user(); status != 401 {
			t.Fatal("a session exists after access_denied")
		}
	})

	t.Run("state mismatch and replay", func(t *testing.T) {
		b := newBrowser(t, s.gw.URL)
		r := b.get("/bff/login", "Sec-Fetch-Mode", "navigate")
		resp := harness.Login(t, b.c, r.URL.String(), "alice", "wonderland")
		resp.Body.Close()
		cb, _ := url.Parse(resp.Header.Get("Location"))
		forged := *cb
		q := forged.Query()
		q.Set("state", "x"+q.Get("state"))
		forged.RawQuery = q.Encode()
		expect(t, b.get(forged.String()), 400)
		expect(t, b.get(cb.String()), 200)
		expect(t, b.get(cb.String()), 400) // replayed
		if status, _ := b.user(); status != 200 {
			t.Fatal("the replay broke the first session")
		}
		// A callback completed by another browser (login CSRF) is refused.
		other := newBrowser(t, s.gw.URL)
		expect(t, other.get(cb.String()), 400)
	})

	t.Run("open redirect variants", func(t *testing.T) {
		for _, ret := range []string{"//evil.example", "https://evil.example", "/\\evil.example", "/%2F%2Fevil.example", "%2F%2Fevil"} {
			b := newBrowser(t, s.gw.URL)
			cb := b.login("alice", "wonderland", ret)
			expect(t, cb, 200)
			if !strings.Contains(cb.Body, `content="0;url=/"`) {
				t.Fatalf("returnUrl %q was followed: %s", ret, cb.Body)
			}
		}
	})

	t.Run("tampered cookie", func(t *testing.T) {
		b := newBrowser(t, s.gw.URL)
		b.login("alice", "wonderland", "/")
		u, _ := url.Parse(strings.Replace(s.gw.URL, "http:", "https:", 1))
		var value string
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "__Host-gatehouse" {
				value = c.Value
			}
		}
		flipped := []byte(value)
		flipped[len(flipped)/2] ^= 1
		thief := newBrowser(t, s.gw.URL)
		r := thief.do("GET", "/bff/user", nil, "Cookie", "__Host-gatehouse="+string(flipped))
		if r.Status != 401 {
			t.Fatalf("tampered cookie: %d", r.Status)
		}
	})
}

func TestE2EIssuerVariants(t *testing.T) {
	for _, path := range []string{"/", "/oidc"} {
		t.Run(path, func(t *testing.T) {
			s := startStack(t, stackOpts{issuerPath: path})
			if !strings.HasSuffix(s.idp.Issuer(), path) {
				t.Fatalf("issuer %q", s.idp.Issuer())
			}
			b := newBrowser(t, s.gw.URL)
			expect(t, b.login("bob", "builder", "/"), 200)
			if status, u := b.user(); status != 200 || u["claims"].(map[string]any)["sub"] != "bob" {
				t.Fatalf("/bff/user = %d %v", status, u)
			}
			r := b.api("POST", "/bff/logout")
			expect(t, r, 200)
		})
	}
}
