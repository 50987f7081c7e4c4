package gatehouse_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// TestCompatDuendeUser checks compat: duende's /bff/user field by field against Duende.BFF's
// user endpoint: a JSON array of {type, value}, string claim values (one entry per array
// element, JSON text for objects, numbers and booleans), sub and the provider's sid, then
// bff:logout_url (which logs out) and bff:session_expires_in in whole seconds, sliding.
func TestCompatDuendeUser(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) {
		k.Claims = map[string]any{"name": "Alice Smith", "groups": []string{"staff", "admins"},
			"address": map[string]any{"country": "NL"}, "level": 3}
	}, func(c *gatehouse.Config) {
		c.Compat = gatehouse.CompatDuende
		c.Session.IdleTimeout = 20 * time.Minute
	})
	b := e.browser()
	wantStatus(t, b.api("GET", "/bff/user"), http.StatusUnauthorized) // anonymous: 401, as Duende's default
	b.login()
	e.clock.Advance(30 * time.Second)
	r := b.api("GET", "/bff/user")
	wantStatus(t, r, http.StatusOK)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("not an array of claims: %v: %s", err, r.body)
	}
	var logoutURL string
	for _, c := range got {
		if len(c) != 2 {
			t.Errorf("claim %v has other fields than type and value", c)
		}
		if c["type"] == "bff:logout_url" {
			logoutURL, _ = c["value"].(string)
		}
	}
	sid := strings.TrimPrefix(logoutURL, "/bff/logout?sid=")
	if sid == logoutURL || sid == "" {
		t.Fatalf("bff:logout_url = %q", logoutURL)
	}
	sidValue, _ := url.QueryUnescape(sid)
	// The session's idle expiry (20 minutes from its last recorded use): a number, not a
	// string, as Duende sends it.
	last := got[len(got)-1]
	if n, ok := last["value"].(float64); last["type"] != "bff:session_expires_in" || !ok || n < 20*60-60 || n > 20*60 {
		t.Errorf("last claim %v, want bff:session_expires_in about 1200", last)
	}
	want := []map[string]any{
		{"type": "sub", "value": "alice"},
		{"type": "sid", "value": "provider-session-1"},
		{"type": "address", "value": `{"country":"NL"}`},
		{"type": "auth_time", "value": fmt.Sprint(e.clock.Now().Add(-30 * time.Second).Unix())},
		{"type": "email", "value": "alice@example.com"},
		{"type": "email_verified", "value": "true"},
		{"type": "groups", "value": "staff"},
		{"type": "groups", "value": "admins"},
		{"type": "level", "value": "3"},
		{"type": "name", "value": "Alice Smith"},
		{"type": "bff:logout_url", "value": "/bff/logout?sid=" + url.QueryEscape(sidValue)},
		last,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("/bff/user =\n%s\nwant\n%v", r.body, want)
	}
	for _, c := range got {
		if s, _ := c["value"].(string); strings.HasPrefix(s, "ey") {
			t.Errorf("a token in the claims: %v", c)
		}
	}
	// The SPA navigates to bff:logout_url to sign out (Duende's way).
	lo := b.get(logoutURL, "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate")
	if lo.StatusCode >= 400 {
		t.Fatalf("GET %s = %d %s", logoutURL, lo.StatusCode, lo.body)
	}
	wantStatus(t, b.api("GET", "/bff/user"), http.StatusUnauthorized)
}

// TestCompatValidated: an unknown compat value is a configuration error naming the field.
func TestCompatValidated(t *testing.T) {
	_, err := gatehouse.New(gatehouse.Config{PublicURL: "https://app.example", Compat: "auth0",
		Provider: gatehouse.ProviderConfig{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s"}})
	if err == nil || !strings.Contains(err.Error(), "compat") || !strings.Contains(err.Error(), "duende") {
		t.Fatalf("err = %v", err)
	}
}
