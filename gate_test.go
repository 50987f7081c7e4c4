package gatehouse_test

import "testing"

func TestUnreadableCookieIsClearedNotFatal(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/bff/user", nil, "Cookie", "__Host-gatehouse=not-a-session")
	wantJSONError(t, r, 401, "unauthenticated", "no_session")
	cleared := false
	for _, c := range r.Cookies() {
		cleared = cleared || (c.Name == "__Host-gatehouse" && c.MaxAge < 0)
	}
	if !cleared {
		t.Fatal("an unreadable session cookie was not cleared")
	}
}
