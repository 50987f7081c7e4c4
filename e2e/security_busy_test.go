package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// TestSecurityProviderBusy (AVL-1): a busy provider is not a provider that said no. The
// real oidc-provider's token endpoint answers 429 temporarily_unavailable with
// Retry-After during a refresh: the call gets 503 JSON with Retry-After, the session
// and its refresh token survive, the provider is not asked again before Retry-After
// passes, and the first call after it recovers is proxied with a fresh token.
func TestSecurityProviderBusy(t *testing.T) {
	s := startStack(t, stackOpts{accessTTL: 3 * time.Second})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.api("GET", "/api/x"), 200)
	// Past the token's expiry: the next call must refresh. (Within the lead only, a failed
	// refresh keeps the current token, which still works.)
	time.Sleep(3*time.Second + 200*time.Millisecond)

	const retryAfter = 3
	s.idp.SetTokenEndpointMode(t, harness.Mode429, retryAfter*time.Second)
	r := b.api("GET", "/api/x")
	if r.Status != 503 || jsonBody(t, r)["reason"] != "provider_unavailable" {
		t.Fatalf("AVL-1: refresh against a 429: %d %s", r.Status, r.Body)
	}
	if got := r.Header.Get("Retry-After"); got != strconv.Itoa(retryAfter) {
		t.Fatalf("AVL-1: Retry-After = %q, want %d", got, retryAfter)
	}
	asked := s.idp.Stats(t).TokenRequests["refresh_token"]
	if asked == 0 {
		t.Fatal("AVL-1: the refresh never reached the provider")
	}

	// Recovered, but it asked to wait: the gateway does not ask before then.
	s.idp.SetTokenEndpointMode(t, harness.ModeNormal, 0)
	r = b.api("GET", "/api/x")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != 503 || err != nil || n < 1 || n > retryAfter {
		t.Fatalf("AVL-1: a call inside Retry-After: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if got := s.idp.Stats(t).TokenRequests["refresh_token"]; got != asked {
		t.Fatalf("AVL-1: the provider was asked %d more times before its Retry-After passed", got-asked)
	}
	if status, m := b.user(); status != 200 {
		t.Fatalf("AVL-1: a busy provider ended the session: %d %v", status, m)
	}

	time.Sleep(retryAfter*time.Second + 100*time.Millisecond)
	before := len(s.api.all())
	expect(t, b.api("GET", "/api/x"), 200)
	if got := s.idp.Stats(t).TokenRequests["refresh_token"]; got != asked+1 {
		t.Fatalf("AVL-1: %d refreshes after recovery, want 1", got-asked)
	}
	calls := s.api.all()[before:]
	if len(calls) != 1 || calls[0].Get("Authorization") != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatal("AVL-1: the call after recovery did not reach the upstream with the refreshed token")
	}
}
