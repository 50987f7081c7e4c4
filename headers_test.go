package gatehouse_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// headerUpstream records the method and headers of each request; under /hints/ it sends
// 103 Early Hints (with a Link, the gateway's cookie and its own) before answering.
type headerUpstream struct {
	srv  *httptest.Server
	reqs chan *http.Request
}

func newHeaderUpstream(t *testing.T) *headerUpstream {
	u := &headerUpstream{reqs: make(chan *http.Request, 16)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.reqs <- r.Clone(r.Context())
		if strings.HasPrefix(r.URL.Path, "/hints/") {
			w.Header().Set("Link", "</app.css>; rel=preload; as=style")
			w.Header()["Set-Cookie"] = []string{"__Host-gatehouse=planted; Path=/; Secure; HttpOnly", "hint=1; Path=/"}
			w.WriteHeader(http.StatusEarlyHints)
			clear(w.Header())
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *headerUpstream) last(t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-u.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the upstream")
		return nil
	}
}

func TestProxyStripsOverridesAndIdentityHeaders(t *testing.T) {
	up := newHeaderUpstream(t)
	routes := func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/ro/", Upstream: up.srv.URL, Methods: []string{"GET"}}}
	}
	send := func(e *env) *http.Request {
		t.Helper()
		b := e.browser()
		b.login()
		wantStatus(t, b.do("GET", "/ro/x", nil, "X-CSRF", "1", "X-HTTP-Method-Override", "DELETE", "X-Method-Override", "DELETE",
			"X-HTTP-Method", "DELETE", "Remote-User", "admin", "Remote-Groups", "admins", "X-Auth-Request-Email", "admin@example.com",
			"X-Amzn-Oidc-Identity", "admin", "X-User", "admin", "X-Tenant", "other", "Accept-Language", "fr"), 200)
		return up.last(t)
	}

	r := send(newEnv(t, routes))
	if r.Method != "GET" {
		t.Errorf("upstream method %s", r.Method)
	}
	for _, name := range []string{"X-Http-Method-Override", "X-Method-Override", "X-Http-Method", "Remote-User", "Remote-Groups",
		"X-Auth-Request-Email", "X-Amzn-Oidc-Identity", "X-User"} {
		if v := r.Header.Values(name); len(v) > 0 {
			t.Errorf("the upstream got the browser's %s: %q", name, v)
		}
	}
	if r.Header.Get("X-Tenant") != "other" || r.Header.Get("Accept-Language") != "fr" {
		t.Errorf("ordinary headers lost: %v", r.Header)
	}

	// strip_request_headers adds to the list; allow_request_headers forwards an entry of
	// it after all, but never a method override.
	r = send(newEnv(t, routes, func(c *gatehouse.Config) {
		c.StripRequestHeaders = []string{"X-Tenant"}
		c.AllowRequestHeaders = []string{"Remote-User"}
	}))
	if r.Header.Get("X-Tenant") != "" || r.Header.Get("Remote-User") != "admin" || r.Header.Get("Remote-Groups") != "" ||
		r.Header.Get("X-Http-Method-Override") != "" {
		t.Errorf("with strip_request_headers [X-Tenant] and allow_request_headers [Remote-User], the upstream got %v", r.Header)
	}
}

func TestRequestHeaderListsValidateAndWarn(t *testing.T) {
	base := gatehouse.Config{PublicURL: "https://app.example.com",
		Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com/", ClientID: "c", ClientSecret: "s"}}
	c := base
	c.StripRequestHeaders = []string{"X-Tenant", "X-Debug-*", "X-*-Role"}
	c.AllowRequestHeaders = []string{"Remote-User", "X-Forwarded-User", "Accept"}
	err := c.Validate()
	for _, want := range []string{`strip_request_headers: "X-*-Role"`, `allow_request_headers: "X-Forwarded-User" is a forwarding`,
		`allow_request_headers: "Accept" is not removed anyway`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want the problem %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "Remote-User") {
		t.Errorf("Remote-User may be allowed: %v", err)
	}
	c.StripRequestHeaders, c.AllowRequestHeaders = []string{"X-Tenant"}, []string{"X-Amzn-Oidc-Identity", "X-Tenant"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := c.WeakerOptions(); len(w) != 1 || w[0] != "allow_request_headers" {
		t.Errorf("WeakerOptions = %q, want allow_request_headers", w)
	}
	if w := base.WeakerOptions(); len(w) != 0 {
		t.Errorf("WeakerOptions of the defaults = %q", w)
	}
}

// An upstream's 103 Early Hints reach the browser without the gateway's cookie, and do
// not wipe what the gateway set on the final response: a request with Transfer-Encoding
// still gets Connection: close.
func TestProxyEarlyHints(t *testing.T) {
	up := newHeaderUpstream(t)
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/hints/", Upstream: up.srv.URL, Token: gatehouse.TokenNone}}
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /hints/x HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nSec-Fetch-Site: same-origin\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		strings.TrimPrefix(e.url, "http://"))
	br := bufio.NewReader(conn)
	hints, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hints.StatusCode != http.StatusEarlyHints {
		t.Fatalf("first response %d, want 103", hints.StatusCode)
	}
	if got := hints.Header.Get("Link"); got != "</app.css>; rel=preload; as=style" {
		t.Errorf("103 Link = %q", got)
	}
	if got := hints.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "hint=1; Path=/" {
		t.Errorf("103 Set-Cookie = %q, want the upstream's own cookie only", got)
	}
	final, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(final.Body)
	if final.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("final response %d %q", final.StatusCode, body)
	}
	if !final.Close {
		t.Error("the final response does not close the connection of a request with Transfer-Encoding")
	}
	if n, _ := br.Read(make([]byte, 1)); n != 0 {
		t.Error("the gateway kept the connection open")
	}
}

// docs/configuration.md lists the built-in strip list exactly.
func TestDefaultStripHeadersDocumented(t *testing.T) {
	doc, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range upstream.DefaultStripHeaders() {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/configuration.md does not list %s among the request headers removed by default", name)
		}
	}
}

// TestCustomCSRFHeaderAnyCase: a CSRF header configured in lower case is checked and
// kept from the upstream like the default one (header maps hold canonical keys), and a
// DPoP proof the browser sends never reaches the upstream of a bearer route.
func TestCustomCSRFHeaderAnyCase(t *testing.T) {
	up := newHeaderUpstream(t)
	e := newEnv(t, func(c *gatehouse.Config) {
		c.CSRF = gatehouse.CSRFConfig{Header: "x-requested-by", Value: "spa"}
		c.Routes = []gatehouse.Route{{Path: "/ro/", Upstream: up.srv.URL}}
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.do("GET", "/ro/x", nil, "X-CSRF", "1"), http.StatusForbidden)
	wantStatus(t, b.do("GET", "/ro/x", nil, "X-Requested-By", "spa", "DPoP", "browser-proof"), http.StatusOK)
	r := up.last(t)
	if v := r.Header.Values("X-Requested-By"); len(v) > 0 {
		t.Errorf("the upstream got the CSRF header: %q", v)
	}
	if v := r.Header.Values("DPoP"); len(v) > 0 {
		t.Errorf("the upstream got the browser's DPoP proof: %q", v)
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		t.Errorf("upstream Authorization %q", r.Header.Get("Authorization"))
	}
}
