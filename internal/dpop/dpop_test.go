package dpop

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// A proof is what RFC 9449 §4.2 asks: typ dpop+jwt, ES256, the public key in the
// header (and never the private one), htm, htu without query, iat, a fresh jti, ath
// for a token, nonce when given; and the key survives Marshal/Parse.
func TestProof(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://api.example/orders/1?x=secret#frag")
	now := time.Unix(1_800_000_000, 0)
	raw, err := k.Proof("POST", u, "the-token", "n-1", now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("header %+v", h)
	}
	var c claims
	if err := tok.Claims(h.JSONWebKey.Key, &c); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("the-token"))
	if c.HTM != "POST" || c.HTU != "https://api.example/orders/1" || c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) ||
		c.Nonce != "n-1" || !c.IssuedAt.Time().Equal(now) || len(c.ID) < 16 {
		t.Fatalf("claims %+v", c)
	}
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if base64.RawURLEncoding.EncodeToString(tp) != k.Thumbprint() {
		t.Fatal("the thumbprint is not the embedded key's")
	}
	again, _ := k.Proof("POST", u, "the-token", "", now)
	if again == raw {
		t.Fatal("two proofs are the same (jti must be fresh)")
	}
	back, err := Parse(k.Marshal())
	if err != nil || back.Thumbprint() != k.Thumbprint() {
		t.Fatalf("Parse(Marshal): %v", err)
	}
	if _, err := Parse([]byte("junk")); err == nil {
		t.Fatal("junk parsed as a key")
	}
}

func BenchmarkProof(b *testing.B) {
	k, _ := NewKey()
	u, _ := url.Parse("https://api.example/orders/1")
	for b.Loop() {
		if _, err := k.Proof("GET", u, "the-token", "", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
