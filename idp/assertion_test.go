package idp_test

import (
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// Client assertions name the endpoint they are sent to by default, which every provider
// accepts, or the issuer (RFC 7523bis) with AssertionAudienceIssuer; a provider that
// expects the other one refuses the client, and says so as invalid_client.
func TestClientAssertionAudience(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		audience       string
		providerIssuer bool
		wantAud        func(p *idptest.Provider) string
		refused        bool
	}{
		{"endpoint (default)", "", false, func(p *idptest.Provider) string { return p.Issuer + "/token" }, false},
		{"issuer", idp.AssertionAudienceIssuer, true, func(p *idptest.Provider) string { return p.Issuer }, false},
		{"issuer at a provider that wants the endpoint", idp.AssertionAudienceIssuer, false, nil, true},
		{"endpoint at a provider that wants the issuer", idp.AssertionAudienceEndpoint, true, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.New(t)
			p.Set(func(k *idptest.Knobs) {
				k.ClientKey, k.AssertionIssuerAudience, k.PAR = key.Public(), tc.providerIssuer, true
			})
			c := newClient(t, p, func(c *idp.Config) { c.ClientKey, c.AssertionAudience, c.ClientSecret = key, tc.audience, "" })
			_, err := c.ClientCredentials(t.Context(), idp.RefreshOptions{})
			if tc.refused {
				wantErr(t, err, idp.ErrRefused)
				wantTokenError(t, err, 401, "invalid_client")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.ParseSigned(p.LastForm("token").Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			var cl jwt.Claims
			if err := tok.Claims(&key.PublicKey, &cl); err != nil {
				t.Fatal(err)
			}
			if want := tc.wantAud(p); len(cl.Audience) != 1 || cl.Audience[0] != want {
				t.Fatalf("aud %v, want [%s]", cl.Audience, want)
			}
			// The pushed authorization request and the revocation use the same audience rule.
			if _, err := c.AuthCodeURL(t.Context(), "s", "n", "v", nil); err != nil {
				t.Fatalf("pushed authorization request: %v", err)
			}
			if err := c.Revoke(t.Context(), "some-token", "refresh_token"); err != nil {
				t.Fatalf("revocation: %v", err)
			}
		})
	}
	if _, err := idp.New(idp.Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s", AssertionAudience: "token"}); err == nil {
		t.Fatal("an unknown assertion audience was accepted")
	}
}

// A token exchange (RFC 8693) trades the user's access token for one for another
// audience; the provider's refusal is a refusal, its busy answer a wait, and neither the
// subject token nor the secret appears in an error.
func TestTokenExchange(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	tokens := mustLogin(t, p, c)
	got, err := c.TokenExchange(t.Context(), tokens.AccessToken, idp.ExchangeOptions{
		RefreshOptions: idp.RefreshOptions{Audience: "https://orders.example", Scopes: []string{"orders:read"}}})
	if err != nil {
		t.Fatal(err)
	}
	if aud, ok := p.ExchangedFor(got.AccessToken); !ok || aud != "https://orders.example" || got.RefreshToken != "" {
		t.Fatalf("exchanged token %+v for %q", got, aud)
	}
	form := p.LastForm("token")
	if form.Get("grant_type") != idptest.GrantTokenExchange || form.Get("subject_token") != tokens.AccessToken ||
		form.Get("subject_token_type") != idp.TokenTypeAccessToken || form.Get("scope") != "orders:read" || form.Has("requested_token_type") {
		t.Fatalf("exchange request %v", form)
	}
	if _, err := c.TokenExchange(t.Context(), tokens.AccessToken, idp.ExchangeOptions{RequestedTokenType: idp.TokenTypeJWT}); err != nil {
		t.Fatal(err)
	}
	if got := p.LastForm("token").Get("requested_token_type"); got != idp.TokenTypeJWT {
		t.Fatalf("requested_token_type %q", got)
	}

	_, err = c.TokenExchange(t.Context(), "not-a-token-of-this-provider", idp.ExchangeOptions{})
	wantErr(t, err, idp.ErrRefused)
	wantTokenError(t, err, 400, "invalid_grant")
	p.Set(func(k *idptest.Knobs) { k.ExchangeStatus, k.ExchangeError, k.RetryAfter = 429, "slow_down", "7" })
	_, err = c.TokenExchange(t.Context(), tokens.AccessToken, idp.ExchangeOptions{})
	wantErr(t, err, idp.ErrUnavailable)
	if d, busy := idp.RetryAfter(err); !busy || d != 7*time.Second {
		t.Fatalf("RetryAfter = %v %v", d, busy)
	}
	if strings.Contains(err.Error(), tokens.AccessToken) || strings.Contains(err.Error(), p.ClientSecret) {
		t.Fatalf("error %q holds a secret", err)
	}
}
