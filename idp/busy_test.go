package idp_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// wantBusy checks that err is "try again later" with the provider's wait.
func wantBusy(t *testing.T, err error, wait time.Duration) {
	t.Helper()
	wantErr(t, err, idp.ErrUnavailable)
	got, busy := idp.RetryAfter(err)
	if !busy || got != wait {
		t.Fatalf("RetryAfter(%v) = %s, %v; want %s, true", err, got, busy, wait)
	}
}

// A busy provider is not a provider that said no: the refresh token must survive.
func TestRefreshBusyIsUnavailable(t *testing.T) {
	p := idptest.New(t)
	clock := testutil.ClockAt(time.Now().Truncate(time.Second))
	c := newClient(t, p, func(c *idp.Config) { c.Now = clock.Now })
	rt := mustLogin(t, p, c).RefreshToken
	ctx := t.Context()
	for _, tc := range []struct {
		name       string
		status     int
		code       string
		retryAfter string
		wait       time.Duration
	}{
		{"429 with delta-seconds", 429, "", "7", 7 * time.Second},
		{"429 with an HTTP-date", 429, "", "in 20 s", 20 * time.Second},
		{"408", 408, "", "", 0},
		{"temporarily_unavailable with 400", 400, "temporarily_unavailable", "", 0},
		{"slow_down with 400 and Retry-After", 400, "slow_down", "3", 3 * time.Second},
		{"503 with a huge Retry-After", 503, "", "86400", 5 * time.Minute},
		{"429 with a Retry-After in the past", 429, "", "Mon, 02 Jan 2006 15:04:05 GMT", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.retryAfter == "in 20 s" {
				tc.retryAfter = clock.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat)
			}
			p.Set(func(k *idptest.Knobs) {
				k.RefreshStatus, k.RefreshError, k.RetryAfter = tc.status, tc.code, tc.retryAfter
			})
			defer reset(p)
			_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
			wantBusy(t, err, tc.wait)
			wantTokenError(t, err, tc.status, tc.code)
			clock.Advance(tc.wait) // the wait is over: the next case asks again
		})
	}
	if _, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{}); err != nil {
		t.Fatalf("the refresh token did not survive the busy answers: %v", err)
	}

	// A 500 is a failure to try again, but not "busy": it says nothing about waiting.
	p.Set(func(k *idptest.Knobs) { k.RefreshStatus = 500 })
	_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
	wantErr(t, err, idp.ErrUnavailable)
	if _, busy := idp.RetryAfter(err); busy {
		t.Fatal("a 500 reported as busy")
	}
}

// Retry-After is honoured: until it passes, the token endpoint is not asked again.
func TestRetryAfterIsHonoured(t *testing.T) {
	p := idptest.New(t)
	clock := testutil.ClockAt(time.Now().Truncate(time.Second))
	c := newClient(t, p, func(c *idp.Config) { c.Now = clock.Now })
	rt := mustLogin(t, p, c).RefreshToken
	ctx := t.Context()

	p.Set(func(k *idptest.Knobs) {
		k.RefreshStatus, k.RefreshError, k.RetryAfter = 429, "temporarily_unavailable", "30"
	})
	_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
	wantBusy(t, err, 30*time.Second)
	reset(p) // recovered, but it asked for 30 s
	asked := p.Count("refresh_token")

	clock.Advance(10 * time.Second)
	_, err = c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
	wantBusy(t, err, 20*time.Second)
	_, err = c.ClientCredentials(ctx, idp.RefreshOptions{}) // the same endpoint
	wantBusy(t, err, 20*time.Second)
	if n := p.Count("refresh_token") + p.Count("client_credentials"); n != asked {
		t.Fatalf("the token endpoint was asked %d more times before its Retry-After passed", n-asked)
	}
	// Other endpoints are not held.
	if err := c.Revoke(ctx, "rt-other", "refresh_token"); err != nil {
		t.Fatalf("revocation held by the token endpoint's Retry-After: %v", err)
	}

	clock.Advance(20 * time.Second)
	if _, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{}); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	if p.Count("refresh_token") != asked+1 {
		t.Fatal("the provider was not asked after Retry-After passed")
	}
}

func TestUserinfoBusyIsUnavailable(t *testing.T) {
	p := idptest.New(t)
	clock := testutil.ClockAt(time.Now().Truncate(time.Second))
	c := newClient(t, p, func(c *idp.Config) { c.Now = clock.Now })

	p.Set(func(k *idptest.Knobs) { k.UserinfoStatus, k.RetryAfter = 429, "12" })
	_, _, err := login(t, p, c)
	wantBusy(t, err, 12*time.Second)
	wantTokenError(t, err, 429, "")
	reset(p)
	_, _, err = login(t, p, c)
	wantBusy(t, err, 12*time.Second) // not asked again yet
	clock.Advance(12 * time.Second)
	tokens, id, err := login(t, p, c)
	if err != nil {
		t.Fatal(err)
	}

	// The claims read again after a refresh: the same classes.
	p.Set(func(k *idptest.Knobs) { k.UserinfoStatus = 503 })
	_, err = c.SessionClaims(t.Context(), tokens.IDToken, tokens.AccessToken, id.Subject)
	wantBusy(t, err, 0)
	p.Set(func(k *idptest.Knobs) { k.UserinfoStatus = 401 })
	_, err = c.SessionClaims(t.Context(), tokens.IDToken, tokens.AccessToken, id.Subject)
	wantErr(t, err, idp.ErrRefused)
	reset(p)
	p.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"admin"}} })
	claims, err := c.SessionClaims(t.Context(), tokens.IDToken, tokens.AccessToken, id.Subject)
	groups, _ := claims["groups"].([]any)
	if err != nil || claims["name"] != "Alice Example" || len(groups) != 1 || groups[0] != "admin" {
		t.Fatalf("SessionClaims = %v, %v; want the ID token's name and userinfo's new groups", claims, err)
	}
	_, err = c.SessionClaims(t.Context(), tokens.IDToken, tokens.AccessToken, "mallory")
	wantErr(t, err, idp.ErrInvalidToken)
}

func TestRevokeBusyIsUnavailable(t *testing.T) {
	p := idptest.New(t)
	clock := testutil.ClockAt(time.Now().Truncate(time.Second))
	c := newClient(t, p, func(c *idp.Config) { c.Now = clock.Now })
	rt := mustLogin(t, p, c).RefreshToken
	ctx := t.Context()
	for _, tc := range []struct {
		status int
		code   string
	}{{429, ""}, {503, ""}, {400, "temporarily_unavailable"}, {400, "slow_down"}} {
		p.Set(func(k *idptest.Knobs) { k.RevokeStatus, k.RevokeError, k.RetryAfter = tc.status, tc.code, "5" })
		err := c.Revoke(ctx, rt, "refresh_token")
		wantBusy(t, err, 5*time.Second)
		clock.Advance(5 * time.Second)
	}
	p.Set(func(k *idptest.Knobs) { k.RevokeStatus, k.RevokeError = 400, "unsupported_token_type" })
	wantErr(t, c.Revoke(ctx, rt, "refresh_token"), idp.ErrRefused)
	reset(p)
	if err := c.Revoke(ctx, rt, "refresh_token"); err != nil || !p.Revoked(rt) {
		t.Fatalf("Revoke after the provider recovered: %v", err)
	}
}

// A refresh that returns an ID token returns its verified claims, so that the gateway
// can replace the claims it had from login.
func TestRefreshReturnsIDTokenClaims(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	rt := mustLogin(t, p, c).RefreshToken
	got, err := c.Refresh(t.Context(), rt, "alice", idp.RefreshOptions{})
	if err != nil || got.IDClaims != nil {
		t.Fatalf("no ID token: IDClaims = %v, %v", got.IDClaims, err)
	}
	p.Set(func(k *idptest.Knobs) {
		k.IDTokenOnRefresh = true
		k.Claims = map[string]any{"groups": []string{"staff"}}
	})
	got, err = c.Refresh(t.Context(), rt, "alice", idp.RefreshOptions{})
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := got.IDClaims["groups"].([]any)
	if got.IDClaims["sub"] != "alice" || len(groups) != 1 || groups[0] != "staff" {
		t.Fatalf("IDClaims = %v", got.IDClaims)
	}
}
