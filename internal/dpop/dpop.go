// Package dpop makes DPoP proofs (RFC 9449): short JWTs, signed with a key pair that
// one session holds, that bind each request made with a DPoP-bound access token to that
// key, so a token copied elsewhere is useless without the key.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is a session's DPoP key pair (ECDSA P-256, ES256).
type Key struct {
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	jkt    string
}

// NewKey generates a key pair.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return fromPrivate(priv)
}

// Parse reads a key that Marshal wrote.
func Parse(der []byte) (*Key, error) {
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("dpop: key: %w", err)
	}
	if k.Curve != elliptic.P256() {
		return nil, errors.New("dpop: key is not P-256")
	}
	return fromPrivate(k)
}

func fromPrivate(priv *ecdsa.PrivateKey) (*Key, error) {
	pub := jose.JSONWebKey{Key: &priv.PublicKey}
	// The public JWK goes into every proof's header: marshalled once here, not by the
	// signer for each proof (go-jose's EmbedJWK does that every time).
	jwk, err := pub.MarshalJSON()
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", json.RawMessage(jwk)))
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &Key{priv: priv, signer: signer, jkt: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// Marshal is the private key for the sealed session record (SEC 1 DER).
func (k *Key) Marshal() []byte {
	der, _ := x509.MarshalECPrivateKey(k.priv)
	return der
}

// Thumbprint is the key's JWK SHA-256 thumbprint (RFC 7638), base64url: the "jkt" that
// a bound token's "cnf" names.
func (k *Key) Thumbprint() string { return k.jkt }

type claims struct {
	jwt.Claims
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof signs a proof for one request: its method, its URL (without query and
// fragment, RFC 9449 §4.2), the access token it carries ("" for a token request), and
// the server's nonce ("" when it asked for none).
func (k *Key) Proof(method string, u *url.URL, accessToken, nonce string, now time.Time) (string, error) {
	htu := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	c := claims{HTM: method, HTU: htu.String(), Nonce: nonce}
	c.ID = rand.Text()
	c.IssuedAt = jwt.NewNumericDate(now)
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return jwt.Signed(k.signer).Claims(c).Serialize()
}

type ctxKey struct{}

// WithKey returns a context whose requests to the provider carry proofs made with k:
// the idp package's transport reads it.
func WithKey(ctx context.Context, k *Key) context.Context {
	if k == nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, k)
}

// FromContext returns the key WithKey put in ctx, or nil.
func FromContext(ctx context.Context) *Key {
	k, _ := ctx.Value(ctxKey{}).(*Key)
	return k
}
