package gatehouse_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// idUpstream records the X-Request-Id of each request and answers with one of its own,
// which the gateway must replace with the request's.
type idUpstream struct {
	mu  sync.Mutex
	ids []string
	srv *httptest.Server
}

func newIDUpstream(t *testing.T) *idUpstream {
	u := &idUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.ids = append(u.ids, strings.Join(r.Header.Values("X-Request-Id"), ","))
		u.mu.Unlock()
		w.Header().Set("X-Request-Id", "the-upstream-own")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *idUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.ids) == 0 {
		return ""
	}
	return u.ids[len(u.ids)-1]
}

// accessEnv is a gateway with an access log into access, and one route to up.
func accessEnv(t *testing.T, up *idUpstream, access *testutil.SyncBuffer, mutate ...func(*gatehouse.Config)) *env {
	return newEnv(t, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL},
			{Path: "/open/", Upstream: up.srv.URL, Token: gatehouse.TokenNone}}
		if access != nil {
			c.AccessLogger = slog.New(slog.NewJSONHandler(access, nil))
		}
	}}, mutate...)...)
}

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestAccessLogLine(t *testing.T) {
	up := newIDUpstream(t)
	access := &testutil.SyncBuffer{}
	e := accessEnv(t, up, access)
	b := e.browser()
	b.login()
	sid := decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	cookie := b.cookie("__Host-gatehouse").Value
	before := len(jsonLines(t, access.String()))

	r := b.do("GET", "/api/orders?token=query-secret", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin")
	if r.StatusCode != 200 {
		t.Fatalf("status %d %s", r.StatusCode, r.body)
	}
	lines := jsonLines(t, access.String())
	if len(lines) != before+1 {
		t.Fatalf("%d access lines for one request, want 1:\n%s", len(lines)-before, access.String())
	}
	m := lines[len(lines)-1]
	id := r.Header.Get("X-Request-Id")
	if !hexID.MatchString(id) || m["request_id"] != id || up.last() != id {
		t.Fatalf("request id: response %q, log %v, upstream saw %q", id, m["request_id"], up.last())
	}
	if got := r.Header.Values("X-Request-Id"); len(got) != 1 {
		t.Fatalf("response X-Request-Id %q: the upstream's must be replaced", got)
	}
	want := map[string]any{"msg": "access", "frontend": "default", "kind": "route", "route": "/api/", "method": "GET", "path": "/api/orders",
		"status": float64(200), "bytes": float64(len(r.body)), "ip": "127.0.0.1"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
	for _, k := range []string{"duration_ms", "upstream_ms"} {
		if v, ok := m[k].(float64); !ok || v < 0 || v > 10000 {
			t.Errorf("%s = %v, want milliseconds", k, m[k])
		}
	}
	if h, _ := m["session"].(string); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h) {
		t.Errorf("session = %v, want a 16-hex-digit hash", m["session"])
	}
	if _, ok := m["subject"]; ok {
		t.Errorf("subject logged without log.access_subject: %v", m)
	}
	if _, ok := m["time"]; !ok {
		t.Errorf("no time: %v", m)
	}
	all := access.String()
	for _, secret := range []string{sid, cookie, "query-secret", e.idp.ClientSecret} {
		if strings.Contains(all, secret) {
			t.Fatalf("the access log holds %q:\n%s", secret, all)
		}
	}

	// A /bff/ endpoint: no route, no upstream time; the session is the same one.
	r = b.api("GET", "/bff/user")
	m = jsonLines(t, access.String())[len(jsonLines(t, access.String()))-1]
	if m["kind"] != "bff" || m["path"] != "/bff/user" || m["route"] != nil || m["upstream_ms"] != nil ||
		m["request_id"] != r.Header.Get("X-Request-Id") || m["session"] != lines[len(lines)-1]["session"] {
		t.Fatalf("bff line %v", m)
	}

	// Ending a session by its handle: the handle is not written.
	other := e.browser()
	other.login()
	handle := decode(t, other.api("GET", "/bff/user"))["sid"].(string)
	b.do("DELETE", "/bff/sessions/"+handle, nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin")
	lines = jsonLines(t, access.String())
	if m := lines[len(lines)-1]; m["path"] != "/bff/sessions/{sid}" || strings.Contains(access.String(), handle) {
		t.Fatalf("a session handle in the access log: %v", m)
	}
}

func TestAccessLogSubject(t *testing.T) {
	up := newIDUpstream(t)
	access := &testutil.SyncBuffer{}
	e := accessEnv(t, up, access, func(c *gatehouse.Config) { c.Log.AccessSubject = true })
	b := e.browser()
	b.login()
	b.api("GET", "/api/orders")
	lines := jsonLines(t, access.String())
	if m := lines[len(lines)-1]; m["subject"] != "alice" {
		t.Fatalf("subject = %v, want alice", m["subject"])
	}
}

func TestRequestIDFromTrustedProxiesOnly(t *testing.T) {
	up := newIDUpstream(t)
	for _, tc := range []struct {
		name    string
		trusted bool
		sent    string
		kept    bool
	}{
		{"untrusted peer", false, "from-the-browser-1", false},
		{"trusted proxy", true, "edge-4f1c-9a", true},
		{"trusted proxy, space", true, "two words", false},
		{"trusted proxy, too long", true, strings.Repeat("a", 129), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := accessEnv(t, up, nil, func(c *gatehouse.Config) {
				if tc.trusted {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			})
			r := e.browser().do("GET", "/open/x", nil, "X-Request-Id", tc.sent, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin")
			id := r.Header.Get("X-Request-Id")
			if tc.kept && id != tc.sent || !tc.kept && !hexID.MatchString(id) {
				t.Fatalf("sent %q, got back %q", tc.sent, id)
			}
			if up.last() != id {
				t.Fatalf("upstream saw %q, client got %q (%d %s)", up.last(), id, r.StatusCode, r.body)
			}
		})
	}
}

func TestRequestIDInAuditErrorsAndLogs(t *testing.T) {
	up := newIDUpstream(t)
	e := accessEnv(t, up, nil, func(c *gatehouse.Config) {
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/down/", Upstream: "http://127.0.0.1:1", Token: gatehouse.TokenNone})
	})
	b := e.browser()

	r := b.get("/bff/login")
	e.wantAudit("login_started", map[string]any{"request_id": r.Header.Get("X-Request-Id")})

	r = b.api("GET", "/bff/nothing-here")
	body := decode(t, r)
	if r.StatusCode != 404 || body["request_id"] == nil || body["request_id"] != r.Header.Get("X-Request-Id") {
		t.Fatalf("error body %v, X-Request-Id %q", body, r.Header.Get("X-Request-Id"))
	}

	r = b.get("/bff/nothing-here", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != 404 || !strings.Contains(r.body, "request id "+r.Header.Get("X-Request-Id")) {
		t.Fatalf("error page without the request id %q: %s", r.Header.Get("X-Request-Id"), r.body)
	}

	r = b.api("GET", "/down/x")
	if r.StatusCode != http.StatusBadGateway || decode(t, r)["request_id"] != r.Header.Get("X-Request-Id") {
		t.Fatalf("%d %s", r.StatusCode, r.body)
	}
	found := false
	for _, m := range jsonLines(t, e.logs.String()) {
		if m["msg"] == "request failed" && m["request_id"] == r.Header.Get("X-Request-Id") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no error line with the request id:\n%s", e.logs.String())
	}
}

// nanoseconds finds a duration-named field holding a bare integer of seven or more
// digits: a time.Duration that the JSON handler wrote as nanoseconds.
var nanoseconds = regexp.MustCompile(`"[a-z_]*(retry|timeout|delay|drain|duration|wait|after|_in)[a-z_]*":-?\d{7,}`)

func TestLogDurationsAreHuman(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	issuer := closed.URL
	closed.Close()
	logs := &testutil.SyncBuffer{}
	gw, err := gatehouse.New(gatehouse.Config{
		PublicURL: "http://127.0.0.1:8080",
		Provider:  gatehouse.ProviderConfig{Issuer: issuer, ClientID: "c", ClientSecret: "s"},
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "provider discovery failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"retry_in":"500ms"`) {
		t.Fatalf(`want "retry_in":"500ms" in:\n%s`, logs.String())
	}
	if nanoseconds.MatchString(logs.String()) {
		t.Fatalf("a duration in nanoseconds: %s", nanoseconds.FindString(logs.String()))
	}
}
