package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func pemKey(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

const identityRoute = `
routes:
  - path: /grafana/
    upstream: http://127.0.0.1:3000
    token: none
    identity:
      headers: {X-User: preferred_username, X-Groups: groups}
      assertion: true
      audience: grafana
      claims: [preferred_username, groups, email]
`

// identity: and routes[].identity: reach the gateway's Config; signing_key_file takes a
// PEM PKCS#8 EC P-256 or Ed25519 key or a private JWK, and refuses others by field name.
func TestIdentityFile(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	writeFile(t, dir, "ec.pem", pemKey(t, ec))
	writeFile(t, dir, "ed.pem", pemKey(t, ed))
	writeFile(t, dir, "rsa.pem", pemKey(t, rsaKey))
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: ed, KeyID: "k1"})
	writeFile(t, dir, "ed.jwk", string(jwk))

	load := func(key, extra string) (*loaded, error) {
		p := writeFile(t, dir, "gatehouse.yaml", watchBase+identityRoute+"identity:\n  signing_key_file: "+key+"\n"+extra)
		return loadConfig(p)
	}
	l, err := load("ec.pem", "  assertion_ttl: 30s\n")
	must(t, err)
	id := l.gw.Identity
	if !ec.Equal(id.SigningKey) || id.AssertionTTL != 30*time.Second {
		t.Errorf("identity = %+v", id)
	}
	ri := l.gw.Routes[0].Identity
	if ri == nil || ri.Headers["X-User"] != "preferred_username" || !ri.Assertion || ri.Audience != "grafana" ||
		!slices.Equal(ri.Claims, []string{"preferred_username", "groups", "email"}) {
		t.Errorf("routes[0].identity = %+v", ri)
	}
	if !slices.Contains(watchedFiles(filepath.Join(dir, "gatehouse.yaml"), l.file), filepath.Join(dir, "ec.pem")) {
		t.Error("signing_key_file is not watched")
	}
	for _, f := range []string{"ed.pem", "ed.jwk"} {
		l, err := load(f, "  algorithm: EdDSA\n")
		must(t, err)
		if !ed.Equal(l.gw.Identity.SigningKey) {
			t.Errorf("%s: key not read", f)
		}
	}
	for _, tc := range []struct{ key, extra, want string }{
		{"rsa.pem", "", "identity.signing_key_file: must be an EC P-256"},
		{"missing.pem", "", "identity.signing_key_file: cannot read"},
		{"ec.pem", "  algorithm: EdDSA\n", "identity.algorithm: is EdDSA, but the signing key is an ES256 key"},
		{"ec.pem", "  assertion_ttl: 5m\n", "identity.assertion_ttl"},
	} {
		_, err := load(tc.key, tc.extra)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: err = %v, want %q", tc.key, tc.extra, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Error("the error prints key material")
		}
	}
}

// publish_keys_file takes PEM public or private keys (several blocks) or a JWK Set, and
// keeps only the public halves.
func TestIdentityPublishKeysFile(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(ec.Public())
	writeFile(t, dir, "next.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))+pemKey(t, ed))
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ed.Public()}, {Key: ec}}})
	writeFile(t, dir, "next.json", string(set))
	writeFile(t, dir, "empty.pem", "nothing here\n")
	for _, f := range []string{"next.pem", "next.json"} {
		p := writeFile(t, dir, "gatehouse.yaml", watchBase+"identity:\n  publish_keys_file: "+f+"\n")
		l, err := loadConfig(p)
		must(t, err)
		keys := l.gw.Identity.PublishKeys
		if len(keys) != 2 {
			t.Fatalf("%s: %d keys", f, len(keys))
		}
		for _, k := range keys {
			switch x := k.(type) {
			case *ecdsa.PublicKey:
				if !x.Equal(ec.Public()) {
					t.Errorf("%s: wrong EC key", f)
				}
			case ed25519.PublicKey:
				if !x.Equal(ed.Public()) {
					t.Errorf("%s: wrong Ed25519 key", f)
				}
			default:
				t.Errorf("%s: key of type %T (a private key must become its public half)", f, k)
			}
		}
		if !slices.Contains(watchedFiles(p, l.file), filepath.Join(dir, f)) {
			t.Errorf("%s is not watched", f)
		}
	}
	p := writeFile(t, dir, "gatehouse.yaml", watchBase+"identity:\n  publish_keys_file: empty.pem\n")
	if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), "identity.publish_keys_file") {
		t.Errorf("a file without keys: %v", err)
	}
}

// A changed signing_key_file is applied by a reload: the new key signs and the old one
// stays in the JWKS.
func TestIdentityKeyFileReload(t *testing.T) {
	dir := t.TempDir()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := writeFile(t, dir, "identity.pem", pemKey(t, k1))
	p := writeFile(t, dir, "gatehouse.yaml", watchBase+identityRoute+"identity:\n  signing_key_file: identity.pem\n")
	l, err := loadConfig(p)
	must(t, err)
	gw, err := gatehouse.New(l.gw)
	must(t, err)
	defer gw.Close()
	jwks := func() []string {
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:9080"+gatehouse.JWKSPath, nil))
		var set jose.JSONWebKeySet
		must(t, json.Unmarshal(rec.Body.Bytes(), &set))
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.KeyID)
		}
		return kids
	}
	before := jwks()
	if len(before) != 1 {
		t.Fatalf("JWKS %v", before)
	}
	writeFile(t, dir, filepath.Base(key), pemKey(t, k2))
	if reload(p, l, gw, nil, slog.New(slog.DiscardHandler)) == nil {
		t.Fatal("reload failed")
	}
	after := jwks()
	if len(after) != 2 || after[1] != before[0] || after[0] == before[0] {
		t.Fatalf("JWKS after the key file changed = %v, want a new kid first and %v after it", after, before)
	}
}
