package idp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionAlg picks the JWS algorithm for a client key, checking that they fit.
func assertionAlg(key crypto.Signer, alg string) (jose.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		switch alg {
		case "", "RS256":
			return jose.RS256, nil
		case "RS384", "RS512", "PS256", "PS384", "PS512":
			return jose.SignatureAlgorithm(alg), nil
		}
	case *ecdsa.PublicKey:
		want := map[elliptic.Curve]jose.SignatureAlgorithm{elliptic.P256(): jose.ES256, elliptic.P384(): jose.ES384, elliptic.P521(): jose.ES512}[k.Curve]
		if alg == "" || jose.SignatureAlgorithm(alg) == want {
			return want, nil
		}
	default:
		return "", fmt.Errorf("idp: client key of type %T is not supported (use RSA or ECDSA)", k)
	}
	return "", fmt.Errorf("idp: client key algorithm %q does not fit the key", alg)
}

// assertionParams returns the private_key_jwt parameters for the token endpoint, or nil
// when the client authenticates otherwise.
func (c *Client) assertionParams(d *discovered) url.Values {
	if d.authMethod != AuthPrivateKeyJWT {
		return nil
	}
	return c.assertionParamsFor(d.meta.TokenEndpoint)
}

// assertionParamsFor signs a fresh, short-lived client assertion (RFC 7523 §3) for an
// endpoint: iss and sub are the client id, aud the endpoint (or the issuer, with
// AssertionAudienceIssuer), jti random.
func (c *Client) assertionParamsFor(endpoint string) url.Values {
	audience := endpoint
	if c.cfg.AssertionAudience == AssertionAudienceIssuer {
		audience = c.cfg.Issuer
	}
	alg, _ := assertionAlg(c.cfg.ClientKey, c.cfg.ClientKeyAlg) // checked in New
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if c.cfg.ClientKeyID != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), c.cfg.ClientKeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: c.cfg.ClientKey}, opts)
	if err != nil {
		return nil
	}
	now := c.now()
	jti := make([]byte, 16)
	rand.Read(jti)
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.cfg.ClientID, Subject: c.cfg.ClientID, Audience: jwt.Audience{audience},
		ID: base64.RawURLEncoding.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		return nil
	}
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {raw}}
}

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
