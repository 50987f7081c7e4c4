package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

func TestE2EBoltSurvivesKill9(t *testing.T) {
	db := filepath.Join(t.TempDir(), "sessions.db")
	s := startStack(t, stackOpts{store: "bolt://" + db, accessTTL: 30 * time.Second})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.api("GET", "/api/before"), 200)

	s.gw.Kill9()
	s.gw.Restart()

	if status, u := b.user(); status != 200 || u["claims"].(map[string]any)["sub"] != "alice" {
		t.Fatalf("after kill -9 and restart /bff/user = %d %v", status, u)
	}
	expect(t, b.api("GET", "/api/after"), 200)
	if s.api.last(t).Get("Authorization") != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatal("after the restart the upstream did not get the session's token")
	}

	// The file holds ciphertext only.
	raw, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	assertNoPlaintext(t, s, string(raw), "the bolt file")
}

// assertNoPlaintext checks a store dump for every token the provider issued and for the
// users' email addresses.
func assertNoPlaintext(t *testing.T, s *stack, dump, what string) {
	t.Helper()
	secrets := s.idp.IssuedTokens(t)
	if len(secrets) == 0 || len(dump) == 0 {
		t.Fatalf("nothing to compare: %d secrets, %d bytes of %s", len(secrets), len(dump), what)
	}
	for _, sec := range secrets {
		if strings.Contains(dump, sec.Value) {
			t.Errorf("%s contains a %s in clear", what, sec.Kind)
		}
	}
	for _, email := range []string{"alice@example.com", "bob@example.com", "wonderland"} {
		if strings.Contains(dump, email) {
			t.Errorf("%s contains %q in clear", what, email)
		}
	}
}

// endSessionURL reads the provider's end_session_endpoint from discovery.
func endSessionURL(t *testing.T, p *harness.Provider) string {
	t.Helper()
	resp, err := http.Get(p.DiscoveryURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	if meta.EndSession == "" {
		t.Fatal("the provider advertises no end_session_endpoint")
	}
	return meta.EndSession
}

func TestE2EBackchannelLogoutFromProvider(t *testing.T) {
	s := startStack(t, stackOpts{store: "bolt://" + filepath.Join(t.TempDir(), "s.db")})
	laptop, phone, bob := newBrowser(t, s.gw.URL), newBrowser(t, s.gw.URL), newBrowser(t, s.gw.URL)
	expect(t, laptop.login("alice", "wonderland", "/"), 200)
	expect(t, phone.login("alice", "wonderland", "/"), 200)
	expect(t, bob.login("bob", "builder", "/"), 200)

	// Alice signs out at the provider itself, in her laptop's browser: the provider POSTs a
	// logout token to the gateway for that provider session.
	s.idp.Reset(t)
	resp := harness.ConfirmLogout(t, laptop.c, endSessionURL(t, s.idp))
	resp.Body.Close()
	calls := s.idp.Stats(t).Backchannel
	if len(calls) != 1 || calls[0].Status != 200 || calls[0].Sub != "alice" {
		t.Fatalf("back-channel logout calls: %+v", calls)
	}
	if status, m := laptop.user(); status != 401 || m["reason"] != "session_revoked" {
		t.Fatalf("laptop after back-channel logout: %d %v", status, m)
	}
	if status, _ := phone.user(); status != 200 {
		t.Fatal("the phone's session (another provider session) ended too")
	}
	if status, _ := bob.user(); status != 200 {
		t.Fatal("bob's session ended")
	}

	// An admin ends all of alice's provider sessions: every remaining one goes.
	if _, n := s.idp.EndSessions(t, "alice"); n == 0 {
		t.Fatal("the provider sent no back-channel logout")
	}
	if status, _ := phone.user(); status != 401 {
		t.Fatal("the phone's session survived its provider session")
	}
	if status, _ := bob.user(); status != 200 {
		t.Fatal("bob's session ended")
	}

	// Forged, replayed or mis-addressed tokens are refused and delete nothing.
	forms := map[string]string{
		"not a JWT":             "logout_token=abc",
		"empty":                 "logout_token=",
		"a replayed real token": "",
	}
	for _, tok := range s.idp.IssuedTokens(t) {
		if tok.Kind == "logout_token" {
			forms["a replayed real token"] = "logout_token=" + tok.Value
		}
	}
	for name, body := range forms {
		r := newBrowser(t, s.gw.URL).do("POST", "/bff/backchannel", strings.NewReader(body), "Content-Type", "application/x-www-form-urlencoded")
		if r.Status != 400 || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", name, r.Status, r.Header)
		}
	}
	if status, _ := bob.user(); status != 200 {
		t.Fatal("a refused logout token ended a session")
	}
}

func TestE2ESessionManagement(t *testing.T) {
	s := startStack(t, stackOpts{})
	laptop, phone := newBrowser(t, s.gw.URL), newBrowser(t, s.gw.URL)
	expect(t, laptop.login("alice", "wonderland", "/"), 200)
	expect(t, phone.login("alice", "wonderland", "/"), 200)
	r := laptop.api("GET", "/bff/sessions")
	expect(t, r, 200)
	list := jsonBody(t, r)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("%d sessions listed", len(list))
	}
	expect(t, laptop.api("DELETE", "/bff/sessions?others=true"), 200)
	if status, m := phone.user(); status != 401 || m["reason"] != "session_revoked" {
		t.Fatalf("phone after 'sign out other devices': %d %v", status, m)
	}

	// The admin API on the loopback admin listener.
	admin := func(method, path, token string) *response {
		b := newBrowser(t, s.gw.AdminURL)
		return b.do(method, s.gw.AdminURL+path, nil, "Authorization", "Bearer "+token)
	}
	expect(t, admin("GET", "/admin/sessions?sub=alice", "wrong"), 401)
	r = admin("GET", "/admin/sessions?sub=alice", "e2e-admin-token")
	expect(t, r, 200)
	if n := len(jsonBody(t, r)["sessions"].([]any)); n != 1 {
		t.Fatalf("admin lists %d sessions", n)
	}
	expect(t, admin("DELETE", "/admin/sessions?sub=alice", "e2e-admin-token"), 200)
	if status, _ := laptop.user(); status != 401 {
		t.Fatal("an admin revoke left the session alive")
	}
	m := newBrowser(t, s.gw.AdminURL).get(s.gw.AdminURL + "/metrics")
	if m.Status != 200 || !strings.Contains(m.Body, "gatehouse_sessions_total") {
		t.Fatalf("/metrics: %d", m.Status)
	}
}
