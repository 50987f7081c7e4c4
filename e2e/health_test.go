package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EHealthListener: `health.listen` serves /healthz and /readyz, and nothing else,
// from the real binary, with no weaker-option warning; `gatehouse probe` works against
// it; and while the process drains, its /readyz says so (it closes after the public
// listener).
func TestE2EHealthListener(t *testing.T) {
	s := startStack(t, stackOpts{extraYAML: "server: {shutdown_delay: 2s}\n" + fmt.Sprintf("health: {listen: \"127.0.0.1:%d\"}\n", freePort(t))})
	var healthURL string
	for _, line := range strings.Split(s.gw.Logs(), "\n") {
		if strings.Contains(line, `"msg":"health listener`) {
			var rec struct{ Address string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			healthURL = "http://" + rec.Address
		}
	}
	if healthURL == "" {
		t.Fatalf("no health listener in the logs:\n%s", s.gw.Logs())
	}
	for _, line := range strings.Split(s.gw.Logs(), "\n") {
		if strings.Contains(line, "weaker security option") || strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "health") {
			t.Fatalf("the health listener caused a warning: %s", line)
		}
	}
	get := func(base, method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	if code, body := get(healthURL, "GET", "/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("health listener /healthz = %d %q", code, body)
	}
	if code, body := get(healthURL, "GET", "/readyz", ""); code != 200 || strings.TrimSpace(body) != `{"ready":true}` {
		t.Fatalf("health listener /readyz = %d %q", code, body)
	}
	// The admin listener has the metrics and the admin API; the health listener has not.
	for _, r := range []struct{ method, path string }{{"GET", "/metrics"}, {"GET", "/admin/sessions?sub=alice"}, {"DELETE", "/admin/sessions?sub=alice"}, {"GET", "/bff/user"}} {
		if code, _ := get(s.gw.AdminURL, r.method, r.path, "e2e-admin-token"); code != 200 && r.path != "/bff/user" {
			t.Fatalf("admin listener %s %s = %d", r.method, r.path, code)
		}
		if code, body := get(healthURL, r.method, r.path, "e2e-admin-token"); code != 404 {
			t.Errorf("health listener %s %s = %d %q; want 404", r.method, r.path, code, body)
		}
	}
	if code, _ := get(healthURL, "POST", "/readyz", ""); code != 405 {
		t.Errorf("health listener POST /readyz = %d; want 405", code)
	}
	out, err := exec.Command(binary, "probe", healthURL+"/readyz").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "200 OK") {
		t.Fatalf("gatehouse probe %s/readyz: %v %s", healthURL, err, out)
	}

	// Draining: /readyz on the health listener turns 503 while the process still serves.
	s.gw.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "/readyz on the health listener to report draining", func() bool {
		code, body := get(healthURL, "GET", "/readyz", "")
		return code == 503 && strings.Contains(body, `"ready":false`) && strings.Contains(body, "draining")
	})
	if code, _ := get(healthURL, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("health listener /healthz while draining = %d", code)
	}
	s.gw.Stop()
}
