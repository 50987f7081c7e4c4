package devidp

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleYAML is the example from docs/devidp.md.
const exampleYAML = `listen: 127.0.0.1:9000
access_token_ttl: 60s
clients:
  - id: gatehouse-demo
    secret: demo-secret
    redirect_uris: [http://127.0.0.1:9080/bff/callback]
    post_logout_redirect_uris: [http://127.0.0.1:9080/bff/logout/callback]
    backchannel_logout_uri: http://127.0.0.1:9080/bff/backchannel
users:
  alice: {name: Alice Liddell, email: alice@example.com, groups: [admin, staff]}
  bob:   {name: Bob, email: bob@example.com, groups: [staff]}
`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "devidp.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	cases := []struct {
		name    string
		content string // "" with missing: no file
		missing bool
		wantErr string // a substring; "" means success
	}{
		{name: "documented example", content: exampleYAML},
		{name: "every key", content: exampleYAML + "issuer: http://localhost:9000/idp\ninsecure_allow_any_address: false\nid_token_ttl: 2h\nrefresh_token_ttl: 48h\n"},
		{name: "unknown top-level key", content: exampleYAML + "issuerr: http://x\n", wantErr: "issuerr"},
		{name: "unknown client key", content: strings.Replace(exampleYAML, "secret:", "secrett:", 1), wantErr: "secrett"},
		{name: "duration without a unit", content: strings.Replace(exampleYAML, "60s", "60", 1), wantErr: `line 2: "60" is not a duration`},
		{name: "not a duration", content: strings.Replace(exampleYAML, "60s", "soon", 1), wantErr: "soon"},
		{name: "two documents", content: exampleYAML + "---\nlisten: 127.0.0.1:9001\n", wantErr: "single YAML document"},
		{name: "empty file", content: "", wantErr: "empty"},
		{name: "missing file", missing: true, wantErr: "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.yaml")
			if !tc.missing {
				path = writeFile(t, tc.content)
			}
			cfg, err := LoadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "devidp: ") {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				if tc.missing && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v does not wrap fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			want := Client{
				ID: "gatehouse-demo", Secret: "demo-secret",
				RedirectURIs:           []string{"http://127.0.0.1:9080/bff/callback"},
				PostLogoutRedirectURIs: []string{"http://127.0.0.1:9080/bff/logout/callback"},
				BackchannelLogoutURI:   "http://127.0.0.1:9080/bff/backchannel",
			}
			if len(cfg.Clients) != 1 || !reflect.DeepEqual(cfg.Clients[0], want) {
				t.Errorf("clients = %+v, want [%+v]", cfg.Clients, want)
			}
			if cfg.Listen != "127.0.0.1:9000" || cfg.AccessTokenTTL != 60*time.Second {
				t.Errorf("listen %q access_token_ttl %v", cfg.Listen, cfg.AccessTokenTTL)
			}
			alice := cfg.Users["alice"].Claims
			if alice["name"] != "Alice Liddell" || !reflect.DeepEqual(alice["groups"], []any{"admin", "staff"}) {
				t.Errorf("alice = %#v", alice)
			}
			if _, err := New(cfg); err != nil {
				t.Errorf("the loaded config is not valid: %v", err)
			}
		})
	}
	t.Run("every key is read", func(t *testing.T) {
		cfg, err := LoadConfig(writeFile(t, exampleYAML+"issuer: http://localhost:9000/idp\ninsecure_allow_any_address: true\nid_token_ttl: 2h\nrefresh_token_ttl: 48h\n"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Issuer != "http://localhost:9000/idp" || !cfg.InsecureAllowAnyAddress || cfg.IDTokenTTL != 2*time.Hour || cfg.RefreshTokenTTL != 48*time.Hour {
			t.Errorf("cfg = %+v", cfg)
		}
	})
}

// TestValidationListsEveryProblem: New reports all problems at once.
func TestValidationListsEveryProblem(t *testing.T) {
	cfg := Config{
		Listen:         "0.0.0.0:9000",
		Issuer:         "ftp://idp.example/?x=1",
		AccessTokenTTL: -time.Second,
		Clients: []Client{
			{ID: "a", Secret: "s", RedirectURIs: []string{"/relative"}},
			{ID: "a", PostLogoutRedirectURIs: []string{"http://x.example/#frag"}, BackchannelLogoutURI: "nope"},
			{Secret: "s"},
		},
		Users: map[string]User{
			"bad name": {},
			"eve":      {Claims: map[string]any{"sub": "root", "name": "Eve"}},
		},
	}
	wantProblems := []string{
		"refusing a non-loopback listen address",
		"issuer: \"ftp://idp.example/?x=1\": scheme must be http or https",
		"access_token_ttl: must not be negative",
		"clients[0].redirect_uris[0]",
		"clients[1].id: \"a\" is registered twice",
		"clients[1].secret: must not be empty",
		"clients[1].post_logout_redirect_uris[0]",
		"clients[1].backchannel_logout_uri",
		"clients[2].id: must not be empty",
		"users: name \"bad name\"",
		"users.eve: claim \"sub\"",
	}
	_, err := New(cfg)
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, ErrNonLoopbackListen) {
		t.Fatalf("error = %v, want ErrInvalidConfig wrapping ErrNonLoopbackListen", err)
	}
	var problems []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			problems = j.Unwrap()
		}
	}
	if len(problems) != len(wantProblems) {
		t.Errorf("got %d problems, want %d:\n%v", len(problems), len(wantProblems), err)
	}
	for _, want := range wantProblems {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "at least one client") {
		t.Errorf("New(Config{}) = %v, want the missing-client problem", err)
	}
}

func TestNonLoopbackListenRefused(t *testing.T) {
	cases := []struct {
		listen   string
		insecure bool
		wantErr  bool
	}{
		{listen: "127.0.0.1:9000"},
		{listen: "127.0.0.2:9000"},
		{listen: "[::1]:9000"},
		{listen: "localhost:9000"},
		{listen: "", wantErr: false}, // the default, 127.0.0.1:9000
		{listen: "0.0.0.0:9000", wantErr: true},
		{listen: ":9000", wantErr: true},
		{listen: "[::]:9000", wantErr: true},
		{listen: "192.0.2.10:9000", wantErr: true},
		{listen: "idp.example.com:9000", wantErr: true},
		{listen: "0.0.0.0:9000", insecure: true},
		{listen: ":9000", insecure: true},
	}
	for _, tc := range cases {
		t.Run(tc.listen, func(t *testing.T) {
			cfg := testConfig()
			cfg.Listen = tc.listen
			cfg.InsecureAllowAnyAddress = tc.insecure
			cfg.Issuer = "http://127.0.0.1:9000"
			cfg.Logger = slog.New(slog.DiscardHandler)
			_, err := New(cfg)
			if got := errors.Is(err, ErrNonLoopbackListen); got != tc.wantErr {
				t.Fatalf("New: %v; refused = %v, want %v", err, got, tc.wantErr)
			}
			if tc.wantErr && !strings.Contains(err.Error(), "--insecure-allow-any-address") {
				t.Errorf("the error does not say how to override it: %v", err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// TestInsecureOverride: overriding the loopback check logs a warning at
// startup and puts a red banner on every page.
func TestInsecureOverride(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(map[bool]string{false: "loopback", true: "insecure"}[insecure], func(t *testing.T) {
			var logs bytes.Buffer
			cfg := testConfig()
			cfg.Listen, cfg.InsecureAllowAnyAddress = "0.0.0.0:9000", insecure
			if !insecure {
				cfg.Listen = "127.0.0.1:9000"
			}
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			srv, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "INSECURE"); got != insecure {
				t.Errorf("startup warning logged = %v, want %v:\n%s", got, insecure, logs.String())
			}
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			for _, path := range []string{"/", "/sessions", "/authorize?client_id=nobody"} {
				r := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, ts.URL+path))
				if got := strings.Contains(r.body, `class="insecure"`); got != insecure {
					t.Errorf("%s: red banner shown = %v, want %v", path, got, insecure)
				}
			}
		})
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
