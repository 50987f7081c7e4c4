package gatehouse_test

import (
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// The provider rotates its signing key under a running gateway (a new kid published and
// used, then the old key removed): sessions from before the rotation keep refreshing
// (the refreshed ID token is signed with the new key), new logins work, and back-channel
// logouts signed with the new key end their sessions, all the way through.
func TestProviderKeyRotationKeepsSessions(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) {
		k.AccessTokenTTL = time.Minute
		k.IDTokenOnRefresh = true
		// The fake signs on the real clock; the gateway's clock moves ahead of it.
		k.IDTokenMutate = func(c map[string]any) { c["exp"] = e.clock.Now().Add(time.Hour).Unix() }
	})
	expLater := func(c map[string]any) { c["exp"] = e.clock.Now().Add(time.Minute).Unix() }
	before := e.browser()
	before.login() // provider-session-1
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "provider-session-2" })
	survivor := e.browser()
	survivor.login()
	wantStatus(t, before.api("GET", "/api/a"), 200)

	e.clock.Advance(2 * time.Second)
	e.idp.RotateKey()
	e.clock.Advance(time.Minute) // the access tokens expire: the next calls refresh
	refreshes := e.idp.Count("refresh_token")
	wantStatus(t, before.api("GET", "/api/a"), 200)
	wantStatus(t, survivor.api("GET", "/api/a"), 200)
	if n := e.idp.Count("refresh_token") - refreshes; n != 2 {
		t.Fatalf("%d refreshes after the rotation, want 2", n)
	}
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "provider-session-3" })
	after := e.browser()
	after.login()
	wantStatus(t, e.backchannel(e.idp.LogoutToken("", "provider-session-1", "logout+jwt", expLater)), 200)
	if before.api("GET", "/bff/user").StatusCode != 401 {
		t.Fatal("a back-channel logout signed with the new key did not end the session")
	}

	// The old key goes; an hour later (the key cache's age) everything still works.
	e.idp.DropRetiredKeys()
	for range 4 {
		e.clock.Advance(16 * time.Minute) // within the idle timeout
		wantStatus(t, survivor.api("GET", "/api/a"), 200)
		wantStatus(t, after.api("GET", "/api/a"), 200)
	}
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "provider-session-4" })
	e.browser().login()
	wantStatus(t, e.backchannel(e.idp.LogoutToken("", "provider-session-2", "logout+jwt", expLater)), 200)
	if survivor.api("GET", "/bff/user").StatusCode != 401 {
		t.Fatal("a back-channel logout after the old key was removed did not end the session")
	}
	if after.api("GET", "/bff/user").StatusCode != 200 {
		t.Fatal("the session started after the rotation ended")
	}
}
