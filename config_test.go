package gatehouse_test

import (
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestValidateListsEveryProblem(t *testing.T) {
	cfg := gatehouse.Config{
		PublicURL: "http://app.example.com/sub?x=1",
		Provider: gatehouse.ProviderConfig{
			Issuer:            "not a url",
			Scopes:            []string{"profile"},
			AllowedAuthParams: []string{"redirect_uri"},
			AuthParams:        map[string]string{"state": "x"},
			ClockSkew:         time.Hour,
		},
		Session: gatehouse.SessionConfig{Keys: [][]byte{[]byte("short")}, IdleTimeout: time.Hour, AbsoluteTimeout: time.Minute},
		Cookie:  gatehouse.CookieConfig{Name: "session"},
		CSRF:    gatehouse.CSRFConfig{Header: "X CSRF"},
		Routes: []gatehouse.Route{
			{Path: "api", Upstream: "ftp://x"},
			{Path: "/bff/x", Upstream: "http://127.0.0.1:1", Token: "sometimes"},
			{Path: "/a/../b", Upstream: "http://127.0.0.1:1", Methods: []string{"GE T"}, Headers: map[string]string{"Authorization": "x"}},
			{Path: "/c/", Upstream: "http://127.0.0.1:1", Token: gatehouse.TokenClient, Require: []gatehouse.Rule{{Claim: "groups"}}},
			{Path: "/c", Upstream: "http://u:p@127.0.0.1:1"},
		},
		Frontend: gatehouse.FrontendConfig{Dir: "x", Upstream: "y"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("an invalid config validated")
	}
	for _, want := range []string{
		"public_url: must be an origin",
		"provider.issuer:",
		"provider.client_id: is required",
		"provider.client_secret: is required",
		"provider.scopes: must include openid",
		`provider.allowed_auth_params: "redirect_uri" cannot be passed through`,
		`provider.auth_params: "state" is set by Gatehouse`,
		"provider.clock_skew:",
		"session.keys[0]: is 5 bytes",
		"session.absolute_timeout:",
		`cookie.name: "session" lacks the __Host- prefix`,
		"csrf.header:",
		`routes[0].path: "api" must start with /`,
		"routes[0].upstream:",
		"routes[1].path:",
		`routes[1].token: "sometimes"`,
		"routes[2].path:",
		"routes[2].methods:",
		"routes[2].headers:",
		"routes[3].require[0]: needs contains or any_of",
		"routes[3].require: rules on the user's claims",
		`routes[4].path: "/c" repeats routes[3]`,
		"routes[4].upstream:",
		"frontend: set one of dir, upstream",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
	if _, err := gatehouse.New(cfg); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

func TestValidateMinimalAndHTTP(t *testing.T) {
	minimal := gatehouse.Config{PublicURL: "https://app.example.com",
		Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com/", ClientID: "c", ClientSecret: "s"}}
	if err := minimal.Validate(); err != nil {
		t.Fatalf("a minimal config does not validate: %v", err)
	}
	for _, public := range []string{"http://127.0.0.1:9080", "http://localhost:9080", "http://[::1]:9080"} {
		c := minimal
		c.PublicURL = public
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", public, err)
		}
	}
	c := minimal
	c.PublicURL = "http://app.example.com"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("plain http on a public host: %v", err)
	}
}

func TestNewConfigFieldsValidate(t *testing.T) {
	err := gatehouse.Config{PublicURL: "http://127.0.0.1:1",
		Provider:   gatehouse.ProviderConfig{Issuer: "http://127.0.0.1:2", ClientID: "c", ClientSecret: "s"},
		Session:    gatehouse.SessionConfig{BindIPv4Prefix: 33, BindIPv6Prefix: -1},
		RateLimits: gatehouse.RateLimitConfig{Login: gatehouse.RateLimit{PerMinute: -1}, Admin: gatehouse.RateLimit{Burst: -2}},
	}.Validate()
	for _, want := range []string{"session.bind_ipv4_prefix", "session.bind_ipv6_prefix", "rate_limits.login.per_minute", "rate_limits.admin.burst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want a problem with %s", err, want)
		}
	}
}

// TestWebSocketOriginsIsAWeakerOption: another origin allowed to open WebSockets through
// the routes is warned about, like csrf.trusted_origins (issue 12).
func TestWebSocketOriginsIsAWeakerOption(t *testing.T) {
	c := gatehouse.Config{PublicURL: "https://app.example.com",
		Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com/", ClientID: "c", ClientSecret: "s"}}
	for _, w := range c.WeakerOptions() {
		if w == "websocket_origins" {
			t.Fatal("websocket_origins listed while unset")
		}
	}
	c.WebSocketOrigins = []string{"https://partner.example"}
	found := false
	for _, w := range c.WeakerOptions() {
		found = found || w == "websocket_origins"
	}
	if !found {
		t.Fatalf("WeakerOptions = %q, want websocket_origins listed", c.WeakerOptions())
	}
	e := newEnv(t, func(c *gatehouse.Config) { c.WebSocketOrigins = []string{"https://partner.example"} })
	if !strings.Contains(e.logs.String(), `"option":"websocket_origins"`) {
		t.Fatalf("no startup warning for websocket_origins:\n%s", e.logs.String())
	}
}
