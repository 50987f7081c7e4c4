package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Peers are other software measured in the same rounds as the bare proxy and every
// gatehouse, with the same request, the same checks and the same CPU accounting (their
// whole process tree: nginx's or Apache's master and workers):
//
//   - nginx: proxy_pass with a fixed Authorization header, no authentication at all:
//     the practical limit of a proxy that adds a bearer token.
//   - modauth-shm, modauth-redis: Apache httpd with mod_auth_openidc, sessions in
//     shared memory or in Redis, logged in through the benchmark's provider with a real
//     authorization code flow; it passes the session's access token upstream.
//   - nginx-authreq (opt-in, issue 14): nginx with auth_request to a gatehouse's
//     forward-auth endpoint, /bff/auth. It needs that endpoint, which this branch's
//     gatehouse does not have yet: until it does, its first request fails and stops the
//     benchmark, so it is not among the default peers.
var (
	defaultPeers = []string{"nginx", "modauth-shm", "modauth-redis"}
	knownPeers   = []string{"nginx", "modauth-shm", "modauth-redis", "nginx-authreq"}
)

// Where Debian installs the peers (variables for the tests).
var (
	nginxBin      = "/usr/sbin/nginx"
	apacheBin     = "/usr/sbin/apache2"
	apacheModules = "/usr/lib/apache2/modules"
)

const modAuthCookie = "mod_auth_openidc_session"

// peer is one started peer.
type peer struct {
	name   string
	label  string
	url    string // its public origin
	p      *proc
	cookie string // the Cookie header's first pair, for the modauth peers
	token  string // the bearer the upstream must see
}

// parsePeers reads --peers: a comma-separated list, "none", or "all" (the defaults).
func parsePeers(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "none", "":
		return nil, nil
	case "all", "default":
		return defaultPeers, nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !contains(knownPeers, n) {
			return nil, fmt.Errorf("--peers: unknown peer %q (known: %s, or none)", n, strings.Join(knownPeers, ", "))
		}
		if !contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkPeerTools fails, with what to do, when a selected peer cannot start.
func checkPeerTools(peers []string) error {
	var missing []string
	need := func(peerName, path, pkg string) {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, fmt.Sprintf("peer %s needs %s (Debian package %s), which is missing", peerName, path, pkg))
		}
	}
	for _, p := range peers {
		switch p {
		case "nginx", "nginx-authreq":
			need(p, nginxBin, "nginx")
		case "modauth-shm", "modauth-redis":
			need(p, apacheBin, "apache2")
			need(p, filepath.Join(apacheModules, "mod_auth_openidc.so"), "libapache2-mod-auth-openidc")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s\nbench/run.sh installs them; or leave these peers out, e.g. --peers none", strings.Join(missing, "\n"))
	}
	return nil
}

// nginxConf is the configuration of the nginx peer: one worker (the proxy under test has
// one CPU), upstream keep-alive, no access log, and the same forwarded headers as the
// bare proxy. authReq, when set, is the gatehouse whose /bff/auth decides each request
// and gives the bearer (issue 14's forward-auth); otherwise the bearer is fixed.
func nginxConf(listen, upstream, token, authReq string) string {
	auth := fmt.Sprintf("proxy_set_header Authorization \"Bearer %s\";", token)
	sub := ""
	if authReq != "" {
		// Needs gatehouse's forward-auth endpoint (issue 14): 200 with the session's
		// "Authorization: Bearer …", 401/403 otherwise.
		auth = `auth_request /__gatehouse_auth;
      auth_request_set $gatehouse_authorization $upstream_http_authorization;
      proxy_set_header Authorization $gatehouse_authorization;`
		sub = fmt.Sprintf(`
    location = /__gatehouse_auth {
      internal;
      proxy_pass %s/bff/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }
`, authReq)
	}
	return fmt.Sprintf(`# nginx peer of the benchmark (bench/peers.go)
worker_processes 1;
events { worker_connections 4096; }
http {
  access_log off;
  upstream api {
    server %s;
    keepalive 256;
  }
  server {
    listen %s;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      %s
    }
%s  }
}
`, strings.TrimPrefix(upstream, "http://"), listen, auth, sub)
}

// startNginx runs nginx in the foreground with dir as its prefix, pinned to cpus.
func (e *env) startNginx(name, authReq string) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	prefix := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(listen, e.upURL, e.bareToken, authReq)), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-e", "stderr", "-p", prefix + "/", "-c", conf, "-g", "daemon off; pid " + filepath.Join(prefix, "nginx.pid") + ";"}
	if out, err := exec.Command(nginxBin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: nginx -t: %v\n%s", name, err, out)
	}
	p, err := startProc(e.dir, name, e.o.proxyCPUs, 0, false, append([]string{nginxBin}, args...)...)
	if err != nil {
		return nil, err
	}
	e.ps.add(p)
	if err := waitListening(p, listen); err != nil {
		return nil, err
	}
	pr := &peer{name: name, url: "http://" + listen, p: p, token: e.bareToken,
		label: "nginx 1 worker, `proxy_pass` with a fixed bearer (no authentication)"}
	if authReq != "" {
		pr.label = "nginx `auth_request` → gatehouse `/bff/auth`, `memory` store"
	}
	return pr, nil
}

// apacheConf is the configuration of a mod_auth_openidc peer: the event MPM with one
// child process (the proxy under test has one CPU) of 64 threads (one per wrk
// connection), no access log, server-side sessions in cache ("shm" or "redis"), PKCE as
// the provider requires, and the session's access token sent upstream as the bearer.
func apacheConf(dir, listen, issuer, upstream, cache, redisAddr string, root bool) string {
	user := ""
	if root {
		user = "User www-data\nGroup www-data\n"
	}
	cacheConf := "OIDCCacheType shm\nOIDCCacheShmEntrySizeMax 65536\n"
	if cache == "redis" {
		cacheConf = "OIDCCacheType redis\nOIDCRedisCacheServer " + redisAddr + "\n"
	}
	var mods strings.Builder
	for _, m := range []string{"mpm_event", "authn_core", "authz_core", "authz_user", "headers", "proxy", "proxy_http", "auth_openidc"} {
		fmt.Fprintf(&mods, "LoadModule %s_module %s/mod_%s.so\n", m, apacheModules, m)
	}
	return fmt.Sprintf(`# mod_auth_openidc peer of the benchmark (bench/peers.go)
ServerRoot %[1]s
ServerName 127.0.0.1
Listen %[2]s
PidFile %[1]s/httpd.pid
DefaultRuntimeDir %[1]s
ErrorLog /dev/stderr
LogLevel warn
%[3]s%[4]s
StartServers 1
ServerLimit 1
ThreadLimit 128
ThreadsPerChild 128
MinSpareThreads 1
MaxSpareThreads 128
MaxRequestWorkers 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60

OIDCProviderMetadataURL %[5]s/.well-known/openid-configuration
OIDCClientID %[6]s
OIDCClientSecret %[7]s
OIDCRedirectURI http://%[2]s/redirect_uri
OIDCCryptoPassphrase bench-passphrase-not-for-production
OIDCScope "openid"
OIDCPKCEMethod S256
OIDCSessionType server-cache
OIDCSessionInactivityTimeout 28800
OIDCSessionMaxDuration 28800
OIDCPassClaimsAs environment
OIDCPassIDTokenAs payload
%[8]s
<Location />
  AuthType openid-connect
  Require valid-user
  RequestHeader set Authorization "Bearer %%{OIDC_access_token}e"
</Location>
ProxyPass /api/ %[9]s/api/
`, dir, listen, mods.String(), user, issuer, benchClientID, benchClientSecret, cacheConf, upstream)
}

// reserveModAuth picks the port of a mod_auth_openidc peer before the provider starts,
// which must know its redirect URI.
func reserveModAuth(name string) (*peer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return &peer{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port)}, nil
}

// startModAuth runs apache2 in the foreground (-DFOREGROUND) with its own ServerRoot,
// pinned to the proxy's CPUs, and logs in through it.
func (e *env) startModAuth(pr *peer) error {
	cache := strings.TrimPrefix(pr.name, "modauth-")
	dir := filepath.Join(e.dir, pr.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	listen := strings.TrimPrefix(pr.url, "http://")
	conf := filepath.Join(dir, "httpd.conf")
	cfg := apacheConf(dir, listen, e.idp.issuer, e.upURL, cache, e.redisAddr, os.Getuid() == 0)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command(apacheBin, "-t", "-f", conf).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: apache2 -t: %v\n%s", pr.name, err, out)
	}
	p, err := startProc(e.dir, pr.name, e.o.proxyCPUs, 0, false, apacheBin, "-f", conf, "-DFOREGROUND")
	if err != nil {
		return err
	}
	e.ps.add(p)
	pr.p = p
	if err := waitListening(p, listen); err != nil {
		return err
	}
	pr.label = fmt.Sprintf("Apache %s, mod_auth_openidc, `%s` sessions", apacheVersion(), cache)
	cookie, tok, err := modAuthLogin(e.idp, pr.url)
	if err != nil {
		return fmt.Errorf("logging in through %s: %w\n%s", pr.name, err, p.logTail())
	}
	pr.cookie, pr.token = modAuthCookie+"="+cookie, tok.AccessToken
	return nil
}

func apacheVersion() string {
	out, _ := exec.Command(apacheBin, "-v").Output()
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "Apache/"); ok {
			return v
		}
	}
	return "httpd"
}

// modAuthLogin performs the authorization code flow through mod_auth_openidc, as a
// browser would: the protected URL redirects to the provider, the provider's login form
// redirects to mod_auth_openidc's redirect URI, which exchanges the code, sets the
// session cookie and redirects back. It returns the cookie's value and the tokens the
// provider issued.
func modAuthLogin(b *benchIDP, origin string) (string, issued, error) {
	jar, nav := navigator()
	resp, body, err := nav("GET", origin+"/api/orders", nil)
	if err != nil {
		return "", issued{}, err
	}
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, b.issuer) {
		return "", issued{}, fmt.Errorf("protected URL: status %d, Location %q: %.300s", resp.StatusCode, authURL, body)
	}
	resp, page, err := nav("GET", authURL, nil)
	if err != nil {
		return "", issued{}, err
	}
	m := requestIDRe.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		return "", issued{}, fmt.Errorf("provider login page: status %d: %.300s", resp.StatusCode, page)
	}
	resp, _, err = nav("POST", b.issuer+"/login", url.Values{"request": {string(m[1])}, "user": {benchUser}})
	if err != nil {
		return "", issued{}, err
	}
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, origin+"/redirect_uri") {
		return "", issued{}, fmt.Errorf("provider login: status %d, Location %q", resp.StatusCode, callback)
	}
	resp, body, err = nav("GET", callback, nil)
	if err != nil {
		return "", issued{}, err
	}
	if resp.StatusCode != http.StatusFound || !strings.HasSuffix(resp.Header.Get("Location"), "/api/orders") {
		return "", issued{}, fmt.Errorf("redirect URI: status %d, Location %q: %.300s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	tokens := b.lastIssued()
	u, _ := url.Parse(origin)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == modAuthCookie && ck.Value != "" {
			return ck.Value, tokens, nil
		}
	}
	return "", issued{}, fmt.Errorf("the redirect URI set no %s cookie", modAuthCookie)
}

// waitListening polls until addr accepts a TCP connection, the process exits, or 30 s pass.
func waitListening(p *proc, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("%s exited at start:\n%s", p.name, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after 30 s on %s:\n%s", p.name, addr, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// authReqGatehouseYAML is appended to the configuration of the gatehouse behind the
// nginx-authreq peer: its /bff/auth believes nginx's X-Original-URI and
// X-Original-Method only from trusted proxies, here the loopback nginx.
const authReqGatehouseYAML = "trusted_proxies: [127.0.0.1/32]\n"
