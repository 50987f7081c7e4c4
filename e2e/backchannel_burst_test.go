package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// A hosted provider sends back-channel logouts for all its tenants from one address. A
// burst of valid logout tokens from it, well past rate_limits.backchannel, is accepted in
// full, and the provider's own genuine logout that follows ends alice's session: only
// tokens that fail are limited (and those get 429 past the limit).
func TestE2EBackchannelBurstThenGenuineLogout(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "burst-rs256"
	jwk, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stackOpts{
		jwks:      json.RawMessage(`{"keys":[` + string(jwk) + `]}`),
		extraYAML: "rate_limits:\n  backchannel: {per_minute: 6, burst: 3}\n",
	})
	alice := newBrowser(t, s.gw.URL)
	expect(t, alice.login("alice", "wonderland", "/"), 200)

	post := func(token string) *response {
		return newBrowser(t, s.gw.URL).do("POST", "/bff/backchannel", strings.NewReader("logout_token="+url.QueryEscape(token)),
			"Content-Type", "application/x-www-form-urlencoded")
	}
	for i := range 30 { // ten times the burst
		now := time.Now()
		tok := secSign(t, "RS256", key, kid, "logout+jwt", map[string]any{
			"iss": s.idp.Issuer(), "aud": "bff", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": secRandom(), "sub": "tenant-user-" + strconv.Itoa(i), "sid": "tenant-session-" + strconv.Itoa(i),
			"events": map[string]any{secBackchannelEvent: map[string]any{}}})
		if r := post(tok); r.Status != 200 {
			t.Fatalf("valid logout token %d of the burst: %d %s", i+1, r.Status, r.Body)
		}
	}
	for i := range 5 {
		want := 400
		if i >= 3 {
			want = 429
		}
		if r := post("not-a-jwt-" + strconv.Itoa(i)); r.Status != want {
			t.Fatalf("invalid logout token %d: %d, want %d", i+1, r.Status, want)
		}
	}
	if status, _ := alice.user(); status != 200 {
		t.Fatal("the burst ended alice's session")
	}

	// The genuine logout, sent by oidc-provider itself from the same address.
	s.idp.Reset(t)
	if _, sent := s.idp.EndSessions(t, "alice"); sent == 0 {
		t.Fatal("the provider sent no back-channel logout")
	}
	calls := s.idp.Stats(t).Backchannel
	if len(calls) == 0 || calls[0].Status != 200 {
		t.Fatalf("the provider's back-channel logout: %+v", calls)
	}
	if status, m := alice.user(); status != 401 || m["reason"] != "session_revoked" {
		t.Fatalf("alice after the genuine logout: %d %v", status, m)
	}
}
