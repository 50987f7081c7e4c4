package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// writeIdentityKey writes a fresh PKCS#8 EC P-256 key to path.
func writeIdentityKey(t *testing.T, path string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	// Written next to the file and renamed, as a secret manager would: the watcher never
	// reads half a key.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func gatewayJWKS(t *testing.T, gw string) jose.JSONWebKeySet {
	t.Helper()
	r, err := http.Get(gw + "/.well-known/gatehouse/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Cache-Control"), "public, max-age=") {
		t.Fatalf("JWKS: %d, Cache-Control %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(r.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatal("the JWKS holds a private key")
		}
	}
	return set
}

type upstreamAssertion struct {
	jwt.Claims
	PreferredUsername string   `json:"preferred_username"`
	Email             string   `json:"email"`
	Groups            []string `json:"groups"`
}

// verifyUpstreamAssertion verifies raw as an upstream would: signature by a key of the
// JWKS, ES256 only, issuer, audience and expiry.
func verifyUpstreamAssertion(set jose.JSONWebKeySet, raw, iss, aud string) (upstreamAssertion, string, error) {
	var c upstreamAssertion
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return c, "", err
	}
	if err := tok.Claims(set, &c); err != nil {
		return c, "", err
	}
	return c, tok.Headers[0].KeyID, c.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{aud}, Time: time.Now()}, time.Second)
}

// TestE2EIdentityForUpstreams: a token: none route with identity headers and an
// assertion, behind the real binary and oidc-provider. The upstream sees exactly the
// configured claims, and an assertion that verifies with the published JWKS for its own
// audience only; what a page sends under those names never arrives, on that route or
// another; a rotation of the key file keeps old assertions verifiable.
func TestE2EIdentityForUpstreams(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "identity.pem")
	writeIdentityKey(t, keyFile)
	grafana := startUpstream(t)
	s := startStack(t, stackOpts{extraYAML: `  - path: /grafana/
    upstream: ` + grafana.URL + `
    token: none
    identity:
      headers: {X-User: preferred_username, X-Email: email, X-Groups: groups, X-Grafana-Role: role}
      assertion: true
      audience: grafana
identity:
  signing_key_file: ` + keyFile + `
`})
	forged := []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "X-User", "mallory", "X-Email", "mallory@evil.example",
		"X-Groups", "admin", "X-Grafana-Role", "Admin", "X-Gatehouse-Assertion", "forged", "X_User", "mallory"}
	noIdentity := func(h http.Header, where string) {
		t.Helper()
		for _, name := range []string{"X-User", "X-Email", "X-Groups", "X-Grafana-Role", "X-Gatehouse-Assertion", "X_user"} {
			if _, ok := h[name]; ok {
				t.Errorf("%s: the upstream received %s: %q", where, name, h.Values(name))
			}
		}
	}

	b := newBrowser(t, s.gw.URL)
	expect(t, b.do("GET", "/grafana/api/health", nil, forged...), 200)
	noIdentity(grafana.last(t), "anonymous")

	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.do("GET", "/grafana/api/dashboards", nil, forged...), 200)
	h := grafana.last(t)
	for name, want := range map[string]string{"X-User": "alice", "X-Email": "alice@example.com", "X-Groups": "admin,staff"} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want %q", name, got, want)
		}
	}
	if _, ok := h["X-Grafana-Role"]; ok {
		t.Errorf("a claim the user does not have sent X-Grafana-Role %q", h.Values("X-Grafana-Role"))
	}
	if h.Get("Authorization") != "" {
		t.Error("a token: none route forwarded an Authorization header")
	}
	old := h.Get("X-Gatehouse-Assertion")
	set := gatewayJWKS(t, s.gw.URL)
	c, kid, err := verifyUpstreamAssertion(set, old, s.gw.URL, "grafana")
	if err != nil {
		t.Fatalf("the assertion does not verify with the published JWKS: %v", err)
	}
	if c.Subject == "" || c.PreferredUsername != "alice" || c.Email != "alice@example.com" || strings.Join(c.Groups, ",") != "admin,staff" || c.ID == "" {
		t.Errorf("assertion claims %+v", c)
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Minute {
		t.Errorf("assertion lifetime iat %v exp %v", c.IssuedAt, c.Expiry)
	}
	if _, _, err := verifyUpstreamAssertion(set, old, s.gw.URL, grafana.URL); err == nil {
		t.Error("the assertion verified for another audience")
	}
	for _, secret := range s.idp.IssuedTokens(t) {
		if strings.Contains(old, secret.Value) || strings.Contains(strings.Join(h.Values("X-User"), ""), secret.Value) {
			t.Errorf("a %s reached the identity upstream", secret.Kind)
		}
	}

	// A route without identity still drops the page's copies, also of names only
	// /grafana/ configures.
	expect(t, b.do("GET", "/api/x", nil, forged...), 200)
	noIdentity(s.api.last(t), "/api/")

	// The key file changes: the watcher reloads it, the new key signs, the old one stays
	// published, so the assertion sent before still verifies.
	writeIdentityKey(t, keyFile)
	deadline := time.Now().Add(10 * time.Second)
	for len(set.Keys) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		set = gatewayJWKS(t, s.gw.URL)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("after the key file changed the JWKS has %d keys, want the new and the old", len(set.Keys))
	}
	expect(t, b.do("GET", "/grafana/api/dashboards", nil, forged...), 200)
	_, newKid, err := verifyUpstreamAssertion(set, grafana.last(t).Get("X-Gatehouse-Assertion"), s.gw.URL, "grafana")
	if err != nil || newKid == kid || set.Keys[0].KeyID != newKid {
		t.Errorf("after the rotation: kid %q (was %q), err %v", newKid, kid, err)
	}
	if _, _, err := verifyUpstreamAssertion(set, old, s.gw.URL, "grafana"); err != nil {
		t.Errorf("an assertion of the replaced key no longer verifies: %v", err)
	}

	// After logout, no identity.
	expect(t, b.api("POST", "/bff/logout"), 200)
	expect(t, b.do("GET", "/grafana/api/dashboards", nil, forged...), 200)
	noIdentity(grafana.last(t), "after logout")
}
