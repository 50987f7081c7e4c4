package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/internal/devidp"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// startDemo runs the whole demo on free ports and stops it when the test ends.
func startDemo(t *testing.T) addresses {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan addresses, 1)
	done := make(chan error, 1)
	var banner bytes.Buffer
	go func() {
		done <- run(ctx, options{
			listen: "127.0.0.1:0", providerListen: "127.0.0.1:0", apiListen: "127.0.0.1:0", adminListen: "127.0.0.1:0",
			logger: slog.New(slog.NewTextHandler(t.Output(), nil)), stdout: &banner,
			onReady: func(a addresses) { ready <- a },
		})
	}()
	var a addresses
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the demo did not shut down")
		}
	})
	if !strings.Contains(banner.String(), "Open "+a.gateway+"/") || !strings.Contains(banner.String(), a.adminToken) {
		t.Errorf("banner:\n%s", banner.String())
	}
	return a
}

// browser is an HTTP client that keeps cookies like Chromium does on loopback.
type browser struct {
	t *testing.T
	c *http.Client
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, r.body)
	}
	return m
}

func (b *browser) do(method, u string, form url.Values, header http.Header) response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(b.t.Context(), method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(data)}
}

// api calls a gateway route as the SPA does: with the CSRF header.
func (b *browser) api(u string) response {
	b.t.Helper()
	return b.do(http.MethodGet, u, nil, http.Header{"X-Csrf": {"1"}, "Accept": {"application/json"}})
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// login signs user in through the gateway and devidp's login page.
func login(t *testing.T, a addresses, user string) *browser {
	t.Helper()
	b := &browser{t: t, c: &http.Client{Jar: testutil.NewLoopbackJar()}}
	page := b.do(http.MethodGet, a.gateway+"/bff/login?returnUrl=/", nil, nil)
	m := requestField.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		t.Fatalf("login page: %d\n%s", page.status, page.body)
	}
	// The login form posts to the provider, which redirects to /bff/callback.
	cb := b.do(http.MethodPost, a.provider+"/login", url.Values{"request": {m[1]}, "user": {user}}, nil)
	if cb.status != http.StatusOK {
		t.Fatalf("callback: %d\n%s", cb.status, cb.body)
	}
	return b
}

func TestDemo(t *testing.T) {
	a := startDemo(t)

	anon := &browser{t: t, c: &http.Client{Jar: testutil.NewLoopbackJar()}}
	page := anon.do(http.MethodGet, a.gateway+"/", nil, nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, `src="/app.js"`) {
		t.Fatalf("SPA: %d\n%s", page.status, page.body)
	}
	if got := page.header.Get("Content-Security-Policy"); got != gatehouse.DefaultCSP+"; frame-src 'self' "+a.provider {
		t.Errorf("CSP = %q", got)
	}
	for _, asset := range []string{"/app.js", "/style.css", "/bff/client.js"} {
		if r := anon.do(http.MethodGet, a.gateway+asset, nil, nil); r.status != http.StatusOK {
			t.Errorf("%s: %d", asset, r.status)
		}
	}
	if r := anon.do(http.MethodGet, a.gateway+"/bff/user", nil, nil); r.status != http.StatusUnauthorized {
		t.Errorf("/bff/user without a session: %d", r.status)
	}
	// The client-credentials route needs no user.
	if r := anon.api(a.gateway + "/client/status"); r.status != http.StatusOK || r.json(t)["client_id"] != clientID {
		t.Errorf("/client/status without a session: %d %s", r.status, r.body)
	}

	alice := login(t, a, "alice")
	user := alice.do(http.MethodGet, a.gateway+"/bff/user", nil, nil)
	if user.status != http.StatusOK {
		t.Fatalf("/bff/user: %d %s", user.status, user.body)
	}
	claims := user.json(t)["claims"].(map[string]any)
	if claims["sub"] != "alice" || claims["name"] != "Alice Liddell" || claims["email"] != "alice@example.com" ||
		!slices.Equal(toStrings(claims["groups"]), []string{"admin", "staff"}) {
		t.Errorf("claims = %v", claims)
	}

	me := alice.api(a.gateway + "/api/me")
	if me.status != http.StatusOK {
		t.Fatalf("/api/me: %d %s", me.status, me.body)
	}
	body := me.json(t)
	if body["claims"].(map[string]any)["sub"] != "alice" || body["token"].(map[string]any)["kind"] != "jwt" {
		t.Errorf("/api/me = %v", body)
	}

	status := alice.api(a.gateway + "/client/status")
	if status.status != http.StatusOK {
		t.Fatalf("/client/status: %d %s", status.status, status.body)
	}
	if sb := status.json(t); sb["client_id"] != clientID || sb["scope"] != "demo.status" {
		t.Errorf("/client/status = %v", sb)
	}

	if r := alice.api(a.gateway + "/api/admin"); r.status != http.StatusOK {
		t.Errorf("/api/admin as alice: %d %s", r.status, r.body)
	}
	bob := login(t, a, "bob")
	if r := bob.api(a.gateway + "/api/admin"); r.status != http.StatusForbidden || r.json(t)["error"] != "forbidden" {
		t.Errorf("/api/admin as bob: %d %s", r.status, r.body)
	}

	// The admin listener lists alice's session with the printed token.
	sessions := alice.do(http.MethodGet, a.admin+"/admin/sessions?sub=alice", nil, http.Header{"Authorization": {"Bearer " + a.adminToken}})
	if sessions.status != http.StatusOK || !strings.Contains(sessions.body, `"sid"`) {
		t.Errorf("admin sessions: %d %s", sessions.status, sessions.body)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

func TestPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())

	var stderr bytes.Buffer
	code := mainExit(t.Context(), []string{"--listen", taken.Addr().String(), "--provider-listen", "127.0.0.1:0",
		"--api-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, io.Discard, &stderr)
	want := "port " + port + " is in use; pass --listen 127.0.0.1:NNNN"
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}

	// The addresses bound before the failure are released.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := probe.Addr().String()
	probe.Close()
	err = run(t.Context(), options{providerListen: free, apiListen: "127.0.0.1:0", listen: taken.Addr().String(),
		adminListen: "127.0.0.1:0", logger: slog.New(slog.DiscardHandler), stdout: io.Discard})
	if _, ok := errors.AsType[*listenError](err); !ok || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("run = %v", err)
	}
	again, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("the provider's address is still bound after the failure: %v", err)
	}
	again.Close()
}

func TestNonLoopbackRefused(t *testing.T) {
	err := run(t.Context(), options{listen: "0.0.0.0:0", providerListen: "127.0.0.1:0", apiListen: "127.0.0.1:0",
		adminListen: "127.0.0.1:0", logger: slog.New(slog.DiscardHandler), stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("run = %v", err)
	}
}

// The YAML files of the three-process variant describe the same setup as the launcher.
func TestConfigFilesMatchTheLauncher(t *testing.T) {
	const gateway, provider, apiURL = "http://127.0.0.1:9080", "http://127.0.0.1:9000", "http://127.0.0.1:9001"

	file, err := devidp.LoadConfig("devidp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := providerConfig(provider, gateway, false, nil)
	if file.Listen != want.Listen {
		t.Errorf("devidp.yaml listen = %q, want %q", file.Listen, want.Listen)
	}
	if len(file.Clients) != 1 || !equalJSON(file.Clients[0], want.Clients[0]) {
		t.Errorf("devidp.yaml clients = %+v, want %+v", file.Clients, want.Clients)
	}
	if !equalJSON(file.Users, want.Users) {
		t.Errorf("devidp.yaml users = %v, want %v", file.Users, want.Users)
	}

	data, err := os.ReadFile("gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var gh struct {
		Listen    string `yaml:"listen"`
		PublicURL string `yaml:"public_url"`
		Provider  struct {
			Issuer       string   `yaml:"issuer"`
			ClientID     string   `yaml:"client_id"`
			ClientSecret string   `yaml:"client_secret"`
			Scopes       []string `yaml:"scopes"`
		} `yaml:"provider"`
		Routes []struct {
			Path     string   `yaml:"path"`
			Upstream string   `yaml:"upstream"`
			Token    string   `yaml:"token"`
			Scopes   []string `yaml:"scopes"`
			Require  []struct {
				Claim    string   `yaml:"claim"`
				Contains []string `yaml:"contains"`
			} `yaml:"require"`
		} `yaml:"routes"`
		Frontend struct {
			Dir string `yaml:"dir"`
		} `yaml:"frontend"`
	}
	if err := yaml.Unmarshal(data, &gh); err != nil {
		t.Fatal(err)
	}
	if gh.PublicURL != gateway || gh.Listen != "127.0.0.1:9080" || gh.Provider.Issuer != provider ||
		gh.Provider.ClientID != clientID || gh.Provider.ClientSecret != clientSecret || gh.Frontend.Dir != "./spa" ||
		!slices.Equal(gh.Provider.Scopes, scopes) {
		t.Errorf("gatehouse.yaml = %+v", gh)
	}
	routes := routes(apiURL)
	if len(gh.Routes) != len(routes) {
		t.Fatalf("gatehouse.yaml has %d routes, the launcher %d", len(gh.Routes), len(routes))
	}
	for i, r := range routes {
		f := gh.Routes[i]
		ok := f.Path == r.Path && f.Upstream == r.Upstream && (f.Token == string(r.Token) || f.Token == "" && r.Token == gatehouse.TokenUser) &&
			slices.Equal(f.Scopes, r.Scopes) && len(f.Require) == len(r.Require)
		for j := range min(len(f.Require), len(r.Require)) {
			ok = ok && f.Require[j].Claim == r.Require[j].Claim && slices.Equal(f.Require[j].Contains, r.Require[j].Contains)
		}
		if !ok {
			t.Errorf("gatehouse.yaml routes[%d] = %+v, launcher %+v", i, f, r)
		}
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
