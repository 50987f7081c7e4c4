package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// Every way Gatehouse can authenticate as a client, against oidc-provider: each login's
// code exchange, a refresh, the pushed authorization request and the logout's revocation
// all authenticate (no 401 at the token endpoint, and the refresh token is inactive
// after logout, which only an authenticated revocation achieves). private_key_jwt runs
// through a key rotation: two keys in one JWK Set file, registered at the provider,
// client_key_id choosing the one that signs, with either assertion audience.
func TestE2EClientAuthentication(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	old := jose.JSONWebKey{Key: rsaKey, KeyID: "bff-2026-01", Algorithm: "RS256", Use: "sig"}
	current := jose.JSONWebKey{Key: ecKey, KeyID: "bff-2026-06", Algorithm: "ES256", Use: "sig"}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "client-keys.json")
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{old, current}})
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	publicSet := func(keys ...jose.JSONWebKey) json.RawMessage {
		var pub jose.JSONWebKeySet
		for _, k := range keys {
			pub.Keys = append(pub.Keys, k.Public())
		}
		b, _ := json.Marshal(pub)
		return b
	}

	type step struct {
		name     string
		provider string // YAML lines for the provider: block
	}
	for _, tc := range []struct {
		name     string
		client   func(c *harness.Client)
		steps    []step
		refusing string // a provider: block the provider must refuse at the first token request
	}{
		{name: "client_secret_post", client: func(c *harness.Client) { c.TokenEndpointAuthMethod = "client_secret_post" },
			steps: []step{{"post", "  client_secret: s3cret\n  token_endpoint_auth_method: client_secret_post\n"}}},
		{name: "private_key_jwt", client: func(c *harness.Client) {
			c.TokenEndpointAuthMethod, c.ClientSecret, c.JWKS = "private_key_jwt", "", publicSet(old, current)
		}, steps: []step{
			{"old key, endpoint audience", "  client_key_file: " + keyFile + "\n  client_key_id: " + old.KeyID + "\n"},
			{"new key, issuer audience", "  client_key_file: " + keyFile + "\n  client_key_id: " + current.KeyID + "\n  client_assertion_audience: issuer\n"},
		}},
		{name: "private_key_jwt, old key retired at the provider", client: func(c *harness.Client) {
			c.TokenEndpointAuthMethod, c.ClientSecret, c.JWKS = "private_key_jwt", "", publicSet(current)
		}, steps: []step{{"new key", "  client_key_file: " + keyFile + "\n  client_key_id: " + current.KeyID + "\n"}},
			refusing: "  client_key_file: " + keyFile + "\n  client_key_id: " + old.KeyID + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			public := fmt.Sprintf("http://127.0.0.1:%d", port)
			client := harness.BFFClient(public)
			tc.client(&client)
			idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{client, probeClient()}, AccessTokenTTL: 4 * time.Second})
			api := startUpstream(t)
			config := func(provider string) string {
				return fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
%s  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 2s
admin:
  listen: {{ADMIN}}
routes:
  - path: /api/
    upstream: %s
`, port, public, idp.Issuer(), provider, api.URL)
			}
			for _, st := range tc.steps {
				gw := startGatehouse(t, port, config(st.provider))
				before := idp.Stats(t)
				b := newBrowser(t, gw.URL)
				expect(t, b.login("alice", "wonderland", "/"), 200)
				expect(t, b.api("GET", "/api/hello"), 200)
				time.Sleep(2500 * time.Millisecond) // inside refresh_lead of the 4 s token
				expect(t, b.api("GET", "/api/hello"), 200)
				expect(t, b.api("POST", "/bff/logout"), 200)
				after := idp.Stats(t)
				if got := after.TokenRequests["refresh_token"] - before.TokenRequests["refresh_token"]; got != 1 {
					t.Errorf("%s: %d refreshes, want 1", st.name, got)
				}
				if got := after.PushedRequests - before.PushedRequests; got != 1 {
					t.Errorf("%s: %d pushed authorization requests, want 1", st.name, got)
				}
				if n := after.TokenResponses["401"] - before.TokenResponses["401"]; n != 0 {
					t.Errorf("%s: the token endpoint refused the client %d times", st.name, n)
				}
				for _, s := range idp.IssuedTokens(t) {
					if s.Kind == "refresh_token" && introspect(t, idp, s.Value) {
						t.Errorf("%s: a refresh token is still active after logout: the revocation did not authenticate", st.name)
					}
				}
				gw.Stop()
			}
			if tc.refusing == "" {
				return
			}
			// The provider no longer knows the key: the pushed authorization request is
			// refused, so the user sees the sign-in failure page at once (502) instead of a
			// login form whose result would be refused, and no session exists.
			gw := startGatehouse(t, port, config(tc.refusing))
			b := newBrowser(t, gw.URL)
			r := b.get("/bff/login", "Sec-Fetch-Mode", "navigate")
			if r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "Sign-in failed") {
				t.Fatalf("login with an unregistered key: %d, want the 502 page\n%s", r.Status, r.Body)
			}
			if status, _ := b.user(); status != 401 {
				t.Fatalf("/bff/user after a refused exchange = %d", status)
			}
			if !strings.Contains(gw.Logs(), "invalid_client") {
				t.Errorf("the log does not say the provider refused the client:\n%s", gw.Logs())
			}
		})
	}
}
