package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// client_key_file takes a PEM key, a private JWK or a private JWK Set, from which
// client_key_id picks the signing key; every way to get it wrong is a field error that
// names the kids on offer and never prints key material.
func TestClientKeyFile(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rsaKey, KeyID: "old", Algorithm: "PS256", Use: "sig"},
		{Key: ecKey, KeyID: "new", Algorithm: "ES256", Use: "sig"},
	}}
	b, _ := json.Marshal(set)
	writeFile(t, dir, "keys.json", string(b))
	one, _ := json.Marshal(set.Keys[1])
	writeFile(t, dir, "one.json", string(one))
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{set.Keys[0].Public()}})
	writeFile(t, dir, "public.json", string(pub))

	config := func(file, kid string) string {
		extra := ""
		if kid != "" {
			extra = "\n  client_key_id: " + kid
		}
		return writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_key_file: `+file+extra+"\n")
	}
	for _, tc := range []struct {
		file, kid        string
		wantKid, wantAlg string
		ec               bool
	}{
		{"key.pem", "", "", "", false},
		{"key.pem", "pem-kid", "pem-kid", "", false},
		{"keys.json", "old", "old", "PS256", false},
		{"keys.json", "new", "new", "ES256", true},
		{"one.json", "", "new", "ES256", true},
	} {
		l, err := loadConfig(config(tc.file, tc.kid))
		if err != nil {
			t.Fatalf("%s kid %q: %v", tc.file, tc.kid, err)
		}
		p := l.gw.Provider
		if _, isEC := p.ClientKey.(*ecdsa.PrivateKey); p.ClientKey == nil || isEC != tc.ec || p.ClientKeyID != tc.wantKid || p.ClientKeyAlg != tc.wantAlg {
			t.Errorf("%s kid %q: key %T kid %q alg %q, want kid %q alg %q", tc.file, tc.kid, p.ClientKey, p.ClientKeyID, p.ClientKeyAlg, tc.wantKid, tc.wantAlg)
		}
	}
	for _, tc := range []struct{ file, kid, want string }{
		{"keys.json", "", `provider.client_key_file: ` + dir + `/keys.json holds 2 keys (kid "old", "new"): set provider.client_key_id`},
		{"keys.json", "newer", `has no key with kid "newer" (it has "old", "new")`},
		{"public.json", "old", `key "old" is a public key`},
		{"missing.json", "", "cannot read"},
	} {
		code, _, errOut := runCmd(t, "check", "--config", config(tc.file, tc.kid))
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s kid %q: check = %d, want %q in:\n%s", tc.file, tc.kid, code, tc.want, errOut)
		}
		if strings.Contains(errOut, `"d"`) || strings.Contains(errOut, "PRIVATE") {
			t.Errorf("key material in: %s", errOut)
		}
	}
}
