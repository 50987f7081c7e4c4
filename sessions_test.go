package gatehouse_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

func TestSessionsAPI(t *testing.T) {
	e := newEnv(t)
	laptop, phone := e.browser(), e.browser()
	laptop.do("GET", "/bff/login", nil) // not logged in yet
	laptop.login()
	phone.login()
	e.idp.Set(func(k *idptest.Knobs) { k.Subject = "bob" })
	bob := e.browser()
	bob.login()

	wantJSONError(t, e.browser().api("GET", "/bff/sessions"), 401, "unauthenticated", "no_session")
	r := laptop.api("GET", "/bff/sessions")
	wantStatus(t, r, 200)
	list := decode(t, r)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("alice has %d sessions listed, want 2", len(list))
	}
	laptopSID := decode(t, laptop.api("GET", "/bff/user"))["sid"].(string)
	phoneSID := decode(t, phone.api("GET", "/bff/user"))["sid"].(string)
	bobSID := decode(t, bob.api("GET", "/bff/user"))["sid"].(string)
	for _, item := range list {
		m := item.(map[string]any)
		if (m["sid"] == laptopSID) != (m["current"] == true) {
			t.Fatalf("current flag wrong: %v", m)
		}
		if m["user_agent"] != "Go-http-client/1.1" || m["ip"] != "127.0.0.1" || m["created_at"] == "" {
			t.Fatalf("session entry incomplete: %v", m)
		}
	}
	if strings.Contains(r.body, "at-") || strings.Contains(r.body, laptop.cookie("__Host-gatehouse").Value) {
		t.Fatal("the session list leaks a token or cookie")
	}

	// Signing out another device needs the CSRF header, and only works on one's own.
	wantJSONError(t, laptop.do("DELETE", "/bff/sessions/"+phoneSID, nil), 403, "csrf_rejected", "missing_header")
	wantJSONError(t, laptop.api("DELETE", "/bff/sessions/"+bobSID), 404, "not_found", "")
	wantJSONError(t, laptop.api("DELETE", "/bff/sessions/garbage"), 404, "not_found", "")
	wantStatus(t, bob.api("GET", "/bff/user"), 200)
	wantStatus(t, laptop.api("DELETE", "/bff/sessions/"+phoneSID), 204)
	wantJSONError(t, phone.api("GET", "/bff/user"), 401, "unauthenticated", "session_revoked")
	wantStatus(t, laptop.api("GET", "/bff/user"), 200)

	// Sign out every other device.
	tablet := e.browser()
	e.idp.Set(func(k *idptest.Knobs) { k.Subject = "" })
	tablet.login()
	r = laptop.api("DELETE", "/bff/sessions?others=true")
	wantStatus(t, r, 200)
	if decode(t, r)["ended"] != float64(1) {
		t.Fatalf("others=true ended %v", decode(t, r)["ended"])
	}
	wantStatus(t, tablet.api("GET", "/bff/user"), 401)
	wantStatus(t, laptop.api("GET", "/bff/user"), 200)
	wantStatus(t, bob.api("GET", "/bff/user"), 200)
}
