package gatehouse_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session"
)

func TestReloadRoutesAndLimits(t *testing.T) {
	up := newUpstream(t)
	var cfg gatehouse.Config
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL}}
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 1, Burst: 1}
		cfg = *c
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	wantStatus(t, b.api("GET", "/v2/x"), 404)

	next := cfg
	next.Routes = []gatehouse.Route{{Path: "/v2/", Upstream: up.srv.URL, StripPrefix: true}}
	next.RateLimits.Login = gatehouse.RateLimit{PerMinute: 600, Burst: 100}
	next.Cookie.Name = "__Host-other"
	restart, err := e.gw.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(restart) != "[cookie.name]" {
		t.Fatalf("needs restart = %v, want [cookie.name]", restart)
	}
	// The session survived; the new route works, the old one is gone.
	wantStatus(t, b.api("GET", "/v2/x"), 200)
	if got := up.last(t).Path; got != "/x" {
		t.Fatalf("upstream path = %q", got)
	}
	wantStatus(t, b.api("GET", "/api/x"), 404)
	for i := 0; i < 5; i++ {
		wantStatus(t, e.browser().get("/bff/login"), 302)
	}

	// An invalid configuration changes nothing.
	bad := next
	bad.Routes = []gatehouse.Route{{Path: "nope", Upstream: "ftp://x"}}
	if _, err := e.gw.Reload(bad); err == nil || !strings.Contains(err.Error(), "routes[0].path") {
		t.Fatalf("Reload(bad) = %v", err)
	}
	wantStatus(t, b.api("GET", "/v2/x"), 200)
}

// TestReloadAppliesWhatIsReadWhileServing: the settings read at request time that used
// to be ignored by Reload (websocket_origins, session.flow_timeout,
// insecure_diagnostics) take effect at once, and nothing asks for a restart.
func TestReloadAppliesWhatIsReadWhileServing(t *testing.T) {
	up := newUpstream(t)
	var cfg gatehouse.Config
	e := routesEnv(t, up, func(c *gatehouse.Config) { cfg = *c })
	b := e.browser()
	b.login()
	cookie := b.cookie("__Host-gatehouse").Value

	const other = "https://partner.example"
	if got := wsEcho(t, e, "/api/ws", other, cookie); !strings.HasPrefix(got, "403") {
		t.Fatalf("WebSocket from %s before the reload: %q, want 403", other, got)
	}
	wantStatus(t, b.api("GET", "/bff/diagnostics"), 404)
	flowMaxAge := func() int {
		r := e.browser().get("/bff/login")
		wantStatus(t, r, 302)
		for _, c := range r.Cookies() {
			if strings.HasPrefix(c.Name, "__Host-gatehouse-flow-") {
				return c.MaxAge
			}
		}
		t.Fatal("no flow cookie")
		return 0
	}
	if got := flowMaxAge(); got != 600 {
		t.Fatalf("flow cookie Max-Age = %d, want the default 600", got)
	}

	next := cfg
	next.WebSocketOrigins = []string{other}
	next.Session.FlowTimeout = 2 * time.Minute
	next.InsecureDiagnostics = true
	restart, err := e.gw.Reload(next)
	if err != nil || len(restart) != 0 {
		t.Fatalf("Reload = %v, %v; want nothing needing a restart", restart, err)
	}
	if got := wsEcho(t, e, "/api/ws", other, cookie); got != "echo:hello\n" {
		t.Fatalf("WebSocket from %s after the reload: %q", other, got)
	}
	wantStatus(t, b.api("GET", "/bff/diagnostics"), 200)
	if got := flowMaxAge(); got != 120 {
		t.Fatalf("flow cookie Max-Age after the reload = %d, want 120", got)
	}
	if !strings.Contains(e.logs.String(), `"option":"insecure_diagnostics"`) {
		t.Fatal("turning insecure_diagnostics on by a reload logged no warning")
	}
}

// TestReloadAppliesServerKeys: session.keys and session.accept_keys change live, so a
// rotation needs no restart; a key removed by a reload no longer opens anything.
func TestReloadAppliesServerKeys(t *testing.T) {
	k1, k2 := session.NewRandomKey(), session.NewRandomKey()
	var cfg gatehouse.Config
	e := newEnv(t, func(c *gatehouse.Config) { c.Session.Keys = [][]byte{k1}; cfg = *c })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/bff/user"), 200)

	for _, step := range []struct{ keys, accept [][]byte }{
		{[][]byte{k1}, [][]byte{k2}}, // accept the new key
		{[][]byte{k2, k1}, nil},      // make it primary
	} {
		next := cfg
		next.Session.Keys, next.Session.AcceptKeys = step.keys, step.accept
		restart, err := e.gw.Reload(next)
		if err != nil || len(restart) != 0 {
			t.Fatalf("Reload = %v, %v; want the keys applied live", restart, err)
		}
		wantStatus(t, b.api("GET", "/bff/user"), 200)
	}
	if !strings.Contains(e.logs.String(), "server key ring reloaded") {
		t.Fatal("no log line for the reloaded key ring")
	}
	// The ring really changed: without k1, the record sealed with it does not open.
	next := cfg
	next.Session.Keys = [][]byte{k2}
	if _, err := e.gw.Reload(next); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.api("GET", "/bff/user"), 401)

	// A key in both lists is a configuration error, and changes nothing.
	next.Session.AcceptKeys = [][]byte{k2}
	if _, err := e.gw.Reload(next); err == nil || !strings.Contains(err.Error(), "session.accept_keys[0]: repeats session.keys[0]") {
		t.Fatalf("Reload with a repeated key = %v", err)
	}
}

// TestMoveToExplicitKeysKeepsSessions: a deployment that ran on the derived key moves
// to explicit keys with no one logged out, by listing the derived key behind the new one.
func TestMoveToExplicitKeysKeepsSessions(t *testing.T) {
	var cfg gatehouse.Config
	e := newEnv(t, func(c *gatehouse.Config) { cfg = *c })
	b := e.browser()
	b.login()
	newKey := session.NewRandomKey()
	for _, step := range []struct{ keys, accept [][]byte }{
		{nil, [][]byte{newKey}},                         // the derived key seals, the new one is accepted
		{[][]byte{newKey, cfg.DerivedServerKey()}, nil}, // the new key seals, the derived one opens
	} {
		next := cfg
		next.Session.Keys, next.Session.AcceptKeys = step.keys, step.accept
		if restart, err := e.gw.Reload(next); err != nil || len(restart) != 0 {
			t.Fatalf("Reload = %v, %v", restart, err)
		}
		wantStatus(t, b.api("GET", "/bff/user"), 200)
	}
}

// TestWarnsWithoutServerKeys: without session.keys the server key is derived from the
// client secret; New says so at startup.
func TestWarnsWithoutServerKeys(t *testing.T) {
	const warning = "session.keys is not set"
	if logs := newEnv(t).logs.String(); !strings.Contains(logs, warning) || !strings.Contains(logs, `"level":"WARN"`) {
		t.Fatalf("no warning without session.keys:\n%s", logs)
	}
	if logs := newEnv(t, func(c *gatehouse.Config) { c.Session.Keys = [][]byte{session.NewRandomKey()} }).logs.String(); strings.Contains(logs, warning) {
		t.Fatal("warned although session.keys is set")
	}
}
