package main

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session"
)

// fileConfig is the YAML file (docs/configuration.md). It stays apart from the
// library's typed gatehouse.Config: the file format is the binary's business.
type fileConfig struct {
	Listen    string       `yaml:"listen"`
	PublicURL string       `yaml:"public_url"`
	Provider  fileProvider `yaml:"provider"`
	// Providers are several named providers: of the one app, or for frontends to pick.
	Providers []fileProvider `yaml:"providers"`
	// Login is how /bff/login starts a login (login.chooser).
	Login fileLogin `yaml:"login"`
	// Frontends are several apps on this listener, each with its own public_url,
	// providers, routes, frontend, cookie and session timeouts; the other settings are
	// shared. Empty: the file is one app.
	Frontends []fileApp `yaml:"frontends"`
	// DefaultFrontend serves requests no frontend's public_url matches.
	DefaultFrontend  string         `yaml:"default_frontend"`
	Session          fileSession    `yaml:"session"`
	Cookie           fileCookie     `yaml:"cookie"`
	CSRF             fileCSRF       `yaml:"csrf"`
	Routes           []fileRoute    `yaml:"routes"`
	Frontend         fileFrontend   `yaml:"frontend"`
	Admin            fileAdmin      `yaml:"admin"`
	Health           fileHealth     `yaml:"health"`
	TrustedProxies   []string       `yaml:"trusted_proxies"`
	WebSocketOrigins []string       `yaml:"websocket_origins"`
	Log              fileLog        `yaml:"log"`
	AuditLog         fileAuditLog   `yaml:"audit_log"`
	RateLimits       fileRateLimits `yaml:"rate_limits"`
	Server           fileServerOpts `yaml:"server"`
	Tracing          fileTracing    `yaml:"tracing"`
	Identity         fileIdentity   `yaml:"identity"`
	TLS              fileTLS        `yaml:"tls"`
	// InsecureDiagnostics serves /bff/diagnostics (loopback public_url only).
	InsecureDiagnostics bool `yaml:"insecure_diagnostics"`
	// Compat answers /bff/user in another BFF's shape (duende).
	Compat string `yaml:"compat"`
	// UpstreamTransport is every route's default upstream_transport (standard, fast).
	UpstreamTransport string `yaml:"upstream_transport"`
	// ForwardAuth is how /bff/auth answers an ingress.
	ForwardAuth fileForwardAuth `yaml:"forward_auth"`

	// StripRequestHeaders and AllowRequestHeaders adjust which request headers are removed
	// before forwarding.
	StripRequestHeaders []string `yaml:"strip_request_headers"`
	AllowRequestHeaders []string `yaml:"allow_request_headers"`
}

type fileAuditLog struct {
	// Output is stderr (default), stdout, or a file path (appended to, reopened on SIGHUP).
	Output string `yaml:"output"`
}

type fileRateLimits struct {
	Login           fileRateLimit `yaml:"login"`
	LoginPer48      fileRateLimit `yaml:"login_per_48"`
	Callback        fileRateLimit `yaml:"callback"`
	Backchannel     fileRateLimit `yaml:"backchannel"`
	Admin           fileRateLimit `yaml:"admin"`
	Sessions        fileRateLimit `yaml:"sessions"`
	InsecureDisable bool          `yaml:"insecure_disable"`
}

type fileRateLimit struct {
	PerMinute float64 `yaml:"per_minute"`
	Burst     int     `yaml:"burst"`
}

type fileLogin struct {
	Chooser bool `yaml:"chooser"`
}

// fileApp is one of frontends: what an app may set for itself. Everything else it takes
// from the top level of the file.
type fileApp struct {
	Name                string          `yaml:"name"`
	PublicURL           string          `yaml:"public_url"`
	Providers           []string        `yaml:"providers"`
	Routes              []fileRoute     `yaml:"routes"`
	Frontend            fileFrontend    `yaml:"frontend"`
	Cookie              fileCookie      `yaml:"cookie"`
	CSRF                fileCSRF        `yaml:"csrf"`
	Session             fileAppSession  `yaml:"session"`
	Login               fileLogin       `yaml:"login"`
	Compat              string          `yaml:"compat"`
	WebSocketOrigins    []string        `yaml:"websocket_origins"`
	ForwardAuth         fileForwardAuth `yaml:"forward_auth"`
	InsecureDiagnostics bool            `yaml:"insecure_diagnostics"`
}

// fileAppSession is what of session: an app may set for itself (the store and the keys
// are shared).
type fileAppSession struct {
	IdleTimeout     duration `yaml:"idle_timeout"`
	AbsoluteTimeout duration `yaml:"absolute_timeout"`
	FlowTimeout     duration `yaml:"flow_timeout"`
	MaxPendingFlows int      `yaml:"max_pending_flows"`
	BindUserAgent   bool     `yaml:"bind_user_agent"`
	BindIPv4Prefix  int      `yaml:"bind_ipv4_prefix"`
	BindIPv6Prefix  int      `yaml:"bind_ipv6_prefix"`
}

type fileProvider struct {
	Name                         string            `yaml:"name"`
	Label                        string            `yaml:"label"`
	Issuer                       string            `yaml:"issuer"`
	DiscoveryURL                 string            `yaml:"discovery_url"`
	AllowedTenants               []string          `yaml:"allowed_tenants"`
	ClientID                     string            `yaml:"client_id"`
	ClientSecret                 string            `yaml:"client_secret"`
	ClientSecretFile             string            `yaml:"client_secret_file"`
	ClientKeyFile                string            `yaml:"client_key_file"`
	ClientKeyID                  string            `yaml:"client_key_id"`
	ClientKeyAlg                 string            `yaml:"client_key_alg"`
	ClientAssertionAudience      string            `yaml:"client_assertion_audience"`
	TLSClientCertFile            string            `yaml:"tls_client_cert_file"`
	TLSClientKeyFile             string            `yaml:"tls_client_key_file"`
	TLSCAFile                    string            `yaml:"tls_ca_file"`
	TokenEndpointAuthMethod      string            `yaml:"token_endpoint_auth_method"`
	PAR                          string            `yaml:"par"`
	DPoP                         bool              `yaml:"dpop"`
	Scopes                       []string          `yaml:"scopes"`
	AuthParams                   map[string]string `yaml:"auth_params"`
	AllowedAuthParams            []string          `yaml:"allowed_auth_params"`
	EndSessionURL                string            `yaml:"end_session_url"`
	OmitIDTokenHint              bool              `yaml:"omit_id_token_hint"`
	RequireIssParam              bool              `yaml:"require_iss_param"`
	SigningAlgs                  []string          `yaml:"signing_algs"`
	ClockSkew                    duration          `yaml:"clock_skew"`
	SkipUserinfo                 bool              `yaml:"skip_userinfo"`
	DistributedClaims            []string          `yaml:"distributed_claims"`
	GraphGroups                  bool              `yaml:"graph_groups"`
	GraphURL                     string            `yaml:"graph_url"`
	TrustedAudiences             []string          `yaml:"trusted_audiences"`
	DefaultTokenLifetime         duration          `yaml:"default_token_lifetime"`
	RefreshLead                  duration          `yaml:"refresh_lead"`
	ClaimsMaxAge                 duration          `yaml:"claims_max_age"`
	BackchannelLogoutAllSessions bool              `yaml:"backchannel_logout_all_sessions"`
	Timeout                      duration          `yaml:"timeout"`
}

type fileSession struct {
	Store           string    `yaml:"store"`
	Keys            []string  `yaml:"keys"`
	KeysFile        string    `yaml:"keys_file"`
	AcceptKeys      []string  `yaml:"accept_keys"`
	AcceptKeysFile  string    `yaml:"accept_keys_file"`
	IdleTimeout     duration  `yaml:"idle_timeout"`
	AbsoluteTimeout duration  `yaml:"absolute_timeout"`
	FlowTimeout     duration  `yaml:"flow_timeout"`
	MaxPendingFlows int       `yaml:"max_pending_flows"`
	BindUserAgent   bool      `yaml:"bind_user_agent"`
	BindIPv4Prefix  int       `yaml:"bind_ipv4_prefix"`
	BindIPv6Prefix  int       `yaml:"bind_ipv6_prefix"`
	Redis           fileRedis `yaml:"redis"`
}

type fileRedis struct {
	Username              string   `yaml:"username"`
	Password              string   `yaml:"password"`
	PasswordFile          string   `yaml:"password_file"`
	SentinelUsername      string   `yaml:"sentinel_username"`
	SentinelPassword      string   `yaml:"sentinel_password"`
	SentinelPasswordFile  string   `yaml:"sentinel_password_file"`
	KeyPrefix             string   `yaml:"key_prefix"`
	DialTimeout           duration `yaml:"dial_timeout"`
	Timeout               duration `yaml:"timeout"`
	ClientCache           *bool    `yaml:"client_cache"`
	ClientCacheTTL        duration `yaml:"client_cache_ttl"`
	TLSCAFile             string   `yaml:"tls_ca_file"`
	InsecureSkipTLSVerify bool     `yaml:"insecure_skip_tls_verify"`
}

type fileCookie struct {
	Name               string `yaml:"name"`
	SameSite           string `yaml:"same_site"`
	AllowNonHostPrefix bool   `yaml:"allow_non_host_prefix"`
}

type fileCSRF struct {
	Header         string   `yaml:"header"`
	Value          string   `yaml:"value"`
	TrustedOrigins []string `yaml:"trusted_origins"`
}

type fileForwardAuth struct {
	RedirectNavigations bool `yaml:"redirect_navigations"`
}

type fileRoute struct {
	Path           string            `yaml:"path"`
	Upstream       string            `yaml:"upstream"`
	Token          string            `yaml:"token"`
	StripPrefix    bool              `yaml:"strip_prefix"`
	Methods        []string          `yaml:"methods"`
	Timeout        duration          `yaml:"timeout"`
	Headers        map[string]string `yaml:"headers"`
	Require        []fileRule        `yaml:"require"`
	Audience       string            `yaml:"audience"`
	Resource       string            `yaml:"resource"`
	Scopes         []string          `yaml:"scopes"`
	Exchange       *fileExchange     `yaml:"exchange"`
	DPoP           bool              `yaml:"dpop"`
	ForwardCookies []string          `yaml:"forward_cookies"`
	MaxBody        byteSize          `yaml:"max_body"`
	BodyTimeout    duration          `yaml:"body_timeout"`
	Streaming      bool              `yaml:"streaming"`
	Transport      string            `yaml:"upstream_transport"`
	Identity       *fileRouteID      `yaml:"identity"`
}

// fileIdentity is identity: how the identity assertions are signed.
type fileIdentity struct {
	SigningKeyFile  string   `yaml:"signing_key_file"`
	PublishKeysFile string   `yaml:"publish_keys_file"`
	Algorithm       string   `yaml:"algorithm"`
	AssertionTTL    duration `yaml:"assertion_ttl"`
}

// fileRouteID is routes[].identity: what the upstream is told of the user.
type fileRouteID struct {
	Headers   map[string]string `yaml:"headers"`
	Assertion bool              `yaml:"assertion"`
	Audience  string            `yaml:"audience"`
	Claims    []string          `yaml:"claims"`
}

type fileExchange struct {
	Audience           string   `yaml:"audience"`
	Resource           string   `yaml:"resource"`
	Scopes             []string `yaml:"scopes"`
	RequestedTokenType string   `yaml:"requested_token_type"`
	SubjectToken       string   `yaml:"subject_token"`
}

type fileRule struct {
	Claim    string     `yaml:"claim"`
	Contains stringList `yaml:"contains"`
	AnyOf    stringList `yaml:"any_of"`
	ACR      stringList `yaml:"acr"`
	MaxAge   duration   `yaml:"max_age"`
}

type fileFrontend struct {
	Dir          string `yaml:"dir"`
	Upstream     string `yaml:"upstream"`
	CSP          string `yaml:"csp"`
	RequireLogin bool   `yaml:"require_login"`
}

type fileAdmin struct {
	Listen           string `yaml:"listen"`
	Token            string `yaml:"token"`
	TokenFile        string `yaml:"token_file"`
	AllowNonLoopback bool   `yaml:"allow_non_loopback"`
}

// fileHealth is the health listener: /healthz and /readyz only, on any address.
type fileHealth struct {
	Listen string `yaml:"listen"`
}

type fileLog struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
	// Access is off (default), stdout, stderr or file: one JSON line per request.
	Access string `yaml:"access"`
	// AccessFile is the file of access: file (appended to, reopened on SIGHUP).
	AccessFile    string `yaml:"access_file"`
	AccessSubject bool   `yaml:"access_subject"`
}

type fileServerOpts struct {
	ReadHeaderTimeout duration `yaml:"read_header_timeout"`
	IdleTimeout       duration `yaml:"idle_timeout"`
	ShutdownTimeout   duration `yaml:"shutdown_timeout"`
	ShutdownDelay     duration `yaml:"shutdown_delay"`
	// Read by the gateway (gatehouse.ServerConfig).
	BodyTimeout             duration `yaml:"body_timeout"`
	MaxConnectionsPerClient int      `yaml:"max_connections_per_client"`
}

// duration accepts Go durations ("30s", "12h", "1h30m").
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 30s, 15m or 12h")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 30s, 15m or 12h", n.Value)
	}
	*d = duration(v)
	return nil
}

// byteSize accepts a number of bytes, or a number with a unit: 512KiB, 10MiB, 1GiB
// (also KB, MB, GB as powers of 1000).
type byteSize int64

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	bad := fmt.Errorf("%q is not a size such as 1048576, 512KiB or 10MiB", n.Value)
	if n.Kind != yaml.ScalarNode {
		return bad
	}
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return bad
	}
	*b = byteSize(v * mult)
	return nil
}

// stringList accepts one string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = []string{n.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return errors.New("must be a string or a list of strings")
		}
		*s = l
		return nil
	}
	return errors.New("must be a string or a list of strings")
}

// loaded is a configuration ready to run: the library config plus what only the binary
// needs.
type loaded struct {
	file       fileConfig
	gw         gatehouse.Config   // the app's; with frontends, the first app's
	apps       []gatehouse.Config // the apps of a file with frontends: (nil for one app)
	storeURL   string
	redis      redisOptions // resolved secrets and files of session.redis
	logger     *slog.Logger
	auditOut   io.Writer // stderr or stdout
	auditPath  string    // or this file
	accessPath string    // the access log's file, when log.access is file
	tracing    tracingPlan
	tls        *tlsPlan // nil: the public listener speaks plain HTTP
	warnings   []string
}

// loadConfig reads and checks a configuration file. It returns every problem at once.
func loadConfig(path string) (*loaded, error) {
	var probs problems
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var fc fileConfig
	root, ok := decodeStrictNode(data, &fc, &probs)
	if !ok {
		return nil, configError(probs)
	}
	l := &loaded{file: fc}
	base := filepath.Dir(path)
	// A field the decoder rejected (a missing ${VAR}, a bad value) is blank from here on:
	// the later checks' "is required" for it would be the same problem twice.
	bad := map[string]bool{}
	for _, p := range probs {
		field, _, _ := strings.Cut(p, ": ")
		bad[field] = true
	}
	var later problems
	if len(fc.Frontends) > 0 {
		l.loadApps(base, loadFrontends(root, fc, &later), &later)
	} else {
		l.gw = l.convert(base, &later)
		if err := l.gw.Validate(); err != nil {
			later = append(later, strings.Split(err.Error(), "\n")...)
		}
	}
	for _, line := range later {
		field, _, _ := strings.Cut(line, ": ")
		if !bad[field] && !slices.Contains(probs, line) {
			probs = append(probs, line)
		}
	}
	if len(probs) > 0 {
		return nil, configError(probs)
	}
	return l, nil
}

type configError problems

func (e configError) Error() string {
	return fmt.Sprintf("%d problem(s) in the configuration:\n  %s", len(e), strings.Join(e, "\n  "))
}

func (l *loaded) convert(base string, probs *problems) gatehouse.Config {
	fc := l.file
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	secret := func(field, value, file string) string {
		switch {
		case value != "" && file != "":
			probs.add(field, "set either %s or %s_file, not both", lastPart(field), lastPart(field))
		case file != "":
			b, err := os.ReadFile(resolve(file))
			if err != nil {
				probs.add(field+"_file", "cannot read %s: %v", file, errors.Unwrap(err))
				return ""
			}
			return strings.TrimRight(string(b), "\r\n")
		}
		return value
	}
	c := gatehouse.Config{
		PublicURL: fc.PublicURL,
		Session: gatehouse.SessionConfig{
			IdleTimeout: time.Duration(fc.Session.IdleTimeout), AbsoluteTimeout: time.Duration(fc.Session.AbsoluteTimeout),
			FlowTimeout: time.Duration(fc.Session.FlowTimeout), MaxPendingFlows: fc.Session.MaxPendingFlows,
			BindUserAgent: fc.Session.BindUserAgent, BindIPv4Prefix: fc.Session.BindIPv4Prefix, BindIPv6Prefix: fc.Session.BindIPv6Prefix,
		},
		RateLimits: gatehouse.RateLimitConfig{
			Login: rateLimit(fc.RateLimits.Login), LoginPer48: rateLimit(fc.RateLimits.LoginPer48), Callback: rateLimit(fc.RateLimits.Callback),
			Backchannel: rateLimit(fc.RateLimits.Backchannel), Admin: rateLimit(fc.RateLimits.Admin),
			Sessions: rateLimit(fc.RateLimits.Sessions), InsecureDisable: fc.RateLimits.InsecureDisable,
		},
		InsecureDiagnostics:   fc.InsecureDiagnostics,
		Compat:                fc.Compat,
		UpstreamTransportMode: gatehouse.TransportMode(fc.UpstreamTransport),
		ForwardAuth:           gatehouse.ForwardAuthConfig{RedirectNavigations: fc.ForwardAuth.RedirectNavigations},
		Cookie:                gatehouse.CookieConfig{Name: fc.Cookie.Name, AllowNonHostPrefix: fc.Cookie.AllowNonHostPrefix},
		CSRF:                  gatehouse.CSRFConfig{Header: fc.CSRF.Header, Value: fc.CSRF.Value, TrustedOrigins: fc.CSRF.TrustedOrigins},
		Frontend: gatehouse.FrontendConfig{Dir: resolve(fc.Frontend.Dir), Upstream: fc.Frontend.Upstream,
			CSP: fc.Frontend.CSP, RequireLogin: fc.Frontend.RequireLogin},
		Admin:            gatehouse.AdminConfig{Token: secret("admin.token", fc.Admin.Token, fc.Admin.TokenFile)},
		WebSocketOrigins: fc.WebSocketOrigins,
		Server: gatehouse.ServerConfig{BodyTimeout: time.Duration(fc.Server.BodyTimeout),
			MaxConnectionsPerClient: fc.Server.MaxConnectionsPerClient},
	}
	c.StripRequestHeaders, c.AllowRequestHeaders = fc.StripRequestHeaders, fc.AllowRequestHeaders
	c.Login = gatehouse.LoginConfig{Chooser: fc.Login.Chooser}
	timeout := fc.Provider.Timeout
	if len(fc.Providers) > 0 {
		if fc.Provider.Issuer != "" {
			probs.add("providers", "set either provider (one) or providers (several), not both")
		}
		for i, fp := range fc.Providers {
			c.Providers = append(c.Providers, convertProvider(fmt.Sprintf("providers[%d]", i), fp, resolve, secret, probs))
			timeout = max(timeout, fp.Timeout)
		}
		if len(c.Providers) == 1 {
			c.Provider, c.Providers = c.Providers[0], nil
		}
	} else {
		c.Provider = convertProvider("provider", fc.Provider, resolve, secret, probs)
	}
	if timeout > 0 {
		c.ProviderHTTPClient = &http.Client{Timeout: time.Duration(timeout)}
	}
	c.Identity = gatehouse.IdentityConfig{Algorithm: fc.Identity.Algorithm, AssertionTTL: time.Duration(fc.Identity.AssertionTTL)}
	if f := fc.Identity.SigningKeyFile; f != "" {
		// The same formats as client_key_file: PEM (PKCS#8, SEC 1) or a private JWK.
		k, err := readClientKey(resolve(f), "")
		if err != nil {
			probs.add("identity.signing_key_file", "%v", err)
		}
		c.Identity.SigningKey = k.key
	}
	if f := fc.Identity.PublishKeysFile; f != "" {
		keys, err := readPublicKeys(resolve(f))
		if err != nil {
			probs.add("identity.publish_keys_file", "%v", err)
		}
		c.Identity.PublishKeys = keys
	}
	switch strings.ToLower(fc.Cookie.SameSite) {
	case "", "strict":
		c.Cookie.SameSite = http.SameSiteStrictMode
	case "lax":
		c.Cookie.SameSite = http.SameSiteLaxMode
	default:
		probs.add("cookie.same_site", "%q is not strict or lax", fc.Cookie.SameSite)
	}

	c.Session.Keys = readKeys("session.keys", fc.Session.Keys, fc.Session.KeysFile, resolve, probs)
	c.Session.AcceptKeys = readKeys("session.accept_keys", fc.Session.AcceptKeys, fc.Session.AcceptKeysFile, resolve, probs)
	l.storeURL = fc.Session.Store
	if l.storeURL == "" {
		l.storeURL = "memory"
	}
	checkStoreURL(l.storeURL, probs)
	rd := fc.Session.Redis
	l.redis = redisOptions{
		password:         secret("session.redis.password", rd.Password, rd.PasswordFile),
		sentinelPassword: secret("session.redis.sentinel_password", rd.SentinelPassword, rd.SentinelPasswordFile),
	}
	if rd.TLSCAFile != "" {
		b, err := os.ReadFile(resolve(rd.TLSCAFile))
		if err != nil {
			probs.add("session.redis.tls_ca_file", "cannot read %s: %v", rd.TLSCAFile, errors.Unwrap(err))
		}
		l.redis.caPEM = b
	}
	if rd.InsecureSkipTLSVerify {
		l.warnings = append(l.warnings, "session.redis.insecure_skip_tls_verify")
	}

	for i, p := range fc.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				probs.add(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an address or CIDR prefix", p)
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}

	for _, r := range fc.Routes {
		rt := gatehouse.Route{Path: r.Path, Upstream: r.Upstream, Token: gatehouse.TokenMode(r.Token), StripPrefix: r.StripPrefix,
			Methods: r.Methods, Timeout: time.Duration(r.Timeout), Headers: r.Headers, Audience: r.Audience,
			Resource: r.Resource, Scopes: r.Scopes, ForwardCookies: r.ForwardCookies, MaxBody: int64(r.MaxBody),
			BodyTimeout: time.Duration(r.BodyTimeout), Streaming: r.Streaming, DPoP: r.DPoP,
			Transport: gatehouse.TransportMode(r.Transport)}
		if id := r.Identity; id != nil {
			rt.Identity = &gatehouse.RouteIdentity{Headers: id.Headers, Assertion: id.Assertion, Audience: id.Audience, Claims: id.Claims}
		}
		if x := r.Exchange; x != nil {
			rt.Exchange = &gatehouse.ExchangeConfig{Audience: x.Audience, Resource: x.Resource, Scopes: x.Scopes,
				RequestedTokenType: x.RequestedTokenType, SubjectToken: x.SubjectToken}
		}
		for _, rule := range r.Require {
			rt.Require = append(rt.Require, gatehouse.Rule{Claim: rule.Claim, Contains: rule.Contains, AnyOf: rule.AnyOf,
				ACR: rule.ACR, MaxAge: time.Duration(rule.MaxAge)})
		}
		c.Routes = append(c.Routes, rt)
	}

	if fc.Admin.Listen != "" {
		host, _, err := net.SplitHostPort(fc.Admin.Listen)
		switch {
		case err != nil:
			probs.add("admin.listen", "%q is not host:port", fc.Admin.Listen)
		case !isLoopback(host) && !fc.Admin.AllowNonLoopback:
			probs.add("admin.listen", "%q is not a loopback address; set admin.allow_non_loopback to expose the admin API (and protect it)", fc.Admin.Listen)
		case !isLoopback(host):
			l.warnings = append(l.warnings, "admin.allow_non_loopback")
		}
	}
	if fc.Health.Listen != "" {
		// Any address: the health listener serves no data, so it needs no allow_… option.
		_, port, err := net.SplitHostPort(fc.Health.Listen)
		switch {
		case err != nil:
			probs.add("health.listen", "%q is not host:port", fc.Health.Listen)
		case port != "0" && fc.Health.Listen == fc.Admin.Listen:
			probs.add("health.listen", "%q is also admin.listen; give the health listener its own port", fc.Health.Listen)
		case port != "0" && fc.Health.Listen == fc.Listen:
			probs.add("health.listen", "%q is also listen; give the health listener its own port", fc.Health.Listen)
		}
	}
	if fc.Listen != "" {
		if _, _, err := net.SplitHostPort(fc.Listen); err != nil {
			probs.add("listen", "%q is not host:port", fc.Listen)
		}
	}

	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(fc.Log.Level)); fc.Log.Level != "" && err != nil {
		probs.add("log.level", "%q is not debug, info, warn or error", fc.Log.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch fc.Log.Format {
	case "", "json":
		l.logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	case "text":
		l.logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	default:
		probs.add("log.format", "%q is not json or text", fc.Log.Format)
	}
	c.Logger = l.logger
	switch out := fc.AuditLog.Output; out {
	case "", "stderr":
		l.auditOut = os.Stderr
	case "stdout":
		l.auditOut = os.Stdout
	default:
		l.auditPath = resolve(out) // opened by serve, so that check creates no file
	}
	if l.auditOut != nil {
		c.AuditLogger = auditLogger(l.auditOut)
	}
	switch fc.Log.Access {
	case "", "off":
	case "stdout":
		c.AccessLogger = accessLogger(os.Stdout)
	case "stderr":
		c.AccessLogger = accessLogger(os.Stderr)
	case "file":
		if fc.Log.AccessFile == "" {
			probs.add("log.access_file", "is required when log.access is file")
		} else {
			l.accessPath = resolve(fc.Log.AccessFile) // opened by serve, as the audit log
		}
	default:
		probs.add("log.access", "%q is not off, stdout, stderr or file", fc.Log.Access)
	}
	if fc.Log.AccessFile != "" && fc.Log.Access != "file" {
		probs.add("log.access_file", "is set but log.access is %q, not file", fc.Log.Access)
	}
	c.Log.AccessSubject = fc.Log.AccessSubject
	l.tracing = tracingFrom(fc.Tracing, os.Getenv, resolve, probs, &l.warnings)
	l.tls = tlsFrom(fc.TLS, fc.PublicURL, resolve, probs)
	return c
}

// convertProvider is one provider of the file (provider, or providers[i]: field).
func convertProvider(field string, fp fileProvider, resolve func(string) string, secret func(field, value, file string) string, probs *problems) gatehouse.ProviderConfig {
	pc := gatehouse.ProviderConfig{
		Name: fp.Name, Label: fp.Label,
		Issuer: fp.Issuer, DiscoveryURL: fp.DiscoveryURL, AllowedTenants: fp.AllowedTenants,
		ClientID:     fp.ClientID,
		ClientSecret: secret(field+".client_secret", fp.ClientSecret, fp.ClientSecretFile),
		ClientKeyID:  fp.ClientKeyID, ClientKeyAlg: fp.ClientKeyAlg,
		AuthMethod: fp.TokenEndpointAuthMethod, PAR: fp.PAR, DPoP: fp.DPoP,
		ClientAssertionAudience: fp.ClientAssertionAudience, Scopes: fp.Scopes, AuthParams: fp.AuthParams,
		AllowedAuthParams: fp.AllowedAuthParams, EndSessionURL: fp.EndSessionURL,
		OmitIDTokenHint:    fp.OmitIDTokenHint,
		RequireIssuerParam: fp.RequireIssParam, SigningAlgs: fp.SigningAlgs,
		ClockSkew: time.Duration(fp.ClockSkew), SkipUserinfo: fp.SkipUserinfo,
		TrustedAudiences:  fp.TrustedAudiences,
		DistributedClaims: fp.DistributedClaims,
		GraphGroups:       fp.GraphGroups, GraphURL: fp.GraphURL,
		DefaultTokenLifetime:         time.Duration(fp.DefaultTokenLifetime),
		RefreshLead:                  time.Duration(fp.RefreshLead),
		ClaimsMaxAge:                 time.Duration(fp.ClaimsMaxAge),
		BackchannelLogoutAllSessions: fp.BackchannelLogoutAllSessions,
	}
	if fp.ClientKeyFile != "" {
		ck, err := readClientKey(resolve(fp.ClientKeyFile), fp.ClientKeyID)
		if err != nil {
			probs.add(field+".client_key_file", "%v", err)
		}
		pc.ClientKey = ck.key
		if pc.ClientKeyID == "" {
			pc.ClientKeyID = ck.kid
		}
		if pc.ClientKeyAlg == "" {
			pc.ClientKeyAlg = ck.alg
		}
	}
	switch cert, key := fp.TLSClientCertFile, fp.TLSClientKeyFile; {
	case cert == "" && key == "":
	case cert == "" || key == "":
		probs.add(field+".tls_client_cert_file", "and tls_client_key_file go together: set both")
	default:
		pair, err := tls.LoadX509KeyPair(resolve(cert), resolve(key))
		if err != nil {
			probs.add(field+".tls_client_cert_file", "cannot load the certificate and key: %v", errors.Unwrap(err))
		} else {
			pc.TLSClientCertificate = &pair
		}
	}
	if f := fp.TLSCAFile; f != "" {
		pem, err := os.ReadFile(resolve(f))
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			probs.add(field+".tls_ca_file", "cannot read %s: %v", f, errors.Unwrap(err))
		case !pool.AppendCertsFromPEM(pem):
			probs.add(field+".tls_ca_file", "%s holds no PEM certificate", f)
		default:
			pc.TLSRootCAs = pool
		}
	}
	return pc
}

// auditLogger writes audit events as JSON lines marked "log":"audit", so that they can
// share standard error with the other logs and still be told apart.
func auditLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With("log", "audit")
}

// accessLogger writes access records as JSON lines marked "log":"access".
func accessLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With("log", "access")
}

func rateLimit(f fileRateLimit) gatehouse.RateLimit {
	return gatehouse.RateLimit{PerMinute: f.PerMinute, Burst: f.Burst}
}

func lastPart(field string) string {
	return field[strings.LastIndexByte(field, '.')+1:]
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// clientKey is the private_key_jwt signing key read from client_key_file, with the kid
// and alg that a JWK gives it.
type clientKey struct {
	key      crypto.Signer
	kid, alg string
}

// readClientKey reads client_key_file: a PEM private key, or a private JWK or JWK Set
// (JSON), from which kid picks the key (needed when the set holds several: during a
// rotation both keys are registered at the provider and kid says which one signs).
func readClientKey(path, kid string) (clientKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return clientKey{}, fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		key, err := parsePrivateKeyPEM(path, b)
		return clientKey{key: key}, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		var one jose.JSONWebKey
		if err1 := json.Unmarshal(b, &one); err1 != nil {
			return clientKey{}, fmt.Errorf("%s is neither a JWK Set nor a JWK: %v", path, err1)
		}
		set.Keys = []jose.JSONWebKey{one}
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, strconv.Quote(k.KeyID))
	}
	var picked *jose.JSONWebKey
	for i, k := range set.Keys {
		if kid == "" && len(set.Keys) == 1 || kid != "" && k.KeyID == kid {
			picked = &set.Keys[i]
			break
		}
	}
	switch {
	case picked == nil && kid == "":
		return clientKey{}, fmt.Errorf("%s holds %d keys (kid %s): set provider.client_key_id to the one that signs", path, len(set.Keys), strings.Join(kids, ", "))
	case picked == nil:
		return clientKey{}, fmt.Errorf("%s has no key with kid %q (it has %s)", path, kid, strings.Join(kids, ", "))
	case picked.IsPublic():
		return clientKey{}, fmt.Errorf("%s: key %q is a public key; client_key_file needs the private key", path, picked.KeyID)
	}
	signer, ok := picked.Key.(crypto.Signer)
	if !ok {
		return clientKey{}, fmt.Errorf("%s: key %q of type %T cannot sign client assertions (use RSA or EC)", path, picked.KeyID, picked.Key)
	}
	return clientKey{key: signer, kid: picked.KeyID, alg: picked.Algorithm}, nil
}

// readPublicKeys reads identity.publish_keys_file: a JWK Set or a JWK (public or
// private), or PEM blocks of public keys (PKIX) or private keys (PKCS#8, SEC 1), of which
// only the public halves are kept.
func readPublicKeys(path string) ([]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	var out []crypto.PublicKey
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
			var one jose.JSONWebKey
			if err1 := json.Unmarshal(b, &one); err1 != nil {
				return nil, fmt.Errorf("%s is neither a JWK Set nor a JWK: %v", path, err1)
			}
			set.Keys = []jose.JSONWebKey{one}
		}
		for _, k := range set.Keys {
			out = append(out, k.Public().Key)
		}
		return out, nil
	}
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("%s: PEM block %q is not a key", path, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if s, ok := key.(crypto.Signer); ok {
			key = s.Public()
		}
		out = append(out, key)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM block or JWK", path)
	}
	return out, nil
}

// parsePrivateKeyPEM reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
func parsePrivateKeyPEM(path string, b []byte) (crypto.Signer, error) {
	var err error
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, key)
	}
	return s, nil
}

// readKeys reads a list of base64 keys given inline (field) or in a file (field_file:
// one key a line, # comments), reporting problems by field name.
func readKeys(field string, inline []string, file string, resolve func(string) string, probs *problems) [][]byte {
	keys := inline
	if file != "" {
		if len(keys) > 0 {
			probs.add(field, "set either %s or %s_file, not both", lastPart(field), lastPart(field))
		}
		b, err := os.ReadFile(resolve(file))
		if err != nil {
			probs.add(field+"_file", "cannot read %s: %v", file, errors.Unwrap(err))
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
			}
		}
	}
	var out [][]byte
	for i, k := range keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(k)
		}
		if err != nil || len(b) != session.KeySize {
			probs.add(fmt.Sprintf("%s[%d]", field, i), "must be %d random bytes in base64 (make one with `gatehouse keygen`)", session.KeySize)
			continue
		}
		out = append(out, b)
	}
	return out
}
