package gatehouse_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// A provider that is busy is not a provider that said no: a 429, 408,
// temporarily_unavailable or slow_down at a refresh is a 503 with the provider's
// Retry-After, the session and its refresh token survive, the provider is not asked
// again before Retry-After, and the first call after it succeeds.
func TestBusyProviderDuringRefreshKeepsSession(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		code       string
		retryAfter int
	}{
		{"429 with Retry-After", 429, "", 30},
		{"429 temporarily_unavailable", 429, "temporarily_unavailable", 0},
		{"408", 408, "", 0},
		{"400 temporarily_unavailable", 400, "temporarily_unavailable", 0},
		{"400 slow_down with Retry-After", 400, "slow_down", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t)
			e := routesEnv(t, up)
			e.idp.Set(func(k *idptest.Knobs) { k.RotateRefresh = true })
			b := e.browser()
			b.login()
			e.clock.Advance(2 * time.Minute) // the 1-minute access token has expired
			e.idp.Set(func(k *idptest.Knobs) {
				k.RefreshStatus, k.RefreshError = tc.status, tc.code
				if tc.retryAfter > 0 {
					k.RetryAfter = strconv.Itoa(tc.retryAfter)
				}
			})
			before := up.count()
			r := b.api("GET", "/api/x")
			wantJSONError(t, r, 503, "unavailable", "provider_unavailable")
			if got, want := r.Header.Get("Retry-After"), strconv.Itoa(tc.retryAfter); tc.retryAfter > 0 && got != want {
				t.Fatalf("Retry-After = %q, want %q", got, want)
			}
			if up.count() != before {
				t.Fatal("the upstream was called without a token")
			}
			wantStatus(t, b.api("GET", "/bff/user"), 200) // not ended, not tombstoned

			// The provider recovers, but asked to wait: until then it is not asked.
			e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError, k.RetryAfter = 0, "", "" })
			asked := e.idp.Count("refresh_token")
			if tc.retryAfter > 0 {
				e.clock.Advance(time.Duration(tc.retryAfter)*time.Second - time.Second)
				r := b.api("GET", "/api/x")
				wantJSONError(t, r, 503, "unavailable", "provider_unavailable")
				if r.Header.Get("Retry-After") != "1" {
					t.Fatalf("Retry-After = %q, want the 1 s left", r.Header.Get("Retry-After"))
				}
				if e.idp.Count("refresh_token") != asked {
					t.Fatal("the provider was asked again before its Retry-After passed")
				}
				e.clock.Advance(time.Second)
			}
			wantStatus(t, b.api("GET", "/api/x"), 200)
			if up.count() != before+1 || e.idp.Count("refresh_token") != asked+1 {
				t.Fatalf("after recovery: upstream calls %d, refreshes %d", up.count()-before, e.idp.Count("refresh_token")-asked)
			}
			tokens := e.idp.AccessTokens()
			if up.last(t).Auth != "Bearer "+tokens[len(tokens)-1] {
				t.Fatal("the upstream did not get the refreshed token")
			}
		})
	}
}

// At login, a busy userinfo endpoint is "try again" (503), not a refusal.
func TestLoginUserinfoBusy(t *testing.T) {
	e := newEnv(t)
	e.idp.Set(func(k *idptest.Knobs) { k.UserinfoStatus, k.RetryAfter = 429, "9" })
	b := e.browser()
	r := b.get(b.startLogin("/app"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, r, 503)
	if r.Header.Get("Retry-After") != "9" {
		t.Fatalf("Retry-After = %q, want 9", r.Header.Get("Retry-After"))
	}
	e.idp.Set(func(k *idptest.Knobs) { k.UserinfoStatus, k.RetryAfter = 0, "" })
	e.clock.Advance(9 * time.Second)
	b.login()
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

// A logout while the revocation endpoint is busy ends the session at once and revokes
// the refresh token once the provider recovers.
func TestLogoutRevocationBusyIsRetried(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	var rt string
	for _, s := range e.idp.IssuedSecrets() {
		if strings.HasPrefix(s, "rt-") {
			rt = s
		}
	}
	e.idp.Set(func(k *idptest.Knobs) { k.RevokeStatus, k.RetryAfter = 429, "2" })
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "")
	if e.idp.Revoked(rt) {
		t.Fatal("revoked while the provider answered 429")
	}
	e.idp.Set(func(k *idptest.Knobs) { k.RevokeStatus, k.RetryAfter = 0, "" })
	e.clock.Advance(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for !e.idp.Revoked(rt) {
		if time.Now().After(deadline) {
			t.Fatal("the refresh token was never revoked after the provider recovered")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
