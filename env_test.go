package gatehouse_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

// env is a gateway on a real loopback listener in front of the fake provider.
type env struct {
	t      *testing.T
	idp    *idptest.Provider
	gw     *gatehouse.Gateway
	url    string // the gateway's public URL
	logs   *testutil.SyncBuffer
	audit  *testutil.SyncBuffer // the audit log, JSON lines
	clock  *testutil.Clock
	store  *memstore.Store
	bodies []string // every response body a browser received, for leak checks
}

func newEnv(t *testing.T, mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	return newEnvKnobs(t, nil, mutate...)
}

// newEnvKnobs sets the fake provider's knobs before the gateway starts (and discovers
// its metadata in the background).
func newEnvKnobs(t *testing.T, knobs func(*idptest.Knobs), mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	p := idptest.New(t)
	if knobs != nil {
		p.Set(knobs)
	}
	return newEnvProvider(t, p, mutate...)
}

// newEnvProvider is newEnv with a provider of the caller's: several gateways given the
// same one share their session keys (derived from the client credentials), as replicas.
func newEnvProvider(t *testing.T, p *idptest.Provider, mutate ...func(*gatehouse.Config)) *env {
	t.Helper()
	e := &env{t: t, idp: p, logs: &testutil.SyncBuffer{}, audit: &testutil.SyncBuffer{}, clock: &testutil.Clock{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	e.store = memstore.New(memstore.Options{Now: e.clock.Now})
	t.Cleanup(func() { e.store.Close() })
	cfg := gatehouse.Config{
		PublicURL: e.url,
		Provider: gatehouse.ProviderConfig{
			Issuer: e.idp.Issuer, ClientID: e.idp.ClientID, ClientSecret: e.idp.ClientSecret,
		},
		Session:     gatehouse.SessionConfig{Store: e.store},
		Logger:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuditLogger: slog.New(slog.NewJSONHandler(e.audit, nil)),
		Now:         e.clock.Now,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	e.gw, err = gatehouse.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: e.gw}}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		e.gw.Close()
	})
	return e
}

// browser is a cookie-keeping client that does not follow redirects by itself.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	return &browser{e: e, c: &http.Client{
		Jar:           testutil.NewLoopbackJar(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}}
}

type resp struct {
	*http.Response
	body string
}

func (b *browser) do(method, target string, body io.Reader, headers ...string) *resp {
	b.e.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.e.url + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	r, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer r.Body.Close()
	data, _ := io.ReadAll(r.Body)
	if strings.HasPrefix(target, b.e.url) {
		b.e.bodies = append(b.e.bodies, string(data))
		for k, v := range r.Header {
			b.e.bodies = append(b.e.bodies, k+": "+strings.Join(v, ","))
		}
	}
	return &resp{Response: r, body: string(data)}
}

func (b *browser) get(target string, headers ...string) *resp {
	return b.do("GET", target, nil, headers...)
}

// api calls like the SPA: JSON, the CSRF header, same-origin fetch metadata.
func (b *browser) api(method, target string) *resp {
	return b.do(method, target, nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors")
}

// startLogin goes to /bff/login and follows to the provider; it returns the callback URL
// the provider redirected to (not yet visited).
func (b *browser) startLogin(returnURL string) string {
	b.e.t.Helper()
	r := b.get("/bff/login?returnUrl=" + url.QueryEscape(returnURL))
	if r.StatusCode != http.StatusFound {
		b.e.t.Fatalf("/bff/login = %d %s", r.StatusCode, r.body)
	}
	r = b.get(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound {
		b.e.t.Fatalf("provider authorize = %d %s", r.StatusCode, r.body)
	}
	return r.Header.Get("Location")
}

// login runs a whole login and returns the callback response.
func (b *browser) login() *resp {
	b.e.t.Helper()
	r := b.get(b.startLogin("/app"), "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusOK {
		b.e.t.Fatalf("callback = %d %s", r.StatusCode, r.body)
	}
	return r
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.url)
	u.Scheme = "https"
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func decode(t *testing.T, r *resp) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body is not JSON (%v): %q", err, r.body)
	}
	return m
}

func wantStatus(t *testing.T, r *resp, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s = %d, want %d; body: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
}

func wantJSONError(t *testing.T, r *resp, status int, code, reason string) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	m := decode(t, r)
	if m["error"] != code || (reason != "" && m["reason"] != reason) {
		t.Fatalf("body = %v, want error %q reason %q", m, code, reason)
	}
}
