package gatehouse_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// TestHealthHandler: the health listener answers /healthz and /readyz (GET and HEAD)
// exactly as the admin listener does, refuses other methods on them, and is 404 for
// everything else, the metrics and the admin API included, even with an admin token.
func TestHealthHandler(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.Admin.Token = "admin-secret-token" })
	health := httptest.NewServer(e.gw.HealthHandler())
	defer health.Close()
	call := func(method, path string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, health.URL+path, nil)
		req.Header.Set("Authorization", "Bearer admin-secret-token")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}

	if code, h, body := call("GET", "/healthz"); code != 200 || body != "ok\n" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /healthz = %d %q %q", code, h.Get("Content-Type"), body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for code, _, _ := call("GET", "/readyz"); code != 200 && time.Now().Before(deadline); code, _, _ = call("GET", "/readyz") {
		time.Sleep(50 * time.Millisecond)
	}
	code, h, body := call("GET", "/readyz")
	var ready map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &ready) != nil || ready["ready"] != true || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /readyz = %d %q %q", code, h.Get("Content-Type"), body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _, body := call("HEAD", p); code != 200 || body != "" {
			t.Errorf("HEAD %s = %d %q", p, code, body)
		}
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			if code, h, _ := call(m, p); code != http.StatusMethodNotAllowed || !strings.Contains(h.Get("Allow"), "GET") {
				t.Errorf("%s %s = %d (Allow %q); want 405", m, p, code, h.Get("Allow"))
			}
		}
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/metrics"}, {"GET", "/admin/sessions?sub=alice"}, {"DELETE", "/admin/sessions?sub=alice"},
		{"DELETE", "/admin/sessions/x"}, {"GET", "/"}, {"GET", "/healthz/"}, {"GET", "/readyz/x"},
		{"GET", "/bff/user"}, {"GET", "/bff/login"}, {"GET", "/api/x"},
	} {
		if code, _, body := call(r.method, r.path); code != 404 {
			t.Errorf("%s %s on the health listener = %d %q; want 404", r.method, r.path, code, body)
		}
	}
}

// TestHealthHandlerReadyzDetail: /readyz on the health listener has the same 503 detail
// as on the admin listener.
func TestHealthHandlerReadyzDetail(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	issuer := down.URL
	down.Close()
	gw, err := gatehouse.New(gatehouse.Config{PublicURL: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler),
		Provider: gatehouse.ProviderConfig{Issuer: issuer, ClientID: "c", ClientSecret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	get := func(h http.Handler) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec
	}
	health, admin := get(gw.HealthHandler()), get(gw.AdminHandler())
	var detail struct {
		Ready    *bool    `json:"ready"`
		Problems []string `json:"problems"`
	}
	if health.Code != 503 || json.Unmarshal(health.Body.Bytes(), &detail) != nil || detail.Ready == nil || *detail.Ready ||
		len(detail.Problems) == 0 || !strings.Contains(health.Body.String(), "provider") {
		t.Fatalf("/readyz on the health listener with the provider down = %d %s", health.Code, health.Body)
	}
	// The problems' text follows discovery's progress; the shape is the same.
	if admin.Code != health.Code || !strings.Contains(admin.Body.String(), `"problems":["provider: `) || !strings.Contains(health.Body.String(), `"problems":["provider: `) {
		t.Fatalf("/readyz differs: health %d %s, admin %d %s", health.Code, health.Body, admin.Code, admin.Body)
	}
}
