package devidp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultListen          = "127.0.0.1:9000"
	DefaultAccessTokenTTL  = 5 * time.Minute
	DefaultIDTokenTTL      = time.Hour
	DefaultRefreshTokenTTL = 24 * time.Hour
)

// ErrNonLoopbackListen is the validation error (wrapped) for a Listen address
// that is not a loopback address while InsecureAllowAnyAddress is off.
var ErrNonLoopbackListen = errors.New("devidp: refusing a non-loopback listen address")

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("devidp: invalid configuration")

// Config configures a development provider. The zero value of every field
// except Clients is usable; New fills in the defaults.
type Config struct {
	// Issuer is the exact issuer identifier, e.g. "http://127.0.0.1:9000" or
	// "http://127.0.0.1:9000/idp/". Its path, if any, prefixes every endpoint.
	// Default "http://" + Listen.
	Issuer string
	// Listen is the address Main serves on. Default "127.0.0.1:9000".
	Listen string
	// InsecureAllowAnyAddress lets Listen be a non-loopback address. The
	// provider signs in anyone as anyone without a password, so this exposes
	// it to the network: every page then carries a red banner.
	InsecureAllowAnyAddress bool
	Clients                 []Client
	// Users are the known users; their names get quick-login buttons. Any
	// other user name may still log in with default claims.
	Users map[string]User
	// Token lifetimes. Defaults 5m, 1h and 24h.
	AccessTokenTTL, IDTokenTTL, RefreshTokenTTL time.Duration
	// Logger receives one record per protocol event. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Client is a registered relying party. It authenticates at the token and
// revocation endpoints with client_secret_basic or client_secret_post.
type Client struct {
	ID, Secret string
	// RedirectURIs and PostLogoutRedirectURIs are compared exactly.
	RedirectURIs, PostLogoutRedirectURIs []string
	// BackchannelLogoutURI, when set, receives a logout token whenever a
	// provider session this client took part in ends.
	BackchannelLogoutURI string
}

// User holds a known user's claims, e.g. name, email, groups. The user name
// is the subject ("sub").
type User struct {
	Claims map[string]any
}

// userNamePattern keeps subjects readable and safe to show, log and put in URLs.
var userNamePattern = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)

// issuerPathPattern keeps the issuer path usable as a ServeMux pattern prefix.
var issuerPathPattern = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)*/?$`)

// protocolClaims are set by the provider and may not be configured per user.
var protocolClaims = []string{
	"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "sid",
	"at_hash", "c_hash", "azp", "acr", "amr", "client_id", "scope", "events",
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Listen
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.IDTokenTTL == 0 {
		c.IDTokenTTL = DefaultIDTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate lists every problem of a defaulted config at once.
func (c Config) validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if err := checkListen(c.Listen, c.InsecureAllowAnyAddress); err != nil {
		errs = append(errs, err)
	}
	if err := checkIssuer(c.Issuer); err != nil {
		add("issuer: %w", err)
	}
	for _, ttl := range []struct {
		name string
		d    time.Duration
	}{{"access_token_ttl", c.AccessTokenTTL}, {"id_token_ttl", c.IDTokenTTL}, {"refresh_token_ttl", c.RefreshTokenTTL}} {
		if ttl.d < 0 {
			add("%s: must not be negative, got %s", ttl.name, ttl.d)
		}
	}
	if len(c.Clients) == 0 {
		add("clients: at least one client is needed")
	}
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		switch {
		case cl.ID == "":
			add("%s.id: must not be empty", p)
		case seen[cl.ID]:
			add("%s.id: %q is registered twice", p, cl.ID)
		}
		seen[cl.ID] = true
		if cl.Secret == "" {
			add("%s.secret: must not be empty (devidp supports confidential clients only)", p)
		}
		for j, u := range cl.RedirectURIs {
			if err := checkAbsoluteURL(u); err != nil {
				add("%s.redirect_uris[%d]: %w", p, j, err)
			}
		}
		for j, u := range cl.PostLogoutRedirectURIs {
			if err := checkAbsoluteURL(u); err != nil {
				add("%s.post_logout_redirect_uris[%d]: %w", p, j, err)
			}
		}
		if cl.BackchannelLogoutURI != "" {
			if err := checkAbsoluteURL(cl.BackchannelLogoutURI); err != nil {
				add("%s.backchannel_logout_uri: %w", p, err)
			}
		}
	}
	for _, name := range sortedKeys(c.Users) {
		if !userNamePattern.MatchString(name) {
			add("users: name %q: use 1 to 64 letters, digits or ._@+-", name)
		}
		for _, claim := range protocolClaims {
			if _, ok := c.Users[name].Claims[claim]; ok {
				add("users.%s: claim %q is set by the provider and cannot be configured", name, claim)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrInvalidConfig, errors.Join(errs...))
}

// checkListen refuses addresses that are reachable from other machines unless
// the caller insisted.
func checkListen(listen string, insecureAllowAnyAddress bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", listen, err)
	}
	if insecureAllowAnyAddress || isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("%w: listen address %q is not a loopback address. "+
		"devidp signs anyone in as any user without a password, so it must only be reachable from this machine: "+
		"listen on 127.0.0.1, [::1] or localhost, or, if you really mean to expose it, "+
		"set --insecure-allow-any-address (YAML insecure_allow_any_address: true)", ErrNonLoopbackListen, listen)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be http or https", issuer)
	case u.Host == "":
		return fmt.Errorf("%q: host is missing", issuer)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(issuer, "#"):
		return fmt.Errorf("%q: must not contain user info, a query or a fragment", issuer)
	case !issuerPathPattern.MatchString(u.Path):
		return fmt.Errorf("%q: path may only contain letters, digits and ._~-", issuer)
	}
	return nil
}

func checkAbsoluteURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case !u.IsAbs() || u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q must not contain a fragment", s)
	}
	return nil
}
