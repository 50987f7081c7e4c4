package idp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	jose "github.com/go-jose/go-jose/v4"
)

// clock is a settable clock for the client.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func withClock(c *clock) func(*idp.Config) { return func(cfg *idp.Config) { cfg.Now = c.Now } }

// A flood of logout tokens with bad signatures or made-up kids costs the provider at most
// one JWKS fetch per bound, not one per token (go-oidc's RemoteKeySet fetches on every
// failure), and a token signed with a genuinely new key is still verified at once.
func TestJWKSRefetchIsBounded(t *testing.T) {
	p := idptest.New(t)
	clk := &clock{now: time.Now()}
	c := newClient(t, p, withClock(clk))
	ctx := t.Context()
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err != nil {
		t.Fatal(err)
	}
	if n := p.Count("jwks"); n != 1 {
		t.Fatalf("%d JWKS fetches for the first token, want 1", n)
	}
	flood := func(n int) {
		t.Helper()
		p.Set(func(k *idptest.Knobs) { k.SignWith = "forged" })
		defer reset(p)
		for i := range n {
			if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err == nil {
				t.Fatal("a forged token verified")
			}
			claims := map[string]any{"iss": p.Issuer, "aud": p.ClientID, "sub": "alice", "jti": rand64(i),
				"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
				"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
			if _, err := c.VerifyLogoutToken(ctx, p.SignWithKey(p.ForgedKey, "kid-"+rand64(i), claims)); err == nil {
				t.Fatal("a token with a made-up kid verified")
			}
		}
	}
	flood(200)
	if n := p.Count("jwks"); n != 1 {
		t.Fatalf("%d JWKS fetches after 400 bad tokens within a second, want 1 (no refetch before the bound)", n)
	}
	clk.Add(idp.UnknownKeyRefetchInterval)
	flood(200)
	if n := p.Count("jwks"); n != 2 {
		t.Fatalf("%d JWKS fetches after 400 more bad tokens a second later, want 2", n)
	}
	clk.Add(idp.KeyRefetchInterval)
	flood(200)
	if n := p.Count("jwks"); n != 3 {
		t.Fatalf("%d JWKS fetches after 400 more bad tokens %s later, want 3", n, idp.KeyRefetchInterval)
	}
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err != nil {
		t.Fatalf("a genuine token after the flood: %v", err)
	}
	// A rotation: the new kid is looked up at once (the last fetch is over a second old).
	clk.Add(idp.UnknownKeyRefetchInterval)
	p.RotateKey()
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err != nil {
		t.Fatalf("a token signed with the provider's new key: %v", err)
	}
	if n := p.Count("jwks"); n != 4 {
		t.Fatalf("%d JWKS fetches, want 4 (one for the new kid)", n)
	}
	// The rediscovery that unknown keys trigger is bounded too: at most one per minute.
	if n := p.Count("discovery"); n > 3 {
		t.Fatalf("%d discovery requests during the flood, want at most 3", n)
	}
}

func rand64(i int) string { return fmt.Sprintf("%d-%d", time.Now().UnixNano(), i) }

// The provider rotates its signing key (a new kid published next to the old one, then
// the old one removed) while sessions are alive: logins, refreshes (whose new ID token
// the new key signs) and back-channel logouts keep working, and once the old key is gone
// from the JWKS and the cache has aged, tokens signed with it are refused.
func TestProviderKeyRotation(t *testing.T) {
	p := idptest.New(t)
	clk := &clock{now: time.Now()}
	// The fake issues on the real clock; the tokens' exp follow the client's, which moves
	// past the key cache's age.
	p.Set(func(k *idptest.Knobs) {
		k.IDTokenOnRefresh = true
		k.IDTokenMutate = func(c map[string]any) { c["exp"] = clk.Now().Add(time.Hour).Unix() }
	})
	expLater := func(c map[string]any) { c["exp"] = clk.Now().Add(time.Minute).Unix() }
	c := newClient(t, p, withClock(clk))
	ctx := t.Context()
	oldKey, oldKid := p.Key, p.KeyID
	rt := mustLogin(t, p, c).RefreshToken
	logoutClaims := func() map[string]any {
		return map[string]any{"iss": p.Issuer, "aud": p.ClientID, "sub": "alice", "jti": rand64(0),
			"iat": time.Now().Unix(), "exp": clk.Now().Add(time.Minute).Unix(),
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	}
	works := func(stage string) {
		t.Helper()
		if _, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{}); err != nil {
			t.Fatalf("%s: refresh: %v", stage, err)
		}
		if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", expLater)); err != nil {
			t.Fatalf("%s: logout token: %v", stage, err)
		}
		mustLogin(t, p, c)
	}
	works("before the rotation")

	clk.Add(2 * time.Second)
	newKid := p.RotateKey()
	if newKid == oldKid {
		t.Fatal("RotateKey kept the kid")
	}
	works("with the new key published next to the old one")
	if _, err := c.VerifyLogoutToken(ctx, p.SignWithKey(oldKey, oldKid, logoutClaims())); err != nil {
		t.Fatalf("a token signed with the old key while it is still published: %v", err)
	}

	p.DropRetiredKeys()
	clk.Add(idp.KeyMaxAge)
	works("with the old key removed")
	if _, err := c.VerifyLogoutToken(ctx, p.SignWithKey(oldKey, oldKid, logoutClaims())); err == nil {
		t.Fatal("a token signed with the removed key verified after the cache aged")
	}
	// The refresh token from before the rotation still works, and a new ID token from it
	// was verified with the new key: the session lived through the whole rotation.
	if _, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The discovery document is read again after MetadataRefresh; a failed refresh keeps the
// old metadata (the client stays ready) and is tried again a minute later.
func TestMetadataRefresh(t *testing.T) {
	p := idptest.New(t)
	clk := &clock{now: time.Now()}
	c := newClient(t, p, withClock(clk))
	ctx := t.Context()
	endSession := func() bool {
		t.Helper()
		_, ok, err := c.EndSessionURL(ctx, "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !endSession() || p.Count("discovery") != 1 {
		t.Fatalf("first discovery: %d requests", p.Count("discovery"))
	}
	p.Set(func(k *idptest.Knobs) { k.NoEndSession = true })
	clk.Add(59 * time.Minute)
	if !endSession() || p.Count("discovery") != 1 {
		t.Fatal("the metadata was read again before MetadataRefresh")
	}

	// The provider's discovery fails when the refresh is due: the old metadata stays.
	p.Set(func(k *idptest.Knobs) { k.DiscoveryStatus = 503 })
	clk.Add(time.Minute)
	if !endSession() || p.Count("discovery") != 2 {
		t.Fatalf("refresh due: %d discovery requests, want 2, and the old metadata kept", p.Count("discovery"))
	}
	if ok, _ := c.Ready(); !ok {
		t.Fatal("a failed refresh made the client not ready")
	}
	if _, err := c.AuthCodeURL(ctx, "s", "n", "verifier-verifier-verifier-verifier-verifier", nil); err != nil {
		t.Fatalf("a failed refresh broke logins: %v", err)
	}
	if p.Count("discovery") != 2 {
		t.Fatal("a failed refresh was retried at once")
	}

	p.Set(func(k *idptest.Knobs) { k.DiscoveryStatus = 0 })
	clk.Add(idp.RediscoverInterval)
	if endSession() || p.Count("discovery") != 3 {
		t.Fatalf("after the provider recovered: %d discovery requests, want 3, and the new metadata", p.Count("discovery"))
	}
}

// The provider moves its JWKS to another URL and rotates its key: a token signed with the
// new key makes the client read the discovery document again (at most once a minute),
// find the new jwks_uri and verify the token there.
func TestRediscoveryFindsAMovedJWKS(t *testing.T) {
	p := idptest.New(t)
	clk := &clock{now: time.Now()}
	c := newClient(t, p, withClock(clk))
	ctx := t.Context()
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err != nil {
		t.Fatal(err)
	}
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.Key.PublicKey, KeyID: p.KeyID, Algorithm: "RS256", Use: "sig"}}})
	}))
	t.Cleanup(moved.Close)
	p.RotateKey()
	p.DropRetiredKeys()
	p.Set(func(k *idptest.Knobs) { k.JWKSURI = moved.URL; k.JWKSStatus = http.StatusNotFound })
	discoveries := p.Count("discovery")
	clk.Add(idp.RediscoverInterval)
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "sid-1", "logout+jwt", nil)); err != nil {
		t.Fatalf("a token signed with the key at the moved JWKS: %v", err)
	}
	if n := p.Count("discovery") - discoveries; n != 1 {
		t.Fatalf("%d discovery requests, want 1", n)
	}
	// Unknown kids do not make it read discovery again within the minute.
	for i := range 20 {
		c.VerifyLogoutToken(ctx, p.SignWithKey(p.ForgedKey, "kid-"+rand64(i), map[string]any{"iss": p.Issuer}))
	}
	if n := p.Count("discovery") - discoveries; n != 1 {
		t.Fatalf("%d discovery requests after 20 unknown kids, want still 1", n)
	}
}

// With no key loadable at all, a logout token is "try again later", not "invalid".
func TestLogoutTokenWithoutKeysIsUnavailable(t *testing.T) {
	p := idptest.New(t)
	p.Set(func(k *idptest.Knobs) { k.JWKSStatus = http.StatusInternalServerError })
	c := newClient(t, p)
	_, err := c.VerifyLogoutToken(t.Context(), p.LogoutToken("alice", "sid-1", "logout+jwt", nil))
	wantErr(t, err, idp.ErrUnavailable)
}

// An ID token that cannot be checked because the provider's keys cannot be loaded is the
// provider being unavailable (try again), not an invalid token (a refused login).
func TestIDTokenWithoutKeysIsUnavailable(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	p.Set(func(k *idptest.Knobs) { k.JWKSStatus = http.StatusServiceUnavailable })
	_, _, err := login(t, p, c)
	wantErr(t, err, idp.ErrUnavailable)
}
