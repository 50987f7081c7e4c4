package gatehouse_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// multiEnv is three apps on one loopback listener: shop (127.0.0.1, provider staff),
// admin (localhost/admin, providers staff and customers, with the chooser) and partner
// (localhost, provider customers), in front of two fake providers.
type multiEnv struct {
	t                *testing.T
	staff, customers *idptest.Provider
	multi            *gatehouse.Multi
	port             string
	logs             *testutil.SyncBuffer
	upstreamAuth     chan string
	cfg              gatehouse.MultiConfig
}

func newMultiEnv(t *testing.T, mutate ...func(*gatehouse.MultiConfig)) *multiEnv {
	t.Helper()
	e := &multiEnv{t: t, staff: idptest.New(t), customers: idptest.New(t), logs: &testutil.SyncBuffer{}, upstreamAuth: make(chan string, 16)}
	e.staff.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "alice", "staff-sid" })
	e.customers.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "bob", "customers-sid" })
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstreamAuth <- r.Header.Get("Authorization")
		io.WriteString(w, "api "+r.URL.Path)
	}))
	t.Cleanup(api.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, e.port, _ = net.SplitHostPort(ln.Addr().String())
	prov := func(name string, p *idptest.Provider) gatehouse.ProviderConfig {
		return gatehouse.ProviderConfig{Name: name, Label: "Sign in as " + name, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret}
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	audit := slog.New(slog.NewJSONHandler(io.Discard, nil))
	cfg := gatehouse.MultiConfig{Frontends: []gatehouse.Config{
		{Name: "shop", PublicURL: "http://127.0.0.1:" + e.port, Provider: prov("staff", e.staff),
			Routes: []gatehouse.Route{{Path: "/api/", Upstream: api.URL}}, Logger: logger, AuditLogger: audit},
		{Name: "admin", PublicURL: "http://localhost:" + e.port + "/admin",
			Providers: []gatehouse.ProviderConfig{prov("staff", e.staff), prov("customers", e.customers)},
			Login:     gatehouse.LoginConfig{Chooser: true}, Cookie: gatehouse.CookieConfig{Name: "__Host-admin"},
			Routes: []gatehouse.Route{{Path: "/admin/api/", Upstream: api.URL}}, Logger: logger, AuditLogger: audit},
		{Name: "partner", PublicURL: "http://localhost:" + e.port, Provider: prov("customers", e.customers),
			Cookie: gatehouse.CookieConfig{Name: "__Host-partner"},
			Routes: []gatehouse.Route{{Path: "/api/", Upstream: api.URL}}, Logger: logger, AuditLogger: audit},
	}}
	for _, m := range mutate {
		m(&cfg)
	}
	e.cfg = cfg
	e.multi, err = gatehouse.NewMulti(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: e.multi}}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		e.multi.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for e.multi.Ready(ctx) != nil && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

// multiBrowser keeps cookies per host; localhost is dialled at 127.0.0.1.
type multiBrowser struct {
	e *multiEnv
	c *http.Client
}

func (e *multiEnv) browser() *multiBrowser {
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, _ := net.SplitHostPort(addr); host == "localhost" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return dialer.DialContext(ctx, network, addr)
	}}
	return &multiBrowser{e: e, c: &http.Client{Transport: tr, Jar: testutil.NewLoopbackJar(), Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *multiBrowser) do(method, target string, headers ...string) *resp {
	b.e.t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	r, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer r.Body.Close()
	data, _ := io.ReadAll(r.Body)
	return &resp{Response: r, body: string(data)}
}

func (b *multiBrowser) api(target string, headers ...string) *resp {
	return b.do("GET", target, append([]string{"X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors"}, headers...)...)
}

// login starts at loginURL and follows the provider back; it returns the callback's URL
// before visiting it.
func (b *multiBrowser) startLogin(loginURL string) string {
	b.e.t.Helper()
	r := b.do("GET", loginURL)
	if r.StatusCode != http.StatusFound {
		b.e.t.Fatalf("%s = %d %s", loginURL, r.StatusCode, r.body)
	}
	r = b.do("GET", r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound {
		b.e.t.Fatalf("provider authorize = %d %s", r.StatusCode, r.body)
	}
	return r.Header.Get("Location")
}

func (b *multiBrowser) login(loginURL string) {
	b.e.t.Helper()
	if r := b.do("GET", b.startLogin(loginURL), "Sec-Fetch-Mode", "navigate"); r.StatusCode != http.StatusOK {
		b.e.t.Fatalf("callback = %d %s", r.StatusCode, r.body)
	}
}

func (b *multiBrowser) cookie(host, name string) string {
	for _, c := range b.c.Jar.Cookies(&url.URL{Scheme: "https", Host: host}) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func TestMultiSelectsTheFrontend(t *testing.T) {
	e := newMultiEnv(t)
	b := e.browser()
	local, loop := "http://localhost:"+e.port, "http://127.0.0.1:"+e.port
	for _, c := range []struct {
		url, host, loginURL string
	}{
		{loop + "/bff/user", "", "/bff/login"},                    // shop, by host
		{local + "/admin/bff/user", "", "/admin/bff/login"},       // admin, by host and path
		{local + "/bff/user", "", "/bff/login"},                   // partner: the same host, no prefix
		{local + "/admin/api/x", "", "/admin/bff/login"},          // admin's route
		{loop + "/bff/user", "LOCALHOST:" + e.port, "/bff/login"}, // hosts compare case-insensitively
	} {
		var h []string
		if c.host != "" {
			h = []string{"Host", c.host}
		}
		r := b.api(c.url, h...)
		wantStatus(t, r, http.StatusUnauthorized)
		if m := decode(t, r); m["login_url"] != c.loginURL {
			t.Errorf("%s: login_url %v, want %s", c.url, m["login_url"], c.loginURL)
		}
	}
	// Not admin's path (a prefix of a name is not a path prefix), and admin's path on
	// another host: partner's and shop's, where nothing is served there.
	for _, u := range []string{local + "/administrator/bff/user", loop + "/admin/bff/user"} {
		r := b.api(u)
		wantStatus(t, r, http.StatusNotFound)
		if m := decode(t, r); m["error"] != "not_found" || m["reason"] != nil {
			t.Errorf("%s = %v, want an app's not_found", u, m)
		}
	}
	// One admin listener for every app: ready when each is.
	rec := httptest.NewRecorder()
	e.multi.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ready":true`) {
		t.Fatalf("/readyz = %d %s", rec.Code, rec.Body)
	}
	r := b.api(loop+"/bff/user", "Host", "elsewhere.example")
	wantJSONError(t, r, http.StatusNotFound, "not_found", "unknown_frontend")

	// With a default frontend, that request is the default's.
	e2 := newMultiEnv(t, func(c *gatehouse.MultiConfig) { c.DefaultFrontend = "partner" })
	r = e2.browser().api("http://127.0.0.1:"+e2.port+"/bff/user", "Host", "elsewhere.example")
	wantJSONError(t, r, http.StatusUnauthorized, "unauthenticated", "")
}

func TestMultiIsolatesFrontendsAndProviders(t *testing.T) {
	e := newMultiEnv(t)
	local, loop := "http://localhost:"+e.port, "http://127.0.0.1:"+e.port
	b := e.browser()

	// shop: its one provider, nothing to choose.
	b.login(loop + "/bff/login?returnUrl=/app")
	r := b.api(loop + "/bff/user")
	wantStatus(t, r, http.StatusOK)
	if m := decode(t, r); m["claims"].(map[string]any)["sub"] != "alice" || m["provider"] != "staff" {
		t.Fatalf("shop /bff/user = %v", m)
	}
	wantStatus(t, b.api(loop+"/api/orders"), http.StatusOK)
	if auth := <-e.upstreamAuth; !strings.HasPrefix(auth, "Bearer ") {
		t.Fatalf("shop's route got Authorization %q", auth)
	}

	// admin: the chooser lists both providers; the login goes to the one chosen.
	r = b.do("GET", local+"/admin/bff/login?returnUrl=/admin/", "Accept", "text/html")
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{"Sign in as staff", "Sign in as customers", `href="/admin/bff/login?provider=customers&amp;returnUrl=%2Fadmin%2F"`} {
		if !strings.Contains(r.body, want) {
			t.Fatalf("chooser page lacks %q:\n%s", want, r.body)
		}
	}
	b.login(local + "/admin/bff/login?provider=customers&returnUrl=/admin/")
	r = b.api(local + "/admin/bff/user")
	wantStatus(t, r, http.StatusOK)
	m := decode(t, r)
	if m["claims"].(map[string]any)["sub"] != "bob" || m["provider"] != "customers" || !strings.HasPrefix(m["logout_url"].(string), "/admin/bff/logout?sid=") {
		t.Fatalf("admin /bff/user = %v", m)
	}
	wantJSONError(t, b.do("GET", local+"/admin/bff/login?provider=nobody"), http.StatusBadRequest, "bad_request", "login_unknown_provider")

	// partner has no session yet, though this browser holds two others on its host.
	wantJSONError(t, b.api(local+"/bff/user"), http.StatusUnauthorized, "unauthenticated", "")

	// A cookie copied from one app to another's cookie name opens nothing there.
	shop := b.cookie("127.0.0.1:"+e.port, "__Host-gatehouse")
	admin := b.cookie("localhost:"+e.port, "__Host-admin")
	if shop == "" || admin == "" {
		t.Fatal("missing session cookies")
	}
	thief := e.browser()
	wantJSONError(t, thief.api(local+"/bff/user", "Cookie", "__Host-partner="+shop), http.StatusUnauthorized, "unauthenticated", "")
	wantJSONError(t, thief.api(local+"/admin/bff/user", "Cookie", "__Host-admin="+shop), http.StatusUnauthorized, "unauthenticated", "")
	wantJSONError(t, thief.api(loop+"/bff/user", "Cookie", "__Host-gatehouse="+admin), http.StatusUnauthorized, "unauthenticated", "")
	wantJSONError(t, thief.api(local+"/api/x", "Cookie", "__Host-partner="+admin), http.StatusUnauthorized, "unauthenticated", "")
	// ... and still works where it belongs.
	wantStatus(t, thief.api(local+"/admin/bff/user", "Cookie", "__Host-admin="+admin), http.StatusOK)

	// A back-channel logout from customers for bob ends admin's customers session only.
	partner := e.browser()
	partner.login(local + "/bff/login")
	lt := e.customers.LogoutToken("bob", "", "logout+jwt", nil)
	form := strings.NewReader("logout_token=" + url.QueryEscape(lt))
	req, _ := http.NewRequest("POST", local+"/admin/bff/backchannel", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout = %d", res.StatusCode)
	}
	wantJSONError(t, b.api(local+"/admin/bff/user"), http.StatusUnauthorized, "unauthenticated", "")
	wantStatus(t, partner.api(local+"/bff/user"), http.StatusOK) // the same user at the same provider, another app
	wantStatus(t, b.api(loop+"/bff/user"), http.StatusOK)        // another provider

	// A staff logout token at admin finds no staff session there now.
	lt = e.staff.LogoutToken("alice", "", "logout+jwt", nil)
	req, _ = http.NewRequest("POST", local+"/admin/bff/backchannel", strings.NewReader("logout_token="+url.QueryEscape(lt)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, err = b.c.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	wantStatus(t, b.api(loop+"/bff/user"), http.StatusOK) // shop's alice is shop's, not admin's
}

// A callback whose iss is another provider's than the one the flow went to is refused,
// even when that provider is one of the app's (mix-up, RFC 9207).
func TestMultiProviderMixUp(t *testing.T) {
	e := newMultiEnv(t)
	local := "http://localhost:" + e.port
	b := e.browser()
	cb := b.startLogin(local + "/admin/bff/login?provider=staff")
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("iss", e.customers.Issuer)
	u.RawQuery = q.Encode()
	r := b.do("GET", u.String(), "Accept", "application/json")
	wantJSONError(t, r, http.StatusBadRequest, "bad_request", "login_issuer_mismatch")
}

func TestMultiConfigConflicts(t *testing.T) {
	base := gatehouse.Config{PublicURL: "https://a.example", Provider: gatehouse.ProviderConfig{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s"}}
	with := func(name, public, cookie string) gatehouse.Config {
		c := base
		c.Name, c.PublicURL, c.Cookie.Name = name, public, cookie
		return c
	}
	err := gatehouse.MultiConfig{DefaultFrontend: "nobody", Frontends: []gatehouse.Config{
		with("shop", "https://a.example", ""),
		with("shop", "https://b.example", ""),
		with("admin", "https://a.example", "__Host-admin"),
		with("x y", "https://a.example/x", "__Host-gatehouse"),
		with("bad", "https://c.example/bff", ""),
	}}.Validate()
	if err == nil {
		t.Fatal("conflicting frontends accepted")
	}
	for _, want := range []string{
		`frontends[1].name: "shop" names frontends[0] too`,
		`frontends[2].public_url: "https://a.example" is the public URL of frontends[0] too`,
		`frontends[3].name: "x y" is not a name`,
		`frontends[3].cookie.name: "__Host-gatehouse" is frontends[0]'s cookie on the same host`,
		`frontends[4].public_url: path "/bff" would hide Gatehouse's own /bff/ endpoints`,
		`default_frontend: "nobody" is none of the frontends' names`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// Several providers need names, each different.
	c := base
	c.Provider = gatehouse.ProviderConfig{}
	c.Providers = []gatehouse.ProviderConfig{base.Provider, base.Provider}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), `providers[0].name: "" is not a name`) || !strings.Contains(err.Error(), `providers[1].name: "" is not a name`) {
		t.Fatalf("unnamed providers: %v", err)
	}
	c.Providers[0].Name, c.Providers[1].Name = "a", "a"
	if err = c.Validate(); err == nil || !strings.Contains(err.Error(), `providers[1].name: "a" names another provider too`) {
		t.Fatalf("duplicate provider names: %v", err)
	}
}

// Reload adds and removes apps and leaves the others' sessions alone; the sessions of a
// removed app stay in the store and open again when it comes back.
func TestMultiReload(t *testing.T) {
	e := newMultiEnv(t)
	local, loop := "http://localhost:"+e.port, "http://127.0.0.1:"+e.port
	b := e.browser()
	b.login(loop + "/bff/login")
	b.login(local + "/bff/login")
	wantStatus(t, b.api(loop+"/bff/user"), http.StatusOK)

	shop := e.cfg.Frontends[0]
	portal := shop
	portal.Name, portal.PublicURL, portal.Cookie.Name = "portal", loop+"/portal", "__Host-portal"
	portal.Routes = []gatehouse.Route{{Path: "/portal/api/", Upstream: shop.Routes[0].Upstream}}
	partner := e.cfg.Frontends[2]
	partner.Session.IdleTimeout = 5 * time.Minute // a live change of a kept app
	next := gatehouse.MultiConfig{Frontends: []gatehouse.Config{e.cfg.Frontends[1], partner, portal}}
	if _, err := e.multi.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.multi.Frontends(), ","); got != "admin,partner,portal" {
		t.Fatalf("frontends after reload: %s", got)
	}
	wantJSONError(t, b.api(loop+"/bff/user"), http.StatusNotFound, "not_found", "unknown_frontend")
	wantStatus(t, b.api(local+"/bff/user"), http.StatusOK) // partner's session, untouched
	r := b.api(loop + "/portal/bff/user")
	wantStatus(t, r, http.StatusUnauthorized)
	if m := decode(t, r); m["login_url"] != "/portal/bff/login" {
		t.Fatalf("portal's login_url: %v", m)
	}

	// A conflicting configuration changes nothing.
	bad := next
	bad.Frontends = append(slices.Clone(next.Frontends), partner)
	if _, err := e.multi.Reload(bad); err == nil || !strings.Contains(err.Error(), `"partner" names frontends[1] too`) {
		t.Fatalf("conflicting reload: %v", err)
	}
	if got := strings.Join(e.multi.Frontends(), ","); got != "admin,partner,portal" {
		t.Fatalf("frontends after a failed reload: %s", got)
	}

	// shop comes back: its session opens again.
	if _, err := e.multi.Reload(e.cfg); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.api(loop+"/bff/user"), http.StatusOK)
	wantJSONError(t, b.api(loop+"/portal/bff/user"), http.StatusNotFound, "not_found", "")
}
