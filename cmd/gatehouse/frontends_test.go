package main

import (
	"strings"
	"testing"
	"time"
)

const frontendsFile = `
listen: 127.0.0.1:0
providers:
  - name: staff
    label: Staff
    issuer: http://127.0.0.1:9001
    client_id: bff
    client_secret: ${STAFF_SECRET}
  - name: customers
    issuer: http://127.0.0.1:9002
    client_id: shop
    client_secret: s3cret
session:
  idle_timeout: 1h
  bind_user_agent: true
cookie: { same_site: lax }
frontends:
  - name: shop
    public_url: http://127.0.0.1:9080
    providers: [customers]
    routes: [ { path: /api/, upstream: "http://127.0.0.1:9003" } ]
  - name: admin
    public_url: http://localhost:9080/admin
    providers: [staff, customers]
    login: { chooser: true }
    cookie: { name: __Host-admin }
    session: { idle_timeout: 15m }
    routes: [ { path: /admin/api/, upstream: "http://127.0.0.1:9003" } ]
`

// Each app is the top level with its own settings laid over it: mappings merge key by
// key, and its providers are the ones it names.
func TestFrontendsMergeOverTheTopLevel(t *testing.T) {
	t.Setenv("STAFF_SECRET", "from-env")
	l, err := loadConfig(writeFile(t, t.TempDir(), "gh.yaml", frontendsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.apps) != 2 {
		t.Fatalf("%d apps", len(l.apps))
	}
	shop, admin := l.apps[0], l.apps[1]
	if shop.Name != "shop" || shop.Provider.Name != "customers" || shop.Provider.ClientID != "shop" || len(shop.Providers) != 0 {
		t.Errorf("shop's provider: %+v %+v", shop.Provider, shop.Providers)
	}
	if shop.Session.IdleTimeout != time.Hour || !shop.Session.BindUserAgent || shop.Cookie.Name != "" || shop.Login.Chooser {
		t.Errorf("shop inherits: %+v %+v", shop.Session, shop.Cookie)
	}
	if len(admin.Providers) != 2 || admin.Providers[0].Name != "staff" || admin.Providers[0].ClientSecret != "from-env" ||
		admin.Providers[0].Label != "Staff" || admin.Providers[1].Name != "customers" {
		t.Errorf("admin's providers: %+v", admin.Providers)
	}
	// session: merged, not replaced: its own idle_timeout, the shared bind_user_agent.
	if admin.Session.IdleTimeout != 15*time.Minute || !admin.Session.BindUserAgent || admin.Cookie.Name != "__Host-admin" ||
		!admin.Login.Chooser || len(admin.Routes) != 1 || admin.Routes[0].Path != "/admin/api/" {
		t.Errorf("admin: %+v %+v %+v", admin.Session, admin.Cookie, admin.Routes)
	}
	code, out, _ := runCmd(t, "check", "--config", writeFile(t, t.TempDir(), "gh.yaml", frontendsFile))
	if code != 0 || !strings.Contains(out, "2 frontends") || !strings.Contains(out, "frontend admin: http://localhost:9080/admin") ||
		!strings.Contains(out, "a frontend removed from this file") {
		t.Fatalf("check = %d:\n%s", code, out)
	}
}

// Every problem at once: an app's own by its field in frontends, a shared provider's
// once at its own field, conflicts between apps, and nothing that follows from another.
func TestFrontendsProblems(t *testing.T) {
	bad := `
providers:
  - name: staff
    issuer: http://127.0.0.1:9001
    client_id: bff
  - name: staff
    issuer: http://127.0.0.1:9002
    client_id: bff
    client_secret: s
default_frontend: nobody
frontends:
  - name: shop
    public_url: http://127.0.0.1:9080
    providers: [customers]
    listen: 0.0.0.0:80
  - name: admin
    public_url: http://127.0.0.1:9080/admin
    routes: [ { path: /api/, upstream: "http://127.0.0.1:9003" } ]
  - name: shop
    public_url: http://127.0.0.1:9080
`
	_, err := loadConfig(writeFile(t, t.TempDir(), "bad.yaml", bad))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"frontends[0].listen: unknown field",
		`providers[1].name: "staff" names another provider too`,
		`frontends[0].providers[0]: "customers" is none of the providers' names`,
		"providers[0].client_secret: is required",
		`frontends[1].routes[0].path: "/api/" is not under public_url's path /admin`,
		`frontends[2].name: "shop" names frontends[0] too`,
		`frontends[2].public_url: "http://127.0.0.1:9080" is the public URL of frontends[0] too`,
		`default_frontend: "nobody" is none of the frontends' names`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "client_secret: is required") != 1 || strings.Contains(msg, "frontends[0].provider.") {
		t.Errorf("a problem reported twice, or one that follows from another:\n%s", msg)
	}
}
