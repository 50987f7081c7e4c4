package gatehouse_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// identityClaims are the fake provider's extra claims for the identity tests.
var identityClaims = map[string]any{
	"preferred_username": "alice.smith",
	"email":              "alice@example.com",
	"groups":             []any{"staff", "admin"},
	"level":              3,
	"verified":           true,
	"evil":               "alice\r\nX-Injected: 1",
	"tabbed":             "a\tb",
	"address":            map[string]any{"country": "NL"},
}

// identityEnv is a gateway with an identity route (/grafana/, token none), a plain user
// route (/api/) and an anonymous route (/open/), all to one header-recording upstream.
func identityEnv(t *testing.T, up *headerUpstream, mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	return newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = identityClaims }, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{
			{Path: "/grafana/", Upstream: up.srv.URL, Token: gatehouse.TokenNone, Identity: &gatehouse.RouteIdentity{
				Headers: map[string]string{"X-User": "preferred_username", "X-Email": "email", "X-Groups": "groups",
					"X-Level": "level", "X-Verified": "verified", "X-Evil": "evil", "X-Tabbed": "tabbed", "X-Address": "address",
					"X-Grafana-Role": "missing_claim", "X-Subject": "sub"},
				Assertion: true,
			}},
			{Path: "/api/", Upstream: up.srv.URL},
			{Path: "/open/", Upstream: up.srv.URL, Token: gatehouse.TokenNone},
		}
	}}, mutate...)...)
}

// forgedIdentity are identity headers a page might try to send itself.
var forgedIdentity = []string{"X-User", "mallory", "X-Email", "mallory@evil.example", "X-Grafana-Role", "Admin",
	"X-Gatehouse-Assertion", "forged.jwt.value", "X-Gatehouse-Other", "1", "X_User", "mallory2"}

func identityGet(b *browser, path string) *resp {
	return b.do("GET", path, nil, append([]string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin"}, forgedIdentity...)...)
}

// fetchJWKS gets the published keys as a verifier would.
func fetchJWKS(t *testing.T, e *env) (jose.JSONWebKeySet, *http.Response) {
	t.Helper()
	r, err := http.Get(e.url + gatehouse.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(r.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("the JWKS publishes a private key (kid %s)", k.KeyID)
		}
	}
	return set, r
}

type assertionClaims struct {
	jwt.Claims
	PreferredUsername string   `json:"preferred_username"`
	Email             string   `json:"email"`
	Groups            []string `json:"groups"`
	Level             float64  `json:"level"`
}

// verifyAssertion checks raw against the published keys, for audience aud, at now.
func verifyAssertion(t *testing.T, set jose.JSONWebKeySet, raw, iss, aud string, now time.Time) (assertionClaims, string, error) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return assertionClaims{}, "", err
	}
	var c assertionClaims
	if err := tok.Claims(set, &c); err != nil {
		return c, "", err
	}
	return c, tok.Headers[0].KeyID, c.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{aud}, Time: now}, 0)
}

func TestIdentityHeadersAndAssertion(t *testing.T) {
	up := newHeaderUpstream(t)
	e := identityEnv(t, up)
	b := e.browser()
	b.login()

	wantStatus(t, identityGet(b, "/grafana/api/dashboards"), 200)
	got := up.last(t)
	want := map[string]string{"X-User": "alice.smith", "X-Email": "alice@example.com", "X-Groups": "staff,admin",
		"X-Level": "3", "X-Verified": "true", "X-Subject": "alice"}
	for name, v := range want {
		if vals := got.Header.Values(name); len(vals) != 1 || vals[0] != v {
			t.Errorf("upstream %s = %q, want %q", name, vals, v)
		}
	}
	// A value with CR/LF or a tab, an object and a missing claim: no header at all,
	// and not the browser's either.
	for _, name := range []string{"X-Evil", "X-Tabbed", "X-Address", "X-Grafana-Role", "X-Injected", "X-Gatehouse-Other", "X_user"} {
		if _, ok := got.Header[name]; ok {
			t.Errorf("upstream received %s: %q", name, got.Header.Values(name))
		}
	}
	if got.Header.Get("Authorization") != "" {
		t.Error("a token: none route forwarded an Authorization header")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "signed with a key generated at start") {
		t.Error("no warning about the generated signing key")
	}
	if !strings.Contains(logs, "X-Evil") || !strings.Contains(logs, "identity header left out") {
		t.Error("no warning for the refused claim value")
	}
	if strings.Contains(logs, "X-Injected") || strings.Contains(logs, "a\\tb") {
		t.Error("the refused claim's value reached the log")
	}

	raw := got.Header.Values(gatehouse.AssertionHeader)
	if len(raw) != 1 || raw[0] == "forged.jwt.value" {
		t.Fatalf("upstream %s = %q, want one assertion of the gateway", gatehouse.AssertionHeader, raw)
	}
	set, jr := fetchJWKS(t, e)
	if cc := jr.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Errorf("JWKS Cache-Control = %q", cc)
	}
	if ct := jr.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("JWKS Content-Type = %q", ct)
	}
	now := e.clock.Now()
	c, kid, err := verifyAssertion(t, set, raw[0], e.url, up.srv.URL, now)
	if err != nil {
		t.Fatalf("the assertion does not verify with the published JWKS: %v", err)
	}
	if kid != set.Keys[0].KeyID || len(set.Keys) != 1 {
		t.Errorf("kid %q, JWKS %d keys", kid, len(set.Keys))
	}
	tp, _ := set.Keys[0].Thumbprint(crypto.SHA256)
	if kid != base64.RawURLEncoding.EncodeToString(tp) {
		t.Errorf("kid %q is not the key's RFC 7638 thumbprint", kid)
	}
	if set.Keys[0].Algorithm != "ES256" {
		t.Errorf("default algorithm %q, want ES256", set.Keys[0].Algorithm)
	}
	if c.Subject != "alice" || c.PreferredUsername != "alice.smith" || c.Email != "alice@example.com" ||
		strings.Join(c.Groups, ",") != "staff,admin" || c.Level != 3 || c.ID == "" {
		t.Errorf("assertion claims %+v", c)
	}
	if c.IssuedAt == nil || c.Expiry == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) > 60*time.Second || c.Expiry.Time().Sub(now) > 60*time.Second {
		t.Errorf("assertion lifetime: iat %v exp %v", c.IssuedAt, c.Expiry)
	}
	// Another audience refuses it, and so does its expiry.
	if _, _, err := verifyAssertion(t, set, raw[0], e.url, "http://other.example", now); err == nil {
		t.Error("the assertion verified for another audience")
	}
	if _, _, err := verifyAssertion(t, set, raw[0], e.url, up.srv.URL, now.Add(61*time.Second)); err == nil {
		t.Error("the assertion verified after 60 s")
	}
	// No secret of the provider in what the upstream got.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw[0], ".")[1])
	for _, secret := range e.idp.IssuedSecrets() {
		for name, vals := range got.Header {
			for _, v := range vals {
				if strings.Contains(v, secret) {
					t.Errorf("upstream header %s carries a provider token", name)
				}
			}
		}
		if strings.Contains(string(payload), secret) {
			t.Error("the assertion carries a provider token")
		}
	}
	// Only the claims the headers name (with their JSON types: the assertion can carry
	// what a header cannot), and the gateway's own.
	for _, forbidden := range []string{"sid", "nonce", "at_hash", "auth_time", "azp", "missing_claim"} {
		if strings.Contains(string(payload), `"`+forbidden+`"`) {
			t.Errorf("the assertion carries the claim %q, which the route does not name", forbidden)
		}
	}
	// Each request gets its own assertion.
	wantStatus(t, identityGet(b, "/grafana/x"), 200)
	if again := up.last(t).Header.Get(gatehouse.AssertionHeader); again == raw[0] {
		t.Error("two requests got the same assertion")
	}

	// Without a session: no identity headers (not even empty ones), no assertion, and
	// the browser's copies are gone.
	anon := e.browser()
	wantStatus(t, identityGet(anon, "/grafana/x"), 200)
	assertNoIdentity(t, up.last(t))

	// Other routes never pass the browser's copies, also names only /grafana/ uses.
	for _, path := range []string{"/api/orders", "/open/x"} {
		wantStatus(t, identityGet(b, path), 200)
		assertNoIdentity(t, up.last(t))
		wantStatus(t, identityGet(anon, "/open/x"), 200)
		assertNoIdentity(t, up.last(t))
	}
}

func assertNoIdentity(t *testing.T, r *http.Request) {
	t.Helper()
	for _, name := range []string{"X-User", "X-Email", "X-Groups", "X-Grafana-Role", "X-Gatehouse-Assertion", "X-Gatehouse-Other", "X_user", "X-Subject"} {
		if _, ok := r.Header[name]; ok {
			t.Errorf("%s: upstream received %s: %q", r.URL.Path, name, r.Header.Values(name))
		}
	}
}

func TestIdentityAssertionAudienceAndClaims(t *testing.T) {
	up := newHeaderUpstream(t)
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = identityClaims }, func(c *gatehouse.Config) {
		c.Identity.Algorithm = "EdDSA"
		c.Identity.AssertionTTL = 20 * time.Second
		c.Routes = []gatehouse.Route{{Path: "/legacy/", Upstream: up.srv.URL, Identity: &gatehouse.RouteIdentity{
			Assertion: true, Audience: "legacy-app", Claims: []string{"email"}}}}
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/legacy/x"), 200)
	got := up.last(t)
	if !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer ") {
		t.Error("a token: user route with identity lost its bearer token")
	}
	set, jr := fetchJWKS(t, e)
	if cc := jr.Header.Get("Cache-Control"); cc != "public, max-age=20" {
		t.Errorf("JWKS Cache-Control = %q", cc)
	}
	if len(set.Keys) != 1 || set.Keys[0].Algorithm != "EdDSA" {
		t.Fatalf("JWKS %+v, want one EdDSA key", set.Keys)
	}
	if _, ok := set.Keys[0].Key.(ed25519.PublicKey); !ok {
		t.Fatalf("JWKS key %T", set.Keys[0].Key)
	}
	c, _, err := verifyAssertion(t, set, got.Header.Get(gatehouse.AssertionHeader), e.url, "legacy-app", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Email != "alice@example.com" || c.PreferredUsername != "" || c.Expiry.Time().Sub(c.IssuedAt.Time()) != 20*time.Second {
		t.Errorf("claims %+v", c)
	}
	if _, _, err := verifyAssertion(t, set, got.Header.Get(gatehouse.AssertionHeader), e.url, up.srv.URL, e.clock.Now()); err == nil {
		t.Error("verified with the upstream URL as audience, though audience is set")
	}
}

func TestIdentityKeyRotation(t *testing.T) {
	up := newHeaderUpstream(t)
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var cfg gatehouse.Config
	e := identityEnv(t, up, func(c *gatehouse.Config) {
		c.Identity.SigningKey = k1
		cfg = *c
	})
	b := e.browser()
	b.login()
	wantStatus(t, identityGet(b, "/grafana/x"), 200)
	old := up.last(t).Header.Get(gatehouse.AssertionHeader)
	set, _ := fetchJWKS(t, e)
	_, kid1, err := verifyAssertion(t, set, old, e.url, up.srv.URL, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}

	cfg.Identity.SigningKey = k2
	if _, err := e.gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second)
	wantStatus(t, identityGet(b, "/grafana/x"), 200)
	fresh := up.last(t).Header.Get(gatehouse.AssertionHeader)
	set, _ = fetchJWKS(t, e)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS during the overlap has %d keys, want the new and the old", len(set.Keys))
	}
	_, kid2, err := verifyAssertion(t, set, fresh, e.url, up.srv.URL, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if kid2 == kid1 || set.Keys[0].KeyID != kid2 {
		t.Errorf("after the rotation the kid is %q (was %q), JWKS first %q", kid2, kid1, set.Keys[0].KeyID)
	}
	if _, _, err := verifyAssertion(t, set, old, e.url, up.srv.URL, e.clock.Now()); err != nil {
		t.Errorf("an assertion of the old key no longer verifies during the overlap: %v", err)
	}
	// A reload with the same key changes nothing.
	if _, err := e.gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if s, _ := fetchJWKS(t, e); len(s.Keys) != 2 {
		t.Errorf("a reload without a key change altered the JWKS: %d keys", len(s.Keys))
	}
	// After the overlap (2 × 60 s + 1 min) the old key is gone.
	e.clock.Advance(3 * time.Minute)
	set, _ = fetchJWKS(t, e)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != kid2 {
		t.Errorf("after the overlap the JWKS has %d keys", len(set.Keys))
	}
}

func TestIdentityConfigProblems(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	base := func() gatehouse.Config {
		return gatehouse.Config{PublicURL: "https://app.example.com",
			Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s"}}
	}
	route := func(id *gatehouse.RouteIdentity) []gatehouse.Route {
		return []gatehouse.Route{{Path: "/g/", Upstream: "http://g:3000", Headers: map[string]string{"X-Static": "1"}, Identity: id}}
	}
	for _, tc := range []struct {
		name, want string
		mutate     func(*gatehouse.Config)
	}{
		{"rsa key", "identity.signing_key_file", func(c *gatehouse.Config) { c.Identity.SigningKey = rsaKey }},
		{"p384 key", "identity.signing_key_file", func(c *gatehouse.Config) { c.Identity.SigningKey = p384 }},
		{"algorithm mismatch", "identity.algorithm", func(c *gatehouse.Config) { c.Identity.SigningKey, c.Identity.Algorithm = edKey, "ES256" }},
		{"unknown algorithm", "identity.algorithm", func(c *gatehouse.Config) { c.Identity.Algorithm = "HS256" }},
		{"ttl too long", "identity.assertion_ttl", func(c *gatehouse.Config) { c.Identity.AssertionTTL = 2 * time.Minute }},
		{"ttl too short", "identity.assertion_ttl", func(c *gatehouse.Config) { c.Identity.AssertionTTL = time.Millisecond }},
		{"empty", "routes[0].identity: needs headers", func(c *gatehouse.Config) { c.Routes = route(&gatehouse.RouteIdentity{}) }},
		{"managed header", "routes[0].identity.headers: \"authorization\" is managed", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"authorization": "sub"}})
		}},
		{"own namespace", "routes[0].identity.headers: \"X-Gatehouse-User\" is managed", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X-Gatehouse-User": "sub"}})
		}},
		{"csrf header", "is managed", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X-CSRF": "sub"}})
		}},
		{"static collision", "also one of the route's headers", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"x-static": "sub"}})
		}},
		{"bad name", "not a valid header name", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X User": "sub"}})
		}},
		{"no claim", "names no claim", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X-User": ""}})
		}},
		{"audience without assertion", "routes[0].identity.assertion", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X-User": "sub"}, Audience: "x"})
		}},
		{"reserved claim", "\"exp\" is set by Gatehouse", func(c *gatehouse.Config) {
			c.Routes = route(&gatehouse.RouteIdentity{Assertion: true, Claims: []string{"email", "exp"}})
		}},
		{"static header in the own namespace", "routes[0].headers", func(c *gatehouse.Config) {
			c.Routes = []gatehouse.Route{{Path: "/g/", Upstream: "http://g:3000", Headers: map[string]string{"X-Gatehouse-Assertion": "x"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want a problem with %q", err, tc.want)
			}
		})
	}
	c := base()
	c.Identity.SigningKey = edKey
	c.Routes = route(&gatehouse.RouteIdentity{Headers: map[string]string{"X-User": "preferred_username"}, Assertion: true})
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid identity configuration: %v", err)
	}
}

func TestJWKSEndpoint(t *testing.T) {
	e := newEnv(t)
	r, err := http.Post(e.url+gatehouse.JWKSPath, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST JWKS = %d, Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
	// Served without any identity route too, so that upstreams can be set up first.
	set, _ := fetchJWKS(t, e)
	if len(set.Keys) != 1 {
		t.Errorf("JWKS has %d keys", len(set.Keys))
	}
}

// BenchmarkProxyIdentity is BenchmarkProxy's hot path on a route with identity headers,
// and with a signed assertion too (signed for each request: no cache can outlive a
// logout). Compare with BenchmarkProxy/gatehouse=user-token.
func BenchmarkProxyIdentity(b *testing.B) {
	const upstreamURL = "http://upstream.invalid"
	for _, alg := range []string{"ES256", "EdDSA"} {
		gw, cookie, public := benchGatewayWith(b, staticUpstream{}, upstreamURL, func(c *gatehouse.Config) {
			c.Identity.Algorithm = alg
			c.Routes = append(c.Routes,
				gatehouse.Route{Path: "/headers/", Upstream: upstreamURL, Identity: &gatehouse.RouteIdentity{
					Headers: map[string]string{"X-User": "sub", "X-Email": "email"}}},
				gatehouse.Route{Path: "/assertion/", Upstream: upstreamURL, Identity: &gatehouse.RouteIdentity{
					Headers: map[string]string{"X-User": "sub", "X-Email": "email"}, Assertion: true}})
		})
		run := func(b *testing.B, target string) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				gw.ServeHTTP(rec, apiRequest(target, cookie))
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		}
		if alg == "ES256" {
			b.Run("identity=headers", func(b *testing.B) { run(b, public+"/headers/orders") })
		}
		b.Run("identity=assertion-"+alg, func(b *testing.B) { run(b, public+"/assertion/orders") })
	}
}

// A rotation across replicas: the next key is published first (identity.PublishKeys)
// and only then signs, so a verifier holding the JWKS fetched before the switch verifies
// the new assertions without a refetch.
func TestIdentityPublishedNextKey(t *testing.T) {
	up := newHeaderUpstream(t)
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	var cfg gatehouse.Config
	e := identityEnv(t, up, func(c *gatehouse.Config) {
		c.Identity.SigningKey = k1
		c.Identity.PublishKeys = []crypto.PublicKey{k2.Public()}
		cfg = *c
	})
	before, _ := fetchJWKS(t, e)
	if len(before.Keys) != 2 || before.Keys[1].Algorithm != "EdDSA" {
		t.Fatalf("JWKS with a published next key: %+v", before.Keys)
	}
	cfg.Identity.SigningKey, cfg.Identity.PublishKeys = k2, nil
	if _, err := e.gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.login()
	wantStatus(t, identityGet(b, "/grafana/x"), 200)
	_, kid, err := verifyAssertion(t, before, up.last(t).Header.Get(gatehouse.AssertionHeader), e.url, up.srv.URL, e.clock.Now())
	if err != nil || kid != before.Keys[1].KeyID {
		t.Fatalf("the new key's assertion against the JWKS fetched before the switch: kid %q, %v", kid, err)
	}
	bad := cfg
	bad.Identity.PublishKeys = []crypto.PublicKey{&rsa.PublicKey{}}
	if _, err := e.gw.Reload(bad); err == nil || !strings.Contains(err.Error(), "identity.publish_keys_file[0]") {
		t.Errorf("an RSA key to publish: %v", err)
	}
}
