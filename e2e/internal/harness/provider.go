// Package harness runs the real OpenID Provider used by Gatehouse's end-to-end tests
// (npm oidc-provider, launched by e2e/provider/server.mjs) and drives it: control endpoints,
// the token log, and small helpers that fill in its login and logout forms over plain HTTP.
//
// The provider needs Node.js and the e2e npm packages: run `npm ci --prefix e2e` once from
// the repository root. Without them every test that starts a provider fails (it never skips).
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// Default credentials of the user created when ProviderConfig.Users is empty.
const (
	DefaultUser     = "alice"
	DefaultPassword = "wonderland"
)

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
)

// ProviderConfig describes one provider instance. Zero values get sensible defaults.
type ProviderConfig struct {
	// Port to listen on (127.0.0.1 only). 0 picks a free port.
	Port int
	// Issuer is the exact issuer identifier. Empty means "http://127.0.0.1:<port>" followed by
	// IssuerPath. A non-empty Issuer must name 127.0.0.1 or localhost and the same port, so it
	// needs a fixed Port.
	Issuer string
	// IssuerPath is appended to the default issuer: "/" gives an issuer with a trailing slash,
	// "/oidc" one with a path (the provider is then mounted under /oidc).
	IssuerPath string

	// Token lifetimes; 0 means the default (access 60s, ID 1h, refresh 24h, client credentials
	// 60s). Whole seconds only.
	AccessTokenTTL       time.Duration
	IDTokenTTL           time.Duration
	RefreshTokenTTL      time.Duration
	ClientCredentialsTTL time.Duration
	// SessionTTL is the provider's own login session lifetime (default 24h).
	SessionTTL time.Duration

	// DisableRefreshTokenRotation turns rotation off. By default every refresh returns a new
	// refresh token and reusing a rotated one revokes the whole grant.
	DisableRefreshTokenRotation bool

	// PAR is the provider's pushed authorization requests (RFC 9126): "" leaves
	// oidc-provider's default (offered: pushed_authorization_request_endpoint in
	// discovery), "off" turns the feature off, "required" makes every authorization
	// request need a request_uri (require_pushed_authorization_requests).
	PAR string

	// ExchangeAudiences are the audiences (or resources) a token exchange (RFC 8693,
	// grant type urn:ietf:params:oauth:grant-type:token-exchange, registered in the
	// provider for this) may issue tokens for. A client needs that grant type in its
	// GrantTypes to use it.
	ExchangeAudiences []string

	// DPoPNonce makes the provider (which does DPoP, RFC 9449, whenever a request carries
	// a proof) require a server nonce in every proof: a proof without it gets 400
	// use_dpop_nonce with a DPoP-Nonce header.
	DPoPNonce bool

	// ACRValues are the authentication context classes (acr) the provider offers, weakest
	// first (acr_values_supported). Empty: logins and tokens carry no acr. With them, a
	// login gets the first of the request's acr_values its user may reach (User.ACR), else
	// the user's weakest, and access tokens carry that acr (introspection, JWT payload).
	ACRValues []string

	// MTLS, when set, adds a TLS listener for RFC 8705 client authentication
	// (tls_client_auth against ClientCA, self_signed_tls_client_auth), named in
	// discovery as mtls_endpoint_aliases. Files are PEM.
	MTLS *MTLS

	// Clients registered at the provider (at least one). See BFFClient.
	Clients []Client
	// Users who can log in. Empty means one user, alice / wonderland (see DefaultUsers).
	Users []User
	// Resource servers for RFC 8707 resource indicators.
	Resources []Resource

	// JWKS, if set, is the provider's private signing key set (JSON). By default fresh RS256
	// and ES256 keys are generated at each start.
	JWKS json.RawMessage
}

// MTLS configures the provider's mutual-TLS listener.
type MTLS struct {
	Port      int    `json:"port"`
	Cert, Key string // the listener's certificate (for 127.0.0.1) and key
	ClientCA  string // the CA of tls_client_auth client certificates
}

// MarshalJSON names the files as server.mjs reads them.
func (m MTLS) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"port": m.Port, "cert": m.Cert, "key": m.Key, "clientCA": m.ClientCA})
}

// Client is the registration metadata of one client (OpenID Connect Dynamic Client
// Registration names in JSON).
type Client struct {
	ClientID                         string   `json:"client_id"`
	ClientSecret                     string   `json:"client_secret,omitempty"`
	RedirectURIs                     []string `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs           []string `json:"post_logout_redirect_uris,omitempty"`
	BackchannelLogoutURI             string   `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool     `json:"backchannel_logout_session_required,omitempty"`
	GrantTypes                       []string `json:"grant_types,omitempty"`
	ResponseTypes                    []string `json:"response_types,omitempty"`
	// TokenEndpointAuthMethod: client_secret_basic (default), client_secret_post,
	// client_secret_jwt, private_key_jwt (needs JWKS) or none.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Scope lists the scopes the client may request, space separated.
	Scope string `json:"scope,omitempty"`
	// JWKS is the client's public key set, for private_key_jwt.
	JWKS                     json.RawMessage `json:"jwks,omitempty"`
	IDTokenSignedResponseAlg string          `json:"id_token_signed_response_alg,omitempty"`
	// Extra metadata merged into the registration as is.
	Extra map[string]any `json:"-"`
}

// MarshalJSON merges Extra into the registration.
func (c Client) MarshalJSON() ([]byte, error) {
	type plain Client
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// User is an account at the provider. Login accepts the ID or the "email" claim.
type User struct {
	ID       string         `json:"id"`
	Password string         `json:"password"`
	Claims   map[string]any `json:"claims,omitempty"`
	// ACR lists the acr values (of ProviderConfig.ACRValues) this user can reach, weakest
	// first; empty means only the provider's weakest.
	ACR []string `json:"acr,omitempty"`
}

// Resource is a resource server (RFC 8707). Tokens for it are JWTs unless AccessTokenFormat
// is "opaque".
type Resource struct {
	Resource          string `json:"resource"`
	Scope             string `json:"scope,omitempty"`
	AccessTokenFormat string `json:"accessTokenFormat,omitempty"`
	// AccessTokenTTL in whole seconds; 0 means the provider's access token TTL.
	AccessTokenTTL time.Duration `json:"-"`
}

// BFFScope is the scope Gatehouse's test client may request.
const BFFScope = "openid profile email offline_access groups api:read"

// BFFClient is the usual Gatehouse registration for a gateway whose public URL is publicURL
// (no trailing slash): confidential client "bff" / "s3cret" with client_secret_basic, the
// /bff/callback redirect, /bff/logout/callback after logout and back-channel logout to
// /bff/backchannel with sid required.
func BFFClient(publicURL string) Client {
	publicURL = strings.TrimSuffix(publicURL, "/")
	return Client{
		ClientID:                         "bff",
		ClientSecret:                     "s3cret",
		RedirectURIs:                     []string{publicURL + "/bff/callback"},
		PostLogoutRedirectURIs:           []string{publicURL + "/bff/logout/callback"},
		BackchannelLogoutURI:             publicURL + "/bff/backchannel",
		BackchannelLogoutSessionRequired: true,
		GrantTypes:                       []string{"authorization_code", "refresh_token", "client_credentials"},
		TokenEndpointAuthMethod:          "client_secret_basic",
		Scope:                            BFFScope,
	}
}

// DefaultUsers is what a ProviderConfig without Users gets: alice (admin, staff) and bob
// (staff), passwords "wonderland" and "builder".
func DefaultUsers() []User {
	return []User{
		{ID: DefaultUser, Password: DefaultPassword, Claims: map[string]any{
			"email": "alice@example.com", "email_verified": true, "name": "Alice",
			"preferred_username": "alice", "groups": []string{"admin", "staff"},
		}},
		{ID: "bob", Password: "builder", Claims: map[string]any{
			"email": "bob@example.com", "email_verified": true, "name": "Bob",
			"preferred_username": "bob", "groups": []string{"staff"},
		}},
	}
}

// Provider is a running oidc-provider process.
type Provider struct {
	issuer     string
	port       int
	root       string
	configPath string
	tokenLog   string
	pid        int
	stderr     *testutil.SyncBuffer
	stop       func() error

	// final is the token log as it was when the provider stopped: the log lives in a
	// temporary directory that goes away with the test, and the e2e log audit reads every
	// provider's secrets after that.
	finalMu sync.Mutex
	final   []byte
	stopped bool
}

var (
	registryMu sync.Mutex
	registry   []*Provider
)

// AllProviders returns every provider started by this test binary so far, running or
// stopped, oldest first. Their IssuedTokens stay readable after they stopped (the token log
// is kept in memory at stop), so that a check at the end of a test can compare every secret
// any provider ever issued with, for example, every gateway's logs.
func AllProviders() []*Provider {
	registryMu.Lock()
	defer registryMu.Unlock()
	return append([]*Provider(nil), registry...)
}

// keepTokenLog reads the token log into memory, once, when the provider stops.
func (p *Provider) keepTokenLog() {
	p.finalMu.Lock()
	defer p.finalMu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	p.final, _ = os.ReadFile(p.tokenLog)
}

// Issuer is the provider's exact issuer identifier.
func (p *Provider) Issuer() string { return p.issuer }

// Port is the TCP port the provider listens on, on 127.0.0.1.
func (p *Provider) Port() int { return p.port }

// BaseURL is http://127.0.0.1:<port>, the origin of every provider URL.
func (p *Provider) BaseURL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// DiscoveryURL is the issuer without its trailing slash plus /.well-known/openid-configuration.
func (p *Provider) DiscoveryURL() string {
	return strings.TrimSuffix(p.issuer, "/") + "/.well-known/openid-configuration"
}

// PID is the node process id.
func (p *Provider) PID() int { return p.pid }

// TokenLogPath is the JSON-lines file the provider appends every issued secret to.
func (p *Provider) TokenLogPath() string { return p.tokenLog }

// Stop stops the provider now (SIGTERM to its PID, SIGKILL after 5s) and fails the test
// unless it exited cleanly. Later calls, and the automatic stop at cleanup, do nothing.
func (p *Provider) Stop(t testing.TB) {
	t.Helper()
	if err := p.stop(); err != nil {
		t.Fatalf("harness: stopping the provider: %v\nstderr:\n%s", err, p.Stderr())
	}
}

// Stderr is everything the provider process wrote to stderr so far.
func (p *Provider) Stderr() string { return p.stderr.String() }

// RepoRoot returns the module root: the nearest directory at or above the working directory
// that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("harness: getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("harness: no go.mod found at or above the working directory")
		}
		dir = parent
	}
}

// CheckNodeSetup fails the test, with instructions, when node or the e2e npm packages are
// missing. StartProvider calls it.
func CheckNodeSetup(t testing.TB) (root string) {
	t.Helper()
	root = RepoRoot(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("harness: node is not installed (or not in PATH): the e2e tests need Node.js 20+ and the e2e npm packages; install Node.js, then run `npm ci --prefix e2e` in %s", root)
	}
	for _, pkg := range []string{"oidc-provider", "playwright-core"} {
		if _, err := os.Stat(filepath.Join(root, "e2e", "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("harness: e2e/node_modules/%s is missing: run `npm ci --prefix e2e` in %s", pkg, root)
		}
	}
	return root
}

// StartProvider starts oidc-provider with cfg and stops it when the test ends. It fails the
// test if node or e2e/node_modules is missing (run `npm ci --prefix e2e`) or the provider does
// not become ready within 20 seconds.
func StartProvider(t testing.TB, cfg ProviderConfig) *Provider {
	t.Helper()
	root := CheckNodeSetup(t)
	if len(cfg.Clients) == 0 {
		t.Fatalf("harness: ProviderConfig.Clients is empty (see harness.BFFClient)")
	}
	if cfg.Issuer != "" && cfg.Port == 0 {
		t.Fatalf("harness: ProviderConfig.Issuer %q needs a fixed Port; use IssuerPath with a free port instead", cfg.Issuer)
	}

	// A port picked here may be taken by someone else before node binds it: try again then.
	attempts := 1
	if cfg.Port == 0 {
		attempts = 3
	}
	var lastErr error
	stalledOnce := false
	for i := 0; i < attempts; i++ {
		port := cfg.Port
		if port == 0 {
			port = freePort(t)
		}
		p, err := startProvider(t, root, cfg, port)
		if err == nil {
			return p
		}
		lastErr = err
		if errors.Is(err, errStalled) && !stalledOnce {
			// A provider that never announced itself once is logged with what it was doing and
			// started again; twice fails the test.
			stalledOnce = true
			t.Logf("harness: %v; starting the provider again", err)
			attempts++
			continue
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("harness: %v", lastErr)
	return nil
}

var (
	errAddrInUse = errors.New("address in use")
	errStalled   = errors.New("provider not ready")
)

type jsonConfig struct {
	Port                 int             `json:"port"`
	Issuer               string          `json:"issuer"`
	AccessTokenTTL       int             `json:"accessTokenTTL,omitempty"`
	IDTokenTTL           int             `json:"idTokenTTL,omitempty"`
	RefreshTokenTTL      int             `json:"refreshTokenTTL,omitempty"`
	ClientCredentialsTTL int             `json:"clientCredentialsTTL,omitempty"`
	SessionTTL           int             `json:"sessionTTL,omitempty"`
	RotateRefreshToken   bool            `json:"rotateRefreshToken"`
	PAR                  string          `json:"par,omitempty"`
	ExchangeAudiences    []string        `json:"exchangeAudiences,omitempty"`
	DPoPNonce            bool            `json:"dpopNonce,omitempty"`
	ACRValues            []string        `json:"acrValues,omitempty"`
	MTLS                 *MTLS           `json:"mtls,omitempty"`
	Clients              []Client        `json:"clients"`
	Users                []User          `json:"users"`
	Resources            []jsonResource  `json:"resources,omitempty"`
	TokenLog             string          `json:"tokenLog"`
	Control              bool            `json:"control"`
	ExitOnStdinClose     bool            `json:"exitOnStdinClose"`
	JWKS                 json.RawMessage `json:"jwks,omitempty"`
}

type jsonResource struct {
	Resource
	AccessTokenTTL int `json:"accessTokenTTL,omitempty"`
}

func seconds(d time.Duration) int { return int(d / time.Second) }

func startProvider(t testing.TB, root string, cfg ProviderConfig, port int) (*Provider, error) {
	t.Helper()
	dir := t.TempDir()

	issuer := cfg.Issuer
	if issuer == "" {
		issuer = fmt.Sprintf("http://127.0.0.1:%d%s", port, cfg.IssuerPath)
	}
	users := cfg.Users
	if len(users) == 0 {
		users = DefaultUsers()
	}
	jc := jsonConfig{
		Port:                 port,
		Issuer:               issuer,
		AccessTokenTTL:       seconds(cfg.AccessTokenTTL),
		IDTokenTTL:           seconds(cfg.IDTokenTTL),
		RefreshTokenTTL:      seconds(cfg.RefreshTokenTTL),
		ClientCredentialsTTL: seconds(cfg.ClientCredentialsTTL),
		SessionTTL:           seconds(cfg.SessionTTL),
		RotateRefreshToken:   !cfg.DisableRefreshTokenRotation,
		PAR:                  cfg.PAR,
		ExchangeAudiences:    cfg.ExchangeAudiences,
		DPoPNonce:            cfg.DPoPNonce,
		ACRValues:            cfg.ACRValues,
		MTLS:                 cfg.MTLS,
		Clients:              cfg.Clients,
		Users:                users,
		TokenLog:             filepath.Join(dir, "tokens.jsonl"),
		Control:              true,
		ExitOnStdinClose:     true,
		JWKS:                 cfg.JWKS,
	}
	for _, r := range cfg.Resources {
		jc.Resources = append(jc.Resources, jsonResource{Resource: r, AccessTokenTTL: seconds(r.AccessTokenTTL)})
	}
	data, err := json.MarshalIndent(jc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding provider config: %w", err)
	}
	configPath := filepath.Join(dir, "provider.json")
	if err := os.WriteFile(configPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("writing provider config: %w", err)
	}

	// SIGUSR2 makes node write a diagnostic report (its JavaScript stack among others): the
	// harness asks for one when the provider does not become ready in time.
	reportDir := filepath.Join(dir, "report")
	if err := os.Mkdir(reportDir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command("node", "--report-on-signal", "--report-signal=SIGUSR2", "--report-compact",
		"--report-directory="+reportDir, filepath.Join(root, "e2e", "provider", "server.mjs"), configPath)
	cmd.Dir = root
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	ready := make(chan string, 1)
	cmd.Stdout = &readyWriter{ready: ready, other: stderr}
	// The provider exits when this pipe closes, so it never outlives a test binary that dies
	// without running its cleanups.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting node: %w", err)
	}

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	p := &Provider{
		issuer:     issuer,
		port:       port,
		root:       root,
		configPath: configPath,
		tokenLog:   jc.TokenLog,
		pid:        cmd.Process.Pid,
		stderr:     stderr,
	}

	var (
		stopOnce sync.Once
		stopErr  error
	)
	stop := func() error {
		stopOnce.Do(func() {
			// Only this process, by its PID: SIGTERM, then SIGKILL if it lingers.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case stopErr = <-exited:
			case <-time.After(stopTimeout):
				_ = cmd.Process.Kill()
				<-exited
				stopErr = fmt.Errorf("provider did not exit within %s of SIGTERM and was killed", stopTimeout)
			}
			_ = stdin.Close()
			p.keepTokenLog()
		})
		return stopErr
	}
	p.stop = stop

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case got := <-ready:
		if got != issuer {
			_ = stop()
			return nil, fmt.Errorf("provider announced issuer %q, want %q\nstderr:\n%s", got, issuer, stderr.String())
		}
	case err := <-exited:
		exited <- err // let stop() see it
		_ = stop()
		if strings.Contains(stderr.String(), "EADDRINUSE") {
			return nil, fmt.Errorf("%w: port %d: %s", errAddrInUse, port, stderr.String())
		}
		return nil, fmt.Errorf("provider exited before it was ready (%v); if modules are missing run `npm ci --prefix e2e`\nstderr:\n%s", err, stderr.String())
	case <-timer.C:
		diagnosis := diagnoseStall(cmd.Process, reportDir)
		_ = stop()
		return nil, fmt.Errorf("%w after %s (port %d)\n%s\nstderr:\n%s", errStalled, readyTimeout, port, diagnosis, stderr.String())
	}

	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("provider %s stderr:\n%s", issuer, stderr.String())
		}
	})
	registryMu.Lock()
	registry = append(registry, p)
	registryMu.Unlock()
	return p, nil
}

// diagnoseStall describes a provider process that did not become ready: the machine's load,
// the process's scheduler state and, from a node diagnostic report, its JavaScript stack and
// open handles.
func diagnoseStall(proc *os.Process, reportDir string) string {
	var b strings.Builder
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "load average: %s", load)
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", proc.Pid)); err == nil {
		// The state is the field after the parenthesised command name.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) {
			fmt.Fprintf(&b, "node process %d state: %c\n", proc.Pid, stat[i+2])
		}
	}
	_ = proc.Signal(syscall.SIGUSR2)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(reportDir, "*.json"))
		if len(files) > 0 {
			time.Sleep(200 * time.Millisecond) // let node finish writing it
			data, err := os.ReadFile(files[0])
			if err != nil {
				break
			}
			var report struct {
				JavaScriptStack struct {
					Message string   `json:"message"`
					Stack   []string `json:"stack"`
				} `json:"javascriptStack"`
				LibuvHandles []struct {
					Type     string `json:"type"`
					IsActive bool   `json:"is_active"`
				} `json:"libuv"`
			}
			if err := json.Unmarshal(data, &report); err != nil {
				fmt.Fprintf(&b, "node report %s: %v\n", files[0], err)
				break
			}
			fmt.Fprintf(&b, "node JavaScript stack: %s\n  %s\n", report.JavaScriptStack.Message, strings.Join(report.JavaScriptStack.Stack, "\n  "))
			active := map[string]int{}
			for _, h := range report.LibuvHandles {
				if h.IsActive {
					active[h.Type]++
				}
			}
			fmt.Fprintf(&b, "node active libuv handles: %v\n", active)
			return b.String()
		}
		time.Sleep(100 * time.Millisecond)
	}
	// node writes the report from its event loop: none means JavaScript kept that busy.
	b.WriteString("node wrote no diagnostic report within 5s of SIGUSR2: its event loop is blocked\n")
	return b.String()
}

func freePort(t testing.TB) int { return FreePort(t) }

// FreePort returns a port on 127.0.0.1 that was free a moment ago, for a process the test
// starts next. It is taken below the kernel's ephemeral range (ip_local_port_range, from
// 32768 by default), where nothing that binds port 0, and no outgoing connection, can take
// it in the meantime, and it is never handed out twice in one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("harness: no free port in 20000-31999")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// readyWriter receives the provider's stdout: the "READY <issuer>" line goes to ready, anything
// else to other.
type readyWriter struct {
	ready   chan<- string
	other   io.Writer
	partial []byte
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimRight(string(w.partial[:i]), "\r")
		w.partial = w.partial[i+1:]
		if rest, ok := strings.CutPrefix(line, "READY "); ok {
			select {
			case w.ready <- rest:
			default:
			}
		} else {
			_, _ = w.other.Write([]byte("stdout: " + line + "\n"))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// control endpoints

// Stats are the provider's counters since start or the last Reset.
type Stats struct {
	// TokenRequests counts token endpoint requests by grant_type (authorization_code,
	// refresh_token, client_credentials always present), fault-injected ones included.
	TokenRequests map[string]int `json:"token_requests"`
	// TokenResponses counts token endpoint responses by HTTP status ("200", "400", "503", ...);
	// connections reset by the "reset" fault count under "reset".
	TokenResponses map[string]int `json:"token_responses"`
	// Revocations counts POSTs to the revocation endpoint.
	Revocations           int `json:"revocations"`
	Introspections        int `json:"introspections"`
	UserinfoRequests      int `json:"userinfo_requests"`
	AuthorizationRequests int `json:"authorization_requests"`
	// PushedRequests counts POSTs to the pushed authorization request endpoint.
	PushedRequests     int `json:"pushed_authorization_requests"`
	EndSessionRequests int `json:"end_session_requests"`
	Logins             int `json:"logins"`
	FailedLogins       int `json:"failed_logins"`
	// Backchannel lists every back-channel logout POST the provider made, in order.
	Backchannel []BackchannelCall `json:"backchannel"`
}

// BackchannelCall is one back-channel logout request made by the provider.
type BackchannelCall struct {
	ClientID string `json:"client_id"`
	// Status is the HTTP status the client answered, 0 if the request failed (see Error).
	Status int    `json:"status"`
	SID    string `json:"sid"`
	Sub    string `json:"sub"`
	URL    string `json:"url"`
	Error  string `json:"error,omitempty"`
}

var controlClient = &http.Client{Timeout: 15 * time.Second}

func (p *Provider) control(t testing.TB, method, path string, query url.Values, out any) {
	t.Helper()
	u := p.BaseURL() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, nil)
	if err != nil {
		t.Fatalf("harness: %s %s: %v", method, path, err)
	}
	resp, err := controlClient.Do(req)
	if err != nil {
		t.Fatalf("harness: %s %s: %v\nprovider stderr:\n%s", method, path, err, p.Stderr())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("harness: %s %s: status %d: %s", method, path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("harness: %s %s: decoding %q: %v", method, path, body, err)
		}
	}
}

// Stats reads the provider's counters.
func (p *Provider) Stats(t testing.TB) Stats {
	t.Helper()
	var s Stats
	p.control(t, http.MethodGet, "/__test/stats", nil, &s)
	return s
}

// Reset zeroes the counters (not the token endpoint mode, not the token log).
func (p *Provider) Reset(t testing.TB) {
	t.Helper()
	p.control(t, http.MethodPost, "/__test/reset", nil, nil)
}

// Token endpoint modes for SetTokenEndpointMode.
const (
	ModeNormal = "normal"
	// Mode503 answers 503 {"error":"temporarily_unavailable"}.
	Mode503 = "503"
	// Mode429 answers 429 {"error":"temporarily_unavailable"} with Retry-After: the
	// mode's delay in whole seconds, rounded up, at least 1.
	Mode429 = "429"
	// ModeReset drops the TCP connection (RST) without answering.
	ModeReset = "reset"
	// ModeDelay waits before handling the request normally.
	ModeDelay = "delay"
)

// SetTokenEndpointMode injects a fault on the token endpoint only: "normal", "503", "429",
// "reset" or "delay" (delay is the wait, for "delay", or the Retry-After, for "429"). It
// lasts until changed.
func (p *Provider) SetTokenEndpointMode(t testing.TB, mode string, delay time.Duration) {
	t.Helper()
	q := url.Values{"mode": {mode}}
	if delay > 0 {
		q.Set("ms", strconv.FormatInt(delay.Milliseconds(), 10))
	}
	p.control(t, http.MethodPost, "/__test/token-endpoint", q, nil)
}

// RevokeGrants revokes every grant of the account sub, and with them every token issued
// under those grants, as an administrator would. It returns how many grants there were.
// The account's provider login session stays.
func (p *Provider) RevokeGrants(t testing.TB, sub string) int {
	t.Helper()
	var out struct {
		Revoked int `json:"revoked"`
	}
	p.control(t, http.MethodPost, "/__test/revoke-grants", url.Values{"sub": {sub}}, &out)
	return out.Revoked
}

// EndSessions ends every provider login session of the account sub without a browser, as an
// administrator's "sign out everywhere" would: each client of each session with a
// backchannel_logout_uri gets a back-channel logout (done before this returns), the grants are
// revoked and the sessions deleted. It returns the number of sessions and of back-channel
// logout requests made.
func (p *Provider) EndSessions(t testing.TB, sub string) (sessions, backchannel int) {
	t.Helper()
	var out struct {
		Sessions    int `json:"sessions"`
		Backchannel int `json:"backchannel"`
	}
	p.control(t, http.MethodPost, "/__test/end-sessions", url.Values{"sub": {sub}}, &out)
	return out.Sessions, out.Backchannel
}

// IssuedSecret is one line of the token log.
type IssuedSecret struct {
	// Kind: access_token, refresh_token, id_token, authorization_code or logout_token.
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// IssuedTokens returns the token log: every secret the provider handed out, in order. After
// the provider stopped it returns the log as it was then.
func (p *Provider) IssuedTokens(t testing.TB) []IssuedSecret {
	t.Helper()
	var data []byte
	var err error
	p.finalMu.Lock()
	if p.stopped {
		data = p.final
	} else {
		data, err = os.ReadFile(p.tokenLog)
	}
	p.finalMu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("harness: reading token log: %v", err)
	}
	// Only whole lines: the provider may be appending one right now.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var out []IssuedSecret
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var s IssuedSecret
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("harness: token log line %q: %v", line, err)
		}
		out = append(out, s)
	}
	return out
}

// IssuedSecrets returns every value in the token log (access, refresh and ID tokens,
// authorization codes, logout tokens). Tests use it to prove that no response of Gatehouse's
// public listener, log line or cookie contains any of them.
func (p *Provider) IssuedSecrets(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, s := range p.IssuedTokens(t) {
		out = append(out, s.Value)
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// browser-less form driving

// Login performs the provider's login for an authorization request: it GETs authURL with
// client, follows redirects until it reaches the login form (also when the client's
// CheckRedirect stops earlier, as long as they stay on authURL's host), fills in user and
// password and submits the form with client. It returns the response to that POST; how far
// the redirects after it (resume, automatic consent, back to the redirect_uri) are followed is
// up to client.CheckRedirect. The caller closes the response body.
//
// A wrong password gives the login page again, with status 401.
func Login(t testing.TB, client *http.Client, authURL string, user, password string) *http.Response {
	t.Helper()
	form, pageURL := loadForm(t, client, authURL, func(f *htmlForm) bool { return f.has("password") }, "login form")
	values := form.values(nil)
	values.Set("login", user)
	values.Set("password", password)
	return submitForm(t, client, pageURL, form, values)
}

// AbortLogin loads the login page for authURL and presses Cancel: the provider then redirects
// to the client's redirect_uri with error=access_denied.
func AbortLogin(t testing.TB, client *http.Client, authURL string) *http.Response {
	t.Helper()
	form, pageURL := loadForm(t, client, authURL, func(f *htmlForm) bool { return f.hasButton("abort", "yes") }, "login page cancel button")
	return submitForm(t, client, pageURL, form, form.values(&formButton{name: "abort", value: "yes"}))
}

// ConfirmLogout loads the provider's end-session page at endSessionURL (RP-initiated logout,
// usually with id_token_hint, post_logout_redirect_uri and state) and submits its confirm form
// with logout=yes, which ends the provider session and sends back-channel logouts to every
// client of the session. It returns the response to that POST (303 to the
// post_logout_redirect_uri or the provider's "signed out" page, as client.CheckRedirect
// decides). The client must carry the provider's session cookie (the same jar as the login).
func ConfirmLogout(t testing.TB, client *http.Client, endSessionURL string) *http.Response {
	t.Helper()
	form, pageURL := loadForm(t, client, endSessionURL, func(f *htmlForm) bool { return f.has("xsrf") }, "logout confirm form")
	values := form.values(nil)
	values.Set("logout", "yes")
	return submitForm(t, client, pageURL, form, values)
}

// NewLoopbackJar returns a cookie jar that behaves like a browser on loopback addresses:
// net/http/cookiejar never sends Secure cookies over http, but browsers treat
// http://127.0.0.1 and http://localhost as secure contexts, so this jar stores and sends
// cookies for those hosts as if the scheme were https (Gatehouse's cookies are __Host- and
// Secure). Cookies are still per host, not per port, as in a browser.
func NewLoopbackJar() http.CookieJar { return testutil.NewLoopbackJar() }

// StopRedirectsAt is a CheckRedirect policy that follows redirects until the next one goes to
// a URL starting with prefix (for example a gateway's callback), and returns that redirect.
func StopRedirectsAt(prefix string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), prefix) {
			return http.ErrUseLastResponse
		}
		if len(via) >= 20 {
			return errors.New("stopped after 20 redirects")
		}
		return nil
	}
}

const maxPage = 1 << 20

// loadForm GETs pageURL (following same-host redirects by hand if the client does not) and
// returns the first form matching want, with the URL of the page it is on.
func loadForm(t testing.TB, client *http.Client, pageURL string, want func(*htmlForm) bool, what string) (*htmlForm, *url.URL) {
	t.Helper()
	start, err := url.Parse(pageURL)
	if err != nil {
		t.Fatalf("harness: bad URL %q: %v", pageURL, err)
	}
	current := pageURL
	for hops := 0; ; hops++ {
		resp, err := client.Get(current)
		if err != nil {
			t.Fatalf("harness: loading the %s: GET %s: %v", what, redact(current), err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxPage))
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := resp.Request.URL.Parse(loc)
			if err != nil || next.Host != start.Host || hops >= 20 {
				t.Fatalf("harness: loading the %s: redirected to %s instead", what, redact(loc))
			}
			current = next.String()
			continue
		}
		for _, f := range parseForms(string(body)) {
			if want(f) {
				return f, resp.Request.URL
			}
		}
		t.Fatalf("harness: no %s at %s (status %d):\n%s", what, redact(resp.Request.URL.String()), resp.StatusCode, snippet(body))
	}
}

func submitForm(t testing.TB, client *http.Client, pageURL *url.URL, form *htmlForm, values url.Values) *http.Response {
	t.Helper()
	action, err := pageURL.Parse(form.action)
	if err != nil {
		t.Fatalf("harness: bad form action %q: %v", form.action, err)
	}
	var resp *http.Response
	if strings.EqualFold(form.method, "post") {
		resp, err = client.PostForm(action.String(), values)
	} else {
		action.RawQuery = values.Encode()
		resp, err = client.Get(action.String())
	}
	if err != nil {
		t.Fatalf("harness: submitting the form to %s: %v", redact(action.String()), err)
	}
	return resp
}

// redact drops the query and fragment of a URL for error messages: they can hold codes and
// tokens.
func redact(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

func snippet(b []byte) string {
	const n = 2000
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// htmlForm is a form as a browser would submit it: its successful controls (inputs other than
// buttons, checked boxes, textareas, selects' first or selected option) and its buttons.
type htmlForm struct {
	action, method string
	fields         []formField
	buttons        []formButton
}

type formField struct{ name, value string }

type formButton struct{ name, value string }

func (f *htmlForm) has(name string) bool {
	for _, fl := range f.fields {
		if fl.name == name {
			return true
		}
	}
	return false
}

func (f *htmlForm) hasButton(name, value string) bool {
	for _, b := range f.buttons {
		if b.name == name && b.value == value {
			return true
		}
	}
	return false
}

// values are the form's fields plus the submitter (nil: the first submit button, if named).
func (f *htmlForm) values(submitter *formButton) url.Values {
	v := url.Values{}
	for _, fl := range f.fields {
		v.Add(fl.name, fl.value)
	}
	if submitter == nil && len(f.buttons) > 0 {
		submitter = &f.buttons[0]
	}
	if submitter != nil && submitter.name != "" {
		v.Set(submitter.name, submitter.value)
	}
	return v
}

var (
	formRe     = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form\s*>`)
	controlRe  = regexp.MustCompile(`(?is)<(input|button|textarea|select)\b([^>]*)>`)
	attrRe     = regexp.MustCompile(`(?s)([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+)))?`)
	closeTagRe = map[string]*regexp.Regexp{
		"textarea": regexp.MustCompile(`(?is)^(.*?)</textarea\s*>`),
		"select":   regexp.MustCompile(`(?is)^(.*?)</select\s*>`),
	}
	optionRe = regexp.MustCompile(`(?is)<option\b([^>]*)>([^<]*)`)
)

func parseAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		name := strings.ToLower(m[1])
		if _, dup := attrs[name]; dup {
			continue
		}
		attrs[name] = html.UnescapeString(m[2] + m[3] + m[4])
	}
	return attrs
}

// parseForms extracts the forms of a page. It is meant for the simple, well-formed pages of
// the test provider and Gatehouse, not for arbitrary HTML.
func parseForms(page string) []*htmlForm {
	var forms []*htmlForm
	for _, fm := range formRe.FindAllStringSubmatchIndex(page, -1) {
		attrs := parseAttrs(page[fm[2]:fm[3]])
		f := &htmlForm{action: attrs["action"], method: attrs["method"]}
		if f.method == "" {
			f.method = "get"
		}
		inner := page[fm[4]:fm[5]]
		for _, cm := range controlRe.FindAllStringSubmatchIndex(inner, -1) {
			tag := strings.ToLower(inner[cm[2]:cm[3]])
			a := parseAttrs(inner[cm[4]:cm[5]])
			name := a["name"]
			_, disabled := a["disabled"]
			if disabled {
				continue
			}
			switch tag {
			case "button":
				typ := strings.ToLower(a["type"])
				if typ == "" || typ == "submit" {
					f.buttons = append(f.buttons, formButton{name: name, value: a["value"]})
				}
			case "input":
				typ := strings.ToLower(a["type"])
				switch typ {
				case "submit", "image":
					f.buttons = append(f.buttons, formButton{name: name, value: a["value"]})
				case "button", "reset", "file":
				case "checkbox", "radio":
					if _, checked := a["checked"]; checked && name != "" {
						value, ok := a["value"]
						if !ok {
							value = "on"
						}
						f.fields = append(f.fields, formField{name, value})
					}
				default:
					if name != "" {
						f.fields = append(f.fields, formField{name, a["value"]})
					}
				}
			case "textarea":
				if m := closeTagRe["textarea"].FindStringSubmatch(inner[cm[1]:]); m != nil && name != "" {
					f.fields = append(f.fields, formField{name, html.UnescapeString(m[1])})
				}
			case "select":
				m := closeTagRe["select"].FindStringSubmatch(inner[cm[1]:])
				if m == nil || name == "" {
					continue
				}
				var chosen *formField
				for _, om := range optionRe.FindAllStringSubmatch(m[1], -1) {
					oa := parseAttrs(om[1])
					value, ok := oa["value"]
					if !ok {
						value = strings.TrimSpace(html.UnescapeString(om[2]))
					}
					if _, sel := oa["selected"]; sel || chosen == nil {
						chosen = &formField{name, value}
						if sel {
							break
						}
					}
				}
				if chosen != nil {
					f.fields = append(f.fields, *chosen)
				}
			}
		}
		forms = append(forms, f)
	}
	return forms
}
