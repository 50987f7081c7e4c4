package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EAccessLogFile runs the binary with log.access: file: one JSON line per request,
// with the request id the client got back and the upstream saw, the path without its
// query, and no secret (cookie, token, code, session handle).
func TestE2EAccessLogFile(t *testing.T) {
	dir := t.TempDir()
	accessPath := filepath.Join(dir, "access.log")
	s := startStack(t, stackOpts{logYAML: "  access: file\n  access_file: " + accessPath + "\n"})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)

	lines := func() []map[string]any {
		t.Helper()
		data, err := os.ReadFile(accessPath)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("access line is not JSON: %q", line)
			}
			out = append(out, m)
		}
		return out
	}
	before := len(lines())
	if before < 2 { // /bff/login and /bff/callback at least
		t.Fatalf("%d access lines after a login", before)
	}

	var ids []string
	r := b.do("GET", "/api/orders?access_token=in-the-query", nil, "X-CSRF", "1")
	expect(t, r, 200)
	ids = append(ids, r.Header.Get("X-Request-Id"))
	if got := s.api.last(t).Get("X-Request-Id"); got != ids[0] {
		t.Fatalf("upstream saw X-Request-Id %q, client got %q", got, ids[0])
	}
	r = b.api("GET", "/bff/user")
	expect(t, r, 200)
	ids = append(ids, r.Header.Get("X-Request-Id"))
	sid, _ := jsonBody(t, r)["sid"].(string)
	r = b.api("GET", "/bff/no-such-endpoint")
	expect(t, r, 404)
	ids = append(ids, r.Header.Get("X-Request-Id"))
	if jsonBody(t, r)["request_id"] != ids[2] {
		t.Fatalf("error body %s lacks the request id %s", r.Body, ids[2])
	}

	all := lines()
	if len(all) != before+3 {
		t.Fatalf("%d access lines for 3 requests", len(all)-before)
	}
	hash := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for i, m := range all[before:] {
		if m["log"] != "access" || m["msg"] != "access" || m["request_id"] != ids[i] || m["time"] == nil ||
			m["ip"] != "127.0.0.1" || m["duration_ms"] == nil {
			t.Fatalf("access line %d: %v (request id %s)", i, m, ids[i])
		}
	}
	// The session is in the lines of the requests that used it, as a hash.
	for _, m := range all[before : before+2] {
		if h, _ := m["session"].(string); !hash.MatchString(h) {
			t.Fatalf("access line without the session's hash: %v", m)
		}
	}
	if m := all[before]; m["path"] != "/api/orders" || m["route"] != "/api/" || m["status"] != float64(200) || m["upstream_ms"] == nil {
		t.Fatalf("proxied request's line: %v", m)
	}
	if m := all[before+2]; m["status"] != float64(404) || m["upstream_ms"] != nil {
		t.Fatalf("404's line: %v", m)
	}

	data, _ := os.ReadFile(accessPath)
	secrets := append(s.idp.IssuedSecrets(t), "in-the-query", sid, "s3cret", "e2e-admin-token")
	u, _ := url.Parse(s.gw.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		secrets = append(secrets, c.Value)
	}
	for _, secret := range secrets {
		if secret != "" && strings.Contains(string(data), secret) {
			t.Fatalf("the access log contains a secret (%.8s…)", secret)
		}
	}
	if info, _ := os.Stat(accessPath); info.Mode().Perm() != 0o600 {
		t.Fatalf("access log mode %v, want 0600", info.Mode().Perm())
	}
	// No duration in nanoseconds in the process's own logs either.
	if ns := regexp.MustCompile(`"[a-z_]*(retry|timeout|delay|drain|duration|_in)[a-z_]*":\d{7,}`).FindString(s.gw.Logs()); ns != "" {
		t.Fatalf("a duration in nanoseconds in the logs: %s", ns)
	}

	// logrotate: move the file away, SIGHUP, and new lines go to a new file.
	os.Rename(accessPath, accessPath+".1")
	s.gw.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the access log to be reopened", func() bool { _, err := os.Stat(accessPath); return err == nil })
	expect(t, b.api("GET", "/bff/user"), 200)
	waitFor(t, 5*time.Second, "a line in the new file", func() bool {
		data, _ := os.ReadFile(accessPath)
		return bytes.Contains(data, []byte(`"path":"/bff/user"`))
	})
}
