package idp_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// With pushed authorization requests (RFC 9126) the browser's redirect carries only
// client_id and request_uri; everything else, the extra parameters included, went to the
// provider over the back channel, authenticated as at the token endpoint.
func TestPushedAuthorizationRequests(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		par    string
		knobs  func(*idptest.Knobs)
		config func(*idp.Config)
		auth   func(t *testing.T, form map[string][]string)
	}{
		{name: "auto, client_secret_basic", par: "", knobs: func(k *idptest.Knobs) { k.PAR = true },
			auth: func(t *testing.T, form map[string][]string) {
				if _, ok := form["client_secret"]; ok {
					t.Error("the secret went in the form as well as in Basic")
				}
			}},
		{name: "always, client_secret_post", par: idp.PARAlways, knobs: func(k *idptest.Knobs) { k.PAR = true },
			config: func(c *idp.Config) { c.AuthMethod = idp.AuthClientSecretPost },
			auth: func(t *testing.T, form map[string][]string) {
				if got := form["client_secret"]; len(got) != 1 {
					t.Errorf("client_secret in the pushed form: %q", got)
				}
			}},
		{name: "private_key_jwt", par: idp.PARAuto, knobs: func(k *idptest.Knobs) { k.PAR = true; k.ClientKey = rsaKey.Public() },
			config: func(c *idp.Config) { c.ClientKey = rsaKey },
			auth: func(t *testing.T, form map[string][]string) {
				if len(form["client_assertion"]) != 1 {
					t.Error("no client assertion in the pushed form")
				}
			}},
		{name: "required by the provider overrides never", par: idp.PARNever, knobs: func(k *idptest.Knobs) { k.RequirePAR = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.New(t)
			p.Set(tc.knobs)
			c := newClient(t, p, func(c *idp.Config) {
				c.PAR = tc.par
				if tc.config != nil {
					tc.config(c)
				}
			})
			target, err := c.AuthCodeURL(t.Context(), "the-state", "the-nonce", "the-verifier-the-verifier-the-verifier-0123", map[string][]string{
				"prompt": {"login"}, "resource": {"https://a.example", "https://b.example"}, "request_uri": {"urn:forged"}})
			if err != nil {
				t.Fatal(err)
			}
			u := mustParse(t, target)
			q := u.Query()
			if len(q) != 2 || q.Get("client_id") != p.ClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("authorization URL %s: want client_id and the provider's request_uri only", target)
			}
			if p.Count("par") != 1 {
				t.Fatalf("%d pushed requests, want 1", p.Count("par"))
			}
			form := p.LastForm("par")
			for k, want := range map[string]string{"state": "the-state", "nonce": "the-nonce", "code_challenge_method": "S256",
				"response_type": "code", "redirect_uri": redirectURL, "prompt": "login", "scope": "openid profile email"} {
				if got := form.Get(k); got != want {
					t.Errorf("pushed %s = %q, want %q", k, got, want)
				}
			}
			if got := form["resource"]; len(got) != 2 {
				t.Errorf("pushed resource %q, want both", got)
			}
			if form.Has("request_uri") {
				t.Error("a request_uri from the extra parameters was pushed")
			}
			if tc.auth != nil {
				tc.auth(t, form)
			}
			// The whole login works through the pushed request, and the request_uri is single use.
			loc := follow(t, p, target)
			if loc.Query().Get("state") != "the-state" {
				t.Fatalf("the provider returned %s", loc)
			}
			if _, _, err := c.Exchange(t.Context(), loc.Query().Get("code"), "the-verifier-the-verifier-the-verifier-0123", "the-nonce"); err != nil {
				t.Fatalf("exchange after a pushed login: %v", err)
			}
			browser := &http.Client{Transport: p.Server.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := browser.Get(target)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("a used request_uri answered %s", resp.Status)
			}
		})
	}
}

func TestPushedAuthorizationRequestsOff(t *testing.T) {
	t.Run("never with a provider that offers PAR", func(t *testing.T) {
		p := idptest.New(t)
		p.Set(func(k *idptest.Knobs) { k.PAR = true })
		c := newClient(t, p, func(c *idp.Config) { c.PAR = idp.PARNever })
		a := authorize(t, p, c)
		if p.Count("par") != 0 {
			t.Fatal("par: never pushed a request")
		}
		if _, _, err := c.Exchange(t.Context(), a.code, a.verifier, a.nonce); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("auto with a provider without PAR", func(t *testing.T) {
		p := idptest.New(t)
		c := newClient(t, p)
		target, err := c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
		if err != nil {
			t.Fatal(err)
		}
		if q := mustParse(t, target).Query(); q.Get("state") != "s" || q.Has("request_uri") {
			t.Fatalf("authorization URL %s", target)
		}
	})
}

func TestPushedAuthorizationRequestErrors(t *testing.T) {
	t.Run("always, but the provider has no endpoint", func(t *testing.T) {
		p := idptest.New(t)
		c := newClient(t, p, func(c *idp.Config) { c.PAR = idp.PARAlways })
		_, err := c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
		wantErr(t, err, idp.ErrRefused)
		if !strings.Contains(err.Error(), "pushed_authorization_request_endpoint") {
			t.Errorf("error %q does not say what is missing", err)
		}
		if p.Count("authorize") != 0 {
			t.Error("the browser was sent to the provider anyway")
		}
	})
	t.Run("unknown mode", func(t *testing.T) {
		_, err := idp.New(idp.Config{Issuer: "https://idp.example", ClientID: "c", PAR: "sometimes"})
		if err == nil || !strings.Contains(err.Error(), `par is "sometimes"`) {
			t.Fatalf("New: %v", err)
		}
	})
	for _, tc := range []struct {
		name   string
		knobs  func(*idptest.Knobs)
		want   error
		status int
		code   string
		wait   bool
	}{
		{"refused", func(k *idptest.Knobs) { k.PARStatus, k.PARError = 400, "invalid_request" }, idp.ErrRefused, 400, "invalid_request", false},
		{"wrong client", func(k *idptest.Knobs) { k.ClientKey = nil }, idp.ErrRefused, 401, "invalid_client", false},
		{"crashed", func(k *idptest.Knobs) { k.PARStatus = 500 }, idp.ErrUnavailable, 500, "", false},
		{"busy with Retry-After", func(k *idptest.Knobs) { k.PARStatus, k.RetryAfter = 503, "30" }, idp.ErrUnavailable, 503, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.New(t)
			p.Set(func(k *idptest.Knobs) { k.PAR = true })
			p.Set(tc.knobs)
			secret := p.ClientSecret
			if tc.name == "wrong client" {
				secret = "not-the-secret"
			}
			c := newClient(t, p, func(c *idp.Config) { c.ClientSecret = secret })
			_, err := c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
			wantErr(t, err, tc.want)
			wantTokenError(t, err, tc.status, tc.code)
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q holds the client secret", err)
			}
			if !tc.wait {
				return
			}
			// The provider asked to wait: the next login does not ask it, and says how long.
			_, err = c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
			wantErr(t, err, idp.ErrUnavailable)
			if d, busy := idp.RetryAfter(err); !busy || d < 25*time.Second {
				t.Fatalf("RetryAfter(%v) = %v, %v", err, d, busy)
			}
			if p.Count("par") != 1 {
				t.Fatalf("%d pushed requests, want 1 (the provider asked to wait)", p.Count("par"))
			}
		})
	}
	t.Run("answer without request_uri", func(t *testing.T) {
		p := idptest.New(t)
		p.Set(func(k *idptest.Knobs) { k.PAR, k.PARNoRequestURI = true, true })
		c := newClient(t, p)
		_, err := c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
		wantErr(t, err, idp.ErrRefused)
		var te *idp.TokenError
		if errors.As(err, &te) {
			t.Fatalf("a 201 answer reported as %v", te)
		}
	})
	t.Run("provider requires PAR but has no endpoint", func(t *testing.T) {
		var issuer string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"issuer": issuer, "authorization_endpoint": issuer + "/authorize",
				"token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks", "require_pushed_authorization_requests": true})
		}))
		defer srv.Close()
		issuer = srv.URL
		c, err := idp.New(idp.Config{Issuer: issuer, ClientID: "c", ClientSecret: "s", RedirectURL: redirectURL, HTTPClient: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.AuthCodeURL(t.Context(), "s", "n", "v", nil)
		wantErr(t, err, idp.ErrRefused)
		if !strings.Contains(err.Error(), "requires pushed authorization requests") {
			t.Errorf("error %q", err)
		}
	})
}

// With tls_client_auth the client sends only its client_id (the TLS certificate is the
// HTTP client's) and uses the provider's mtls_endpoint_aliases for the token,
// revocation, userinfo and PAR endpoints.
func TestMutualTLSEndpointAliases(t *testing.T) {
	for _, method := range []string{idp.AuthTLSClient, idp.AuthSelfSignedTLSClient} {
		p := idptest.New(t)
		p.Set(func(k *idptest.Knobs) { k.MTLSAliases, k.PAR = true, true })
		c := newClient(t, p, func(c *idp.Config) { c.AuthMethod, c.ClientSecret = method, "" })
		tokens := mustLogin(t, p, c) // PAR, code exchange and userinfo at the aliases
		if form := p.LastForm("par"); form.Get("client_id") != p.ClientID || form.Has("client_secret") {
			t.Fatalf("%s: pushed %v", method, form)
		}
		if _, err := c.Refresh(t.Context(), tokens.RefreshToken, "alice", idp.RefreshOptions{}); err != nil {
			t.Fatalf("%s: refresh: %v", method, err)
		}
		if err := c.Revoke(t.Context(), tokens.RefreshToken, "refresh_token"); err != nil || !p.Revoked(tokens.RefreshToken) {
			t.Fatalf("%s: revoke: %v", method, err)
		}
		if got := c.EndpointName(mustParse(t, p.Issuer+"/mtls/token")); got != "token" {
			t.Fatalf("%s: the alias is named %q for metrics", method, got)
		}
	}
}
