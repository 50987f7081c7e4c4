package gatehouse_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestReusedSessionCookieAfterLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	stolen := b.cookie("__Host-gatehouse").Value
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	thief := e.browser()
	r := thief.do("GET", "/bff/user", nil, "Cookie", "__Host-gatehouse="+stolen)
	wantJSONError(t, r, 401, "unauthenticated", "session_revoked")
}

func TestLogoutGetForm(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	sid := decode(t, b.api("GET", "/bff/user"))["sid"].(string)

	for _, bad := range []string{"", "wrong", sid[:21] + "x"} {
		r := b.get("/bff/logout?sid="+url.QueryEscape(bad), "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, 400)
		if !strings.Contains(r.body, "<html") {
			t.Fatalf("a person gets a page, got %q", r.body)
		}
		wantStatus(t, b.api("GET", "/bff/user"), 200)
	}
	r := b.get("/bff/logout?sid="+sid, "Sec-Fetch-Mode", "navigate")
	wantStatus(t, r, http.StatusFound)
	if !strings.HasPrefix(r.Header.Get("Location"), e.idp.Issuer+"/end_session") {
		t.Fatalf("GET logout went to %q", r.Header.Get("Location"))
	}
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "")
}

func TestLogoutWithoutIDTokenHint(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Provider.OmitIDTokenHint = true })
	b := e.browser()
	b.login()
	end, _ := url.Parse(decode(t, b.api("POST", "/bff/logout"))["redirect_url"].(string))
	if end.Query().Has("id_token_hint") || end.Query().Get("client_id") != e.idp.ClientID {
		t.Fatalf("end-session URL = %s", end)
	}
}
