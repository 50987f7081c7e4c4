package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// Three apps on one gatehouse against two oidc-provider instances (each its own issuer
// and keys): shop on 127.0.0.1 (staff provider), partner on localhost (customers) and
// admin on localhost/admin (both, with the chooser). Each app is a client of its own at
// each of its providers, so that each gets its own back-channel logouts.
func TestE2EFrontends(t *testing.T) {
	port := freePort(t)
	loop, local := fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://localhost:%d", port)
	client := func(id, public string) harness.Client {
		c := harness.BFFClient(public)
		c.ClientID = id
		return c
	}
	staff := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{client("shop", loop), client("admin", local+"/admin")}})
	customers := harness.StartProvider(t, harness.ProviderConfig{IssuerPath: "/customers",
		Clients: []harness.Client{client("partner", local), client("admin", local+"/admin")}})
	if staff.Issuer() == customers.Issuer() {
		t.Fatal("the two providers share an issuer")
	}
	api := startUpstream(t)
	provider := func(name, issuer, id string) string {
		return fmt.Sprintf("  - {name: %s, label: \"Sign in with %s\", issuer: %q, client_id: %s, client_secret: s3cret}\n", name, name, issuer, id)
	}
	gw := startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
session: {store: memory}
admin: {listen: "{{ADMIN}}", token: e2e-admin-token}
providers:
%s%s%s%sfrontends:
  - name: shop
    public_url: %s
    providers: [staff]
    routes: [{path: /api/, upstream: %q}]
  - name: partner
    public_url: %s
    providers: [customers]
    cookie: {name: __Host-partner}
    routes: [{path: /api/, upstream: %q}]
  - name: admin
    public_url: %s/admin
    providers: [admin-staff, admin-customers]
    login: {chooser: true}
    cookie: {name: __Host-admin}
    session: {idle_timeout: 15m}
    routes: [{path: /admin/api/, upstream: %q}]
`, port, provider("staff", staff.Issuer(), "shop"), provider("customers", customers.Issuer(), "partner"),
		provider("admin-staff", staff.Issuer(), "admin"), provider("admin-customers", customers.Issuer(), "admin"),
		loop, api.URL, local, api.URL, local, api.URL))

	// Each app logs in through its own provider.
	shop := newBrowser(t, loop, local)
	expect(t, shop.login("alice", "wonderland", "/"), 200)
	if status, m := shop.user(); status != 200 || m["claims"].(map[string]any)["sub"] != "alice" || m["provider"] != "staff" {
		t.Fatalf("shop /bff/user = %d %v", status, m)
	}
	partner := newBrowser(t, local, loop)
	expect(t, partner.login("bob", "builder", "/"), 200)
	if status, m := partner.user(); status != 200 || m["provider"] != "customers" {
		t.Fatalf("partner /bff/user = %d %v", status, m)
	}
	// admin shows the chooser, and logs in where the user chose.
	admin := newBrowser(t, local, loop)
	page := admin.get(local+"/admin/bff/login?returnUrl=/admin/", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
	if page.Status != 200 || !strings.Contains(page.Body, "Sign in with admin-staff") || !strings.Contains(page.Body, "Sign in with admin-customers") {
		t.Fatalf("admin's chooser: %d %s", page.Status, page.Body)
	}
	expect(t, loginAt(t, admin, local+"/admin/bff/login?provider=admin-customers&returnUrl=/admin/", "alice", "wonderland"), 200)
	r := admin.api("GET", local+"/admin/bff/user")
	expect(t, r, 200)
	if m := jsonBody(t, r); m["provider"] != "admin-customers" || !strings.HasPrefix(m["logout_url"].(string), "/admin/bff/logout") {
		t.Fatalf("admin /bff/user = %v", m)
	}

	// Routes per app: each proxies with its own session's token.
	for _, c := range []struct {
		b   *browser
		url string
	}{{shop, loop + "/api/a"}, {partner, local + "/api/b"}, {admin, local + "/admin/api/c"}} {
		expect(t, c.b.api("GET", c.url), 200)
		if h := api.last(t); !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
			t.Fatalf("%s: upstream got Authorization %q", c.url, h.Get("Authorization"))
		}
	}
	// partner's /api/ is not shop's, and admin's session does not reach it.
	expect(t, admin.api("GET", local+"/api/b"), 401)

	// Cookies do not cross apps, whatever name they are sent under.
	cookie := func(b *browser, public, name string) string {
		u, _ := url.Parse(public)
		u.Scheme = "https"
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == name {
				return c.Value
			}
		}
		t.Fatalf("no %s cookie for %s", name, public)
		return ""
	}
	shopCookie, partnerCookie := cookie(shop, loop, "__Host-gatehouse"), cookie(partner, local, "__Host-partner")
	thief := newBrowser(t, local, loop)
	for _, c := range []struct{ url, cookie string }{
		{local + "/bff/user", "__Host-partner=" + shopCookie},
		{local + "/admin/bff/user", "__Host-admin=" + shopCookie},
		{loop + "/bff/user", "__Host-gatehouse=" + partnerCookie},
		{local + "/admin/bff/user", "__Host-admin=" + partnerCookie},
	} {
		r := thief.do("GET", c.url, nil, "Cookie", c.cookie, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin")
		expect(t, r, 401)
	}

	// A back-channel logout from customers for bob ends partner's session only.
	if sessions, backchannel := customers.EndSessions(t, "bob"); sessions == 0 || backchannel == 0 {
		t.Fatalf("customers ended %d session(s), %d back-channel call(s)", sessions, backchannel)
	}
	waitFor(t, 5*time.Second, "partner's session to end", func() bool { s, _ := partner.user(); return s == 401 })
	if s, _ := shop.user(); s != 200 {
		t.Fatal("a back-channel logout of customers ended shop's session")
	}
	expect(t, admin.api("GET", local+"/admin/bff/user"), 200)

	// A logout at admin ends admin's session, not shop's alice.
	r = admin.api("POST", local+"/admin/bff/logout?returnUrl=/admin/")
	expect(t, r, 200)
	if end := jsonBody(t, r)["redirect_url"].(string); !strings.HasPrefix(end, customers.Issuer()) {
		t.Fatalf("admin's logout goes to %s, not its session's provider", end)
	}
	expect(t, admin.api("GET", local+"/admin/bff/user"), 401)
	if s, _ := shop.user(); s != 200 {
		t.Fatal("admin's logout ended shop's session")
	}

	// The admin API lists sessions of every app with their app and provider.
	req, _ := http.NewRequest("GET", gw.AdminURL+"/admin/sessions?sub=alice", nil)
	req.Header.Set("Authorization", "Bearer e2e-admin-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Sessions []map[string]any `json:"sessions"`
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 1 || list.Sessions[0]["frontend"] != "shop" || list.Sessions[0]["provider"] != nil {
		t.Fatalf("admin sessions of alice: %v", list.Sessions)
	}

	// prompt=none with no session at the provider comes back to the app with the error.
	fresh := newBrowser(t, local, loop)
	r = fresh.get(local+"/bff/login?prompt=none&returnUrl=/x", "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusFound && r.Status != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "/bff/callback") {
		t.Fatalf("prompt=none: %d %s", r.Status, r.Header.Get("Location"))
	}
	r = fresh.get(r.Header.Get("Location"), "Sec-Fetch-Mode", "navigate")
	if r.URL.Path != "/x" || r.URL.Query().Get("error") != "login_required" {
		t.Fatalf("prompt=none ended at %s", r.URL)
	}
}
