package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// pemFiles writes a certificate and its key as PEM files and returns their paths.
func pemFiles(t *testing.T, dir, name string, der []byte, key crypto.Signer) (string, string) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, keyFile
}

// testPKI is a CA, a server certificate for 127.0.0.1, a client certificate from the CA
// (CN=bff-pki) and a self-signed client certificate (CN=bff-self).
type testPKI struct {
	caFile, serverCert, serverKey string
	pkiCert, pkiKey               string
	selfCert, selfKey             string
	selfDER                       []byte
	selfPub                       crypto.PublicKey
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	tmpl := func(cn string, ca bool) *x509.Certificate {
		serial++
		c := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: ca}
		if ca {
			c.KeyUsage |= x509.KeyUsageCertSign
		}
		return c
	}
	caKey := newKey()
	caTmpl := tmpl("gatehouse test CA", true)
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	var p testPKI
	p.caFile, _ = pemFiles(t, dir, "ca", caDER, caKey)

	srvKey := newKey()
	st := tmpl("127.0.0.1", false)
	st.IPAddresses, st.ExtKeyUsage = []net.IP{net.ParseIP("127.0.0.1")}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, st, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert, p.serverKey = pemFiles(t, dir, "server", der, srvKey)

	cliKey := newKey()
	ct := tmpl("bff-pki", false)
	ct.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err = x509.CreateCertificate(rand.Reader, ct, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.pkiCert, p.pkiKey = pemFiles(t, dir, "client-pki", der, cliKey)

	selfKey := newKey()
	sst := tmpl("bff-self", false)
	sst.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p.selfDER, err = x509.CreateCertificate(rand.Reader, sst, sst, &selfKey.PublicKey, selfKey)
	if err != nil {
		t.Fatal(err)
	}
	p.selfCert, p.selfKey = pemFiles(t, dir, "client-self", p.selfDER, selfKey)
	p.selfPub = &selfKey.PublicKey
	return p
}

// RFC 8705 against oidc-provider: tls_client_auth (a certificate from a CA the provider
// trusts, matched by subject) and self_signed_tls_client_auth (a certificate registered
// in the client's JWKS), through the provider's mtls_endpoint_aliases on its TLS
// listener (trusted with provider.tls_ca_file): the pushed authorization request, the
// code exchange, a refresh and the logout's revocation all authenticate with the
// certificate alone. A certificate the provider does not know is refused at login.
func TestE2EMutualTLSClientAuth(t *testing.T) {
	pki := newTestPKI(t)
	ports := map[string]int{"pki": freePort(t), "self": freePort(t), "stranger": freePort(t)}
	clientFor := func(name string) harness.Client {
		c := harness.BFFClient(fmt.Sprintf("http://127.0.0.1:%d", ports[name]))
		c.ClientID, c.ClientSecret = "bff-"+name, ""
		return c
	}
	pkiClient := clientFor("pki")
	pkiClient.TokenEndpointAuthMethod = "tls_client_auth"
	pkiClient.Extra = map[string]any{"tls_client_auth_subject_dn": "CN=bff-pki"}
	selfClient := clientFor("self")
	selfClient.TokenEndpointAuthMethod = "self_signed_tls_client_auth"
	jwk := jose.JSONWebKey{Key: pki.selfPub, Use: "sig"}
	raw, _ := json.Marshal(jwk)
	var m map[string]any
	json.Unmarshal(raw, &m)
	m["x5c"] = []string{base64.StdEncoding.EncodeToString(pki.selfDER)}
	sum := sha256.Sum256(pki.selfDER)
	m["x5t#S256"] = base64.RawURLEncoding.EncodeToString(sum[:]) // what oidc-provider matches the certificate with
	selfClient.JWKS, _ = json.Marshal(map[string]any{"keys": []any{m}})
	stranger := clientFor("stranger")
	stranger.TokenEndpointAuthMethod = "tls_client_auth"
	stranger.Extra = map[string]any{"tls_client_auth_subject_dn": "CN=someone-else"}
	idp := harness.StartProvider(t, harness.ProviderConfig{
		Clients:        []harness.Client{pkiClient, selfClient, stranger, probeClient()},
		AccessTokenTTL: 4 * time.Second,
		MTLS:           &harness.MTLS{Port: freePort(t), Cert: pki.serverCert, Key: pki.serverKey, ClientCA: pki.caFile},
	})
	api := startUpstream(t)
	config := func(name, method, cert, key string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: http://127.0.0.1:%d
provider:
  issuer: %s
  client_id: bff-%s
  token_endpoint_auth_method: %s
  tls_client_cert_file: %s
  tls_client_key_file: %s
  tls_ca_file: %s
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 1s
admin:
  listen: {{ADMIN}}
routes:
  - path: /api/
    upstream: %s
`, ports[name], ports[name], idp.Issuer(), name, method, cert, key, pki.caFile, api.URL)
	}
	for _, tc := range []struct{ name, method, cert, key string }{
		{"pki", "tls_client_auth", pki.pkiCert, pki.pkiKey},
		{"self", "self_signed_tls_client_auth", pki.selfCert, pki.selfKey},
	} {
		t.Run(tc.method, func(t *testing.T) {
			gw := startGatehouse(t, ports[tc.name], config(tc.name, tc.method, tc.cert, tc.key))
			before := idp.Stats(t)
			b := newBrowser(t, gw.URL)
			expect(t, b.login("alice", "wonderland", "/"), 200)
			expect(t, b.api("GET", "/api/x"), 200)
			time.Sleep(3500 * time.Millisecond)
			expect(t, b.api("GET", "/api/x"), 200)
			expect(t, b.api("POST", "/bff/logout"), 200)
			after := idp.Stats(t)
			if after.PushedRequests != before.PushedRequests+1 || after.TokenRequests["refresh_token"] != before.TokenRequests["refresh_token"]+1 {
				t.Fatalf("pushed %d→%d, refreshes %d→%d", before.PushedRequests, after.PushedRequests,
					before.TokenRequests["refresh_token"], after.TokenRequests["refresh_token"])
			}
			if n := after.TokenResponses["401"] - before.TokenResponses["401"]; n != 0 {
				t.Fatalf("the token endpoint refused the client %d times", n)
			}
			for _, s := range idp.IssuedTokens(t) {
				if s.Kind == "refresh_token" && introspect(t, idp, s.Value) {
					t.Fatal("a refresh token is active after logout: the revocation did not authenticate")
				}
			}
		})
	}
	t.Run("a certificate the provider does not know", func(t *testing.T) {
		gw := startGatehouse(t, ports["stranger"], config("stranger", "tls_client_auth", pki.pkiCert, pki.pkiKey))
		b := newBrowser(t, gw.URL)
		r := b.get("/bff/login", "Sec-Fetch-Mode", "navigate")
		if r.Status != 502 {
			t.Fatalf("login with a certificate of another subject: %d\n%s", r.Status, gw.Logs())
		}
		// The error is logged as the answer goes out: the line may follow it by a moment.
		waitFor(t, 5*time.Second, "the gateway to log the provider's invalid_client", func() bool {
			return strings.Contains(gw.Logs(), "invalid_client")
		})
	})
}
