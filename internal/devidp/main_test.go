package devidp

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

var issuerLine = regexp.MustCompile(`issuer (\S+) listening on (\S+)`)

// TestMainServes runs the command, fetches discovery from it and stops it.
func TestMainServes(t *testing.T) {
	cases := []struct {
		name       string
		args       func(t *testing.T) []string
		wantIssuer string // a prefix
		client     [2]string
		wantTTL    float64 // expires_in of a client_credentials token
	}{
		{
			name: "flags only",
			args: func(*testing.T) []string {
				return []string{"--listen", "127.0.0.1:0", "--client-id", "c", "--client-secret", "s",
					"--redirect-uri", testRedirectURI, "--access-token-ttl", "30s"}
			},
			wantIssuer: "http://127.0.0.1:", client: [2]string{"c", "s"}, wantTTL: 30,
		},
		{
			name: "config file with flags on top",
			args: func(t *testing.T) []string {
				return []string{"--config", writeFile(t, exampleYAML), "--listen", "127.0.0.1:0", "--issuer", "http://localhost:1234/idp"}
			},
			wantIssuer: "http://localhost:1234/idp", client: [2]string{testClientID, testClientSecret}, wantTTL: 60,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stdout, stderr testutil.SyncBuffer
			code := make(chan int, 1)
			go func() { code <- Main(ctx, tc.args(t), &stdout, &stderr) }()

			var issuer, addr string
			deadline := time.Now().Add(10 * time.Second)
			for issuer == "" {
				if m := issuerLine.FindStringSubmatch(stdout.String()); m != nil {
					issuer, addr = m[1], m[2]
				}
				select {
				case c := <-code:
					t.Fatalf("Main returned %d early; stderr:\n%s", c, stderr.String())
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("Main did not start; stdout %q stderr %q", stdout.String(), stderr.String())
				}
			}
			if !strings.HasPrefix(issuer, tc.wantIssuer) || !strings.Contains(stdout.String(), devNotice) {
				t.Errorf("stdout = %q, want issuer %s… and the notice", stdout.String(), tc.wantIssuer)
			}
			// Discovery lives at the issuer's path, whatever host name the issuer uses.
			path := strings.TrimPrefix(strings.TrimSuffix(issuer, "/"), "http://")
			path = path[strings.Index(path+"/", "/"):]
			r := do(t, http.DefaultClient, mustRequest(t, http.MethodGet, "http://"+addr+path+"/.well-known/openid-configuration"))
			if r.status != http.StatusOK || r.json(t)["issuer"] != issuer {
				t.Errorf("discovery: %d %s", r.status, r.body)
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path+"/token", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(tc.client[0], tc.client[1])
			if r := do(t, http.DefaultClient, req); r.status != http.StatusOK || r.json(t)["expires_in"] != tc.wantTTL {
				t.Errorf("token: %d %s, want expires_in %v", r.status, r.body, tc.wantTTL)
			}

			cancel()
			select {
			case c := <-code:
				if c != 0 {
					t.Errorf("exit code %d after shutdown, want 0; stderr:\n%s", c, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Main did not return after ctx was cancelled")
			}
		})
	}
}

func TestMainRefuses(t *testing.T) {
	cases := []struct {
		name       string
		args       func(t *testing.T) []string
		wantCode   int
		wantStderr []string
		wantStdout []string
	}{
		{name: "non-loopback listen", args: func(*testing.T) []string {
			return []string{"--listen", "0.0.0.0:0", "--client-id", "c", "--client-secret", "s"}
		}, wantCode: 1, wantStderr: []string{"not a loopback address", "--insecure-allow-any-address"}},
		{name: "non-loopback listen among other problems", args: func(*testing.T) []string {
			return []string{"--listen", "0.0.0.0:0", "--client-id", "c"}
		}, wantCode: 1, wantStderr: []string{"not a loopback address", "secret: must not be empty"}},
		{name: "no client", args: func(*testing.T) []string {
			return []string{"--listen", "127.0.0.1:0"}
		}, wantCode: 1, wantStderr: []string{"at least one client"}},
		{name: "every problem at once", args: func(*testing.T) []string {
			return []string{"--listen", "127.0.0.1:0", "--issuer", "ftp://x", "--client-id", "c", "--redirect-uri", "/cb"}
		}, wantCode: 1, wantStderr: []string{"scheme must be http or https", "secret: must not be empty", "redirect_uris[0]"}},
		{name: "config with an unknown key", args: func(t *testing.T) []string {
			return []string{"--config", writeFile(t, exampleYAML+"colour: red\n"), "--listen", "127.0.0.1:0"}
		}, wantCode: 1, wantStderr: []string{"colour"}},
		{name: "unknown flag", args: func(*testing.T) []string { return []string{"--frobnicate"} }, wantCode: 2, wantStderr: []string{"frobnicate"}},
		{name: "client flags without --client-id", args: func(*testing.T) []string {
			return []string{"--client-secret", "s"}
		}, wantCode: 2, wantStderr: []string{"need --client-id"}},
		{name: "stray argument", args: func(*testing.T) []string { return []string{"serve"} }, wantCode: 2, wantStderr: []string{"unexpected arguments"}},
		{name: "help", args: func(*testing.T) []string { return []string{"-h"} }, wantCode: 0, wantStdout: []string{"-insecure-allow-any-address", devNotice}}, // asked for: on stdout
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Should Main start serving after all, the deadline stops it and
			// its exit code 0 fails the test instead of hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var stdout, stderr testutil.SyncBuffer
			if code := Main(ctx, tc.args(t), &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			for _, want := range tc.wantStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}
