package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckMinimalConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GH_TEST_SECRET", "s3cret")
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret: ${GH_TEST_SECRET}
`)
	code, out, errOut := runCmd(t, "check", "--config", p)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("check = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	l, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if l.gw.Provider.ClientSecret != "s3cret" || l.storeURL != "memory" {
		t.Fatalf("loaded %+v", l.gw.Provider)
	}
}

func TestCheckListsEveryProblemWithFieldPaths(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provder:
  issuer: x
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret: ${GH_TEST_UNSET_VARIABLE}
  clock_skew: soon
  scopes: openid
session:
  idle_timeout: 30 minutes
routes:
  - path: /api/
    upstream: http://127.0.0.1:9001
    tokn: user
    require:
      - claim: groups
        contains: [admin]
        extra: 1
cookie:
  same_site: none
`)
	code, _, errOut := runCmd(t, "check", "--config", p)
	if code != 1 {
		t.Fatalf("check of a broken file = %d", code)
	}
	for _, want := range []string{
		`provder: unknown field (line 3); did you mean "provider"?`,
		"provider.client_secret: environment variable GH_TEST_UNSET_VARIABLE is not set",
		`provider.clock_skew: "soon" is not a duration`,
		"provider.scopes: must be a list",
		`session.idle_timeout: "30 minutes" is not a duration`,
		`routes[0].tokn: unknown field`,
		`did you mean "token"?`,
		"routes[0].require[0].extra: unknown field",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q in:\n%s", want, errOut)
		}
	}
	if strings.Count(errOut, "\n  ") < 8 {
		t.Errorf("not every problem was listed at once:\n%s", errOut)
	}
}

func TestCheckSemanticProblemsAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "secret.txt", "from-file\n")
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://example.com
provider:
  issuer: http://127.0.0.1:9000
  client_id: bff
  client_secret_file: secret.txt
admin:
  listen: 0.0.0.0:9090
  token: a
  token_file: secret.txt
cookie:
  same_site: none
session:
  store: mongodb://x
  keys: [not-base64!]
`)
	code, _, errOut := runCmd(t, "check", "--config", p)
	if code != 1 {
		t.Fatalf("check = %d", code)
	}
	for _, want := range []string{
		"admin.token: set either token or token_file, not both",
		"admin.listen: \"0.0.0.0:9090\" is not a loopback address",
		"cookie.same_site:",
		"session.store:",
		"session.keys[0]: must be 32 random bytes",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q in:\n%s", want, errOut)
		}
	}

	p = writeFile(t, dir, "ok.yaml", `
public_url: http://example.com
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret_file: secret.txt}
`)
	code, _, errOut = runCmd(t, "check", "--config", p)
	if code != 1 || !strings.Contains(errOut, "public_url: http is only allowed on a loopback host") {
		t.Fatalf("library validation not reported: %d %s", code, errOut)
	}
	if strings.Contains(errOut, "from-file") {
		t.Fatal("a secret's value appears in the error output")
	}
	p = writeFile(t, dir, "ok2.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret_file: secret.txt}
`)
	l, err := loadConfig(p)
	if err != nil || l.gw.Provider.ClientSecret != "from-file" {
		t.Fatalf("client_secret_file: %v %q", err, l.gw.Provider.ClientSecret)
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("GH_A", "alpha")
	t.Setenv("GH_EMPTY", "")
	for in, want := range map[string]string{
		"${GH_A}":          "alpha",
		"x-${GH_A}-y":      "x-alpha-y",
		"${GH_NOPE:-dflt}": "dflt",
		"${GH_EMPTY:-d}":   "d",
		"$${GH_A}":         "${GH_A}",
		"plain $HOME":      "plain $HOME",
	} {
		got, missing := expandEnv(in)
		if got != want || len(missing) != 0 {
			t.Errorf("expandEnv(%q) = %q %v, want %q", in, got, missing, want)
		}
	}
	if _, missing := expandEnv("${GH_NOPE}"); len(missing) != 1 || missing[0] != "GH_NOPE" {
		t.Errorf("missing variable not reported: %v", missing)
	}
}

func TestCommands(t *testing.T) {
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "gatehouse ") {
		t.Fatalf("version = %d %q", code, out)
	}
	code, out, _ := runCmd(t, "keygen")
	if code != 0 || len(strings.TrimSpace(out)) != 44 {
		t.Fatalf("keygen = %d %q", code, out)
	}
	// --derived prints the key a configuration without session.keys seals with.
	path := writeFile(t, t.TempDir(), "derived.yaml", "public_url: https://app.example\nprovider:\n  issuer: https://id.example\n  client_id: bff\n  client_secret: s3cret\n")
	l, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "keygen", "--derived", "--config", path)
	if want := base64.StdEncoding.EncodeToString(l.gw.DerivedServerKey()); code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("keygen --derived = %d %q, want %q", code, out, want)
	}
	if code, _, errOut := runCmd(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "check", "--config", "/nonexistent.yaml"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file = %d %q", code, errOut)
	}
}

func TestStoreURLs(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"memory", true},
		{"bolt:///var/lib/gatehouse/sessions.db", true},
		{"bolt://sessions.db", true},
		{"bolt://", false},
		{"redis://127.0.0.1:6379/0", true},
		{"rediss://user:pw@redis.example:6380/1", true},
		{"redis-sentinel://h1:26379,h2:26379/mymaster?db=2", true},
		{"redis-cluster://h1:7000,h2:7001", true},
		{"redis://h:6379/0?tyop=1", false},
		{"mongodb://x", false},
		{"sessions.db", false},
	} {
		var probs problems
		checkStoreURL(tc.url, &probs)
		if (len(probs) == 0) != tc.ok {
			t.Errorf("%s: problems %v, want ok=%v", tc.url, probs, tc.ok)
		}
		for _, p := range probs {
			if strings.Contains(p, ":pw@") {
				t.Errorf("a password is printed: %s", p)
			}
		}
	}
}

func TestCheckWarnsAboutEveryWeakerOption(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret: s, skip_userinfo: true}
cookie: {name: gatehouse, allow_non_host_prefix: true, same_site: lax}
csrf: {trusted_origins: ["https://partner.example"]}
websocket_origins: ["https://partner.example"]
admin: {listen: "0.0.0.0:9090", allow_non_loopback: true}
rate_limits: {insecure_disable: true}
insecure_diagnostics: true
`)
	code, out, errOut := runCmd(t, "check", "--config", p)
	if code != 0 {
		t.Fatalf("check = %d: %s", code, errOut)
	}
	for _, w := range []string{"cookie.allow_non_host_prefix", "cookie.same_site=lax", "csrf.trusted_origins", "websocket_origins",
		"provider.skip_userinfo", "admin.allow_non_loopback", "rate_limits.insecure_disable", "insecure_diagnostics"} {
		if !strings.Contains(out, "warning: "+w+" weakens the defaults") {
			t.Errorf("check does not warn about %s:\n%s", w, out)
		}
	}
}

func TestHardeningKeys(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret: s}
session: {bind_user_agent: true, bind_ipv4_prefix: 24, bind_ipv6_prefix: 64}
rate_limits:
  login: {per_minute: 10, burst: 5}
  admin: {per_minute: 2.5, burst: 1}
audit_log: {output: audit.log}
routes:
  - {path: /a/, upstream: "http://127.0.0.1:1", max_body: 512KiB}
  - {path: /b/, upstream: "http://127.0.0.1:1", max_body: 2048}
`)
	l, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	c := l.gw
	if !c.Session.BindUserAgent || c.Session.BindIPv4Prefix != 24 || c.Session.BindIPv6Prefix != 64 ||
		c.RateLimits.Login.PerMinute != 10 || c.RateLimits.Login.Burst != 5 || c.RateLimits.Admin.PerMinute != 2.5 {
		t.Fatalf("loaded %+v %+v", c.Session, c.RateLimits)
	}
	if c.Routes[0].MaxBody != 512<<10 || c.Routes[1].MaxBody != 2048 {
		t.Fatalf("max_body = %d, %d", c.Routes[0].MaxBody, c.Routes[1].MaxBody)
	}
	if l.auditPath != filepath.Join(dir, "audit.log") {
		t.Fatalf("audit path %q", l.auditPath)
	}
	if _, err := os.Stat(l.auditPath); err == nil {
		t.Fatal("check created the audit log file")
	}

	bad := writeFile(t, dir, "bad.yaml", `
public_url: https://app.example.com
provider: {issuer: "https://id.example.com", client_id: bff, client_secret: s}
session: {bind_ipv4_prefix: 40}
rate_limits:
  login: {per_minute: -1, burst: many}
  callbak: {}
insecure_diagnostics: true
routes:
  - {path: /a/, upstream: "http://127.0.0.1:1", max_body: lots}
`)
	code, _, errOut := runCmd(t, "check", "--config", bad)
	for _, want := range []string{"routes[0].max_body", "session.bind_ipv4_prefix", "rate_limits.login.per_minute", "rate_limits.login.burst",
		"rate_limits.callbak: unknown field", "insecure_diagnostics: is only allowed"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("check = %d, want a problem with %s:\n%s", code, want, errOut)
		}
	}
}

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"ready":true}`))
	}))
	defer srv.Close()
	if code, out, _ := runCmd(t, "probe", srv.URL); code != 0 || !strings.Contains(out, "200 OK") {
		t.Fatalf("probe of a ready server = %d %q", code, out)
	}
	status = http.StatusServiceUnavailable
	if code, _, _ := runCmd(t, "probe", srv.URL); code != 1 {
		t.Fatalf("probe of an unready server = %d, want 1", code)
	}
	srv.Close()
	if code, _, errOut := runCmd(t, "probe", srv.URL); code != 1 || errOut == "" {
		t.Fatalf("probe of a closed port = %d %q", code, errOut)
	}
}

// A secret put in the wrong field by an environment variable is not echoed.
func TestEnvValuesNotEchoedInProblems(t *testing.T) {
	t.Setenv("GH_TEST_LEAKY", "super-secret-value")
	p := writeFile(t, t.TempDir(), "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret: s, clock_skew: "${GH_TEST_LEAKY}", skip_userinfo: "${GH_TEST_LEAKY}"}
session: {idle_timeout: "${GH_TEST_LEAKY}"}
`)
	code, out, errOut := runCmd(t, "check", "--config", p)
	if code != 1 || !strings.Contains(errOut, "session.idle_timeout: the value from the environment variable is not valid") ||
		!strings.Contains(errOut, "provider.skip_userinfo") {
		t.Fatalf("check = %d: %s", code, errOut)
	}
	if strings.Contains(out+errOut, "super-se") {
		t.Fatalf("the problems echo the environment value:\n%s", errOut)
	}
}

func TestRequestHeaderKeys(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret: s}
strip_request_headers: [X-Tenant, X-Debug-*]
allow_request_headers: [Remote-User]
`)
	l, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.gw.StripRequestHeaders; len(got) != 2 || got[0] != "X-Tenant" || got[1] != "X-Debug-*" {
		t.Errorf("strip_request_headers loaded as %q", got)
	}
	if got := l.gw.AllowRequestHeaders; len(got) != 1 || got[0] != "Remote-User" {
		t.Errorf("allow_request_headers loaded as %q", got)
	}
	code, out, errOut := runCmd(t, "check", "--config", p)
	if code != 0 || !strings.Contains(out, "warning: allow_request_headers weakens the defaults") {
		t.Errorf("check = %d, want a warning about allow_request_headers:\n%s%s", code, out, errOut)
	}

	bad := writeFile(t, dir, "bad.yaml", `
public_url: http://127.0.0.1:9080
provider: {issuer: "http://127.0.0.1:9000", client_id: bff, client_secret: s}
strip_request_headers: ["X-*-Role"]
allow_request_headers: [X-HTTP-Method-Override, Accept]
`)
	code, _, errOut = runCmd(t, "check", "--config", bad)
	for _, want := range []string{`strip_request_headers: "X-*-Role" is not a header name`,
		`allow_request_headers: "X-HTTP-Method-Override" is a forwarding or method/path override header`,
		`allow_request_headers: "Accept" is not removed anyway`} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("check = %d, want the problem %s:\n%s", code, want, errOut)
		}
	}
}
