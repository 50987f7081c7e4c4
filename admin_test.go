package gatehouse_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestAdminAPI(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Admin.Token = "admin-secret-token" })
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	call := func(method, path, token string) *resp {
		req, _ := http.NewRequest(method, admin.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return &resp{Response: r, body: sb.String()}
	}
	wantStatus(t, call("GET", "/healthz", ""), 200)
	deadline := time.Now().Add(5 * time.Second)
	for call("GET", "/readyz", "").StatusCode != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	wantStatus(t, call("GET", "/readyz", ""), 200)

	b1, b2 := e.browser(), e.browser()
	b1.login()
	b2.login()
	m := call("GET", "/metrics", "")
	if m.StatusCode != 200 || !strings.Contains(m.body, `gatehouse_logins_total{outcome="completed"} 2`) ||
		!strings.Contains(m.body, `gatehouse_http_requests_seconds_count{kind="bff",method="GET",status="200"}`) {
		t.Fatalf("/metrics: %d\n%s", m.StatusCode, m.body)
	}
	if strings.Contains(m.body, "alice") || strings.Contains(m.body, b1.cookie("__Host-gatehouse").Value) {
		t.Fatal("metrics carry user data")
	}
	wantJSONError(t, call("GET", "/admin/sessions?sub=alice", ""), 401, "unauthorized", "")
	wantJSONError(t, call("GET", "/admin/sessions?sub=alice", "wrong"), 401, "unauthorized", "")
	r := call("GET", "/admin/sessions?sub=alice", "admin-secret-token")
	wantStatus(t, r, 200)
	list := decode(t, r)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("admin sees %d sessions", len(list))
	}
	sid := list[0].(map[string]any)["sid"].(string)
	wantStatus(t, call("DELETE", "/admin/sessions/"+sid, "admin-secret-token"), 204)
	wantStatus(t, call("DELETE", "/admin/sessions/"+sid, "admin-secret-token"), 404)
	r = call("DELETE", "/admin/sessions?sub=alice", "admin-secret-token")
	wantStatus(t, r, 200)
	if decode(t, r)["ended"] != float64(1) {
		t.Fatalf("ended = %v", decode(t, r)["ended"])
	}
	wantStatus(t, b1.api("GET", "/bff/user"), 401)
	wantStatus(t, b2.api("GET", "/bff/user"), 401)

	// Without a token configured the admin API does not exist.
	e2 := newEnv(t)
	admin2 := httptest.NewServer(e2.gw.AdminHandler())
	defer admin2.Close()
	req, _ := http.NewRequest("GET", admin2.URL+"/admin/sessions?sub=alice", nil)
	req.Header.Set("Authorization", "Bearer ")
	res, _ := http.DefaultClient.Do(req)
	if res.StatusCode != 404 {
		t.Fatalf("admin API without a token: %d", res.StatusCode)
	}
}

func TestReadyzReportsProviderDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	issuer := down.URL
	down.Close()
	gw, err := gatehouse.New(gatehouse.Config{PublicURL: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler),
		Provider: gatehouse.ProviderConfig{Issuer: issuer, ClientID: "c", ClientSecret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	rec := httptest.NewRecorder()
	gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "provider") {
		t.Fatalf("/readyz with the provider down = %d %s", rec.Code, rec.Body)
	}
	// Logins fail with a clear 503 page, not a 500.
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/bff/login", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	gw.ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Fatalf("/bff/login with the provider down = %d %s", rec.Code, rec.Body)
	}
}
