package gatehouse_test

import (
	"fmt"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
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
	if fmt.Sprint(restart) != "[cookie]" {
		t.Fatalf("needs restart = %v, want [cookie]", restart)
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
