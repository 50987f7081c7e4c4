package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/gatehouse-bff/gatehouse/certfile"
)

// fileTLS is the public listener's TLS (docs/operations.md, "TLS"): a certificate from
// files, reloaded when they change, or one from an ACME CA. Unset, the listener speaks
// plain HTTP as before.
type fileTLS struct {
	CertFile string   `yaml:"cert_file"`
	KeyFile  string   `yaml:"key_file"`
	ACME     fileACME `yaml:"acme"`
	HSTS     fileHSTS `yaml:"hsts"`
}

type fileACME struct {
	DirectoryURL    string   `yaml:"directory_url"`
	DirectoryCAFile string   `yaml:"directory_ca_file"`
	Email           string   `yaml:"email"`
	Domains         []string `yaml:"domains"`
	CacheDir        string   `yaml:"cache_dir"`
	HTTPListen      string   `yaml:"http_listen"`
}

type fileHSTS struct {
	MaxAge            duration `yaml:"max_age"`
	IncludeSubdomains bool     `yaml:"include_subdomains"`
	Preload           bool     `yaml:"preload"`
	Disable           bool     `yaml:"disable"`
}

func (a fileACME) set() bool {
	return a.DirectoryURL != "" || a.DirectoryCAFile != "" || a.Email != "" || len(a.Domains) > 0 ||
		a.CacheDir != "" || a.HTTPListen != ""
}

// defaultHSTSMaxAge is one year: long enough to matter (and what preload lists ask
// for), and the header is only sent once the gateway itself serves https.
const defaultHSTSMaxAge = 365 * 24 * time.Hour

// tlsPlan is the TLS of the public listener, checked: either the files (certFile,
// keyFile, resolved) or acme.
type tlsPlan struct {
	certFile, keyFile string
	leaf              *x509.Certificate // read by loadConfig, for check and the log
	acme              *autocert.Manager
	domains           []string
	httpListen        string
	hsts              string // the Strict-Transport-Security value; "" sends none
}

// tlsFrom checks the tls section. It returns nil when TLS is off.
func tlsFrom(ft fileTLS, publicURL string, resolve func(string) string, probs *problems) *tlsPlan {
	files := ft.CertFile != "" || ft.KeyFile != ""
	hstsSet := ft.HSTS != fileHSTS{}
	if !files && !ft.ACME.set() {
		if hstsSet {
			probs.add("tls.hsts", "is set but TLS is off: set tls.cert_file and tls.key_file, or tls.acme")
		}
		return nil
	}
	p := &tlsPlan{}
	if u, err := url.Parse(publicURL); publicURL != "" && err == nil && u.Scheme != "https" {
		probs.add("public_url", "must be https:// when tls is set (the __Host- cookie and HSTS need it)")
	}
	switch {
	case files && ft.ACME.set():
		probs.add("tls", "set either cert_file and key_file or acme, not both")
	case files && (ft.CertFile == "" || ft.KeyFile == ""):
		probs.add("tls.cert_file", "and tls.key_file go together: set both")
	case files:
		p.certFile, p.keyFile = resolve(ft.CertFile), resolve(ft.KeyFile)
		c, err := certfile.Load(p.certFile, p.keyFile)
		if err != nil {
			probs.add("tls.cert_file", "cannot load the certificate and key: %v", errors.Unwrap(err))
		} else {
			p.leaf = c.Leaf
		}
	default:
		p.acmeFrom(ft.ACME, publicURL, resolve, probs)
	}
	if !ft.HSTS.Disable {
		p.hsts, _ = hstsValue(ft.HSTS, probs)
	}
	return p
}

func (p *tlsPlan) acmeFrom(a fileACME, publicURL string, resolve func(string) string, probs *problems) {
	dir := a.DirectoryURL
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	} else if u, err := url.Parse(dir); err != nil || u.Scheme != "https" || u.Host == "" {
		probs.add("tls.acme.directory_url", "%q is not an https:// URL", dir)
	}
	client := &acme.Client{DirectoryURL: dir}
	if f := a.DirectoryCAFile; f != "" {
		pem, err := os.ReadFile(resolve(f))
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			probs.add("tls.acme.directory_ca_file", "cannot read %s: %v", f, errors.Unwrap(err))
		case !pool.AppendCertsFromPEM(pem):
			probs.add("tls.acme.directory_ca_file", "%s holds no PEM certificate", f)
		default:
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			client.HTTPClient = &http.Client{Transport: tr}
		}
	}
	if len(a.Domains) == 0 {
		probs.add("tls.acme.domains", "is required: the host names to get certificates for (public_url's host among them)")
	}
	for i, d := range a.Domains {
		switch {
		case d == "" || strings.ContainsAny(d, "/:* ") || net.ParseIP(d) != nil:
			probs.add(fmt.Sprintf("tls.acme.domains[%d]", i), "%q is not a DNS name", d)
		case !strings.Contains(strings.Trim(d, "."), "."):
			probs.add(fmt.Sprintf("tls.acme.domains[%d]", i), "%q has one label: ACME certificates need a name with a dot", d)
		}
		p.domains = append(p.domains, strings.ToLower(d))
	}
	if u, err := url.Parse(publicURL); err == nil && u.Hostname() != "" && len(a.Domains) > 0 &&
		!slices.Contains(p.domains, strings.ToLower(u.Hostname())) {
		probs.add("tls.acme.domains", "does not list public_url's host %q", u.Hostname())
	}
	if a.CacheDir == "" {
		probs.add("tls.acme.cache_dir", "is required: the directory that keeps the account key and certificates across restarts (without it every start asks the CA again, into its rate limits)")
	}
	if a.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(a.HTTPListen); err != nil {
			probs.add("tls.acme.http_listen", "%q is not host:port", a.HTTPListen)
		}
		p.httpListen = a.HTTPListen
	}
	p.acme = &autocert.Manager{
		// Configuring an ACME CA is accepting its terms (docs/operations.md, "TLS").
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(resolve(a.CacheDir)),
		HostPolicy: autocert.HostWhitelist(p.domains...),
		Email:      a.Email,
		Client:     client,
	}
}

// hstsValue is the Strict-Transport-Security header of h.
func hstsValue(h fileHSTS, probs *problems) (string, bool) {
	age := durationOr(h.MaxAge, defaultHSTSMaxAge)
	if h.MaxAge > 0 && time.Duration(h.MaxAge) < time.Second {
		probs.add("tls.hsts.max_age", "must be at least 1s")
		return "", false
	}
	if h.Preload && (!h.IncludeSubdomains || age < defaultHSTSMaxAge) {
		probs.add("tls.hsts.preload", "needs include_subdomains and a max_age of at least 8760h (what preload lists accept)")
		return "", false
	}
	v := "max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v, true
}

// withHSTS adds Strict-Transport-Security to the responses of TLS requests (the public
// listener with tls set has no others; a browser ignores the header over http anyway).
func withHSTS(h http.Handler, value string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", value)
		}
		h.ServeHTTP(w, r)
	})
}

// publicTLS is the tls.Config of the public listener: TLS 1.2 and up with Go's default
// suites, h2 and http/1.1 (http.Server.ServeTLS adds them), the certificate from certs
// (files) or from the ACME manager. certs is nil for ACME.
func publicTLS(p *tlsPlan, log *slog.Logger) (cfg *tls.Config, certs *certfile.Reloader, err error) {
	if p.acme != nil {
		cfg = p.acme.TLSConfig() // NextProtos h2, http/1.1 and acme-tls/1 (TLS-ALPN-01)
		get := cfg.GetCertificate
		type logLine struct {
			err string
			at  time.Time
		}
		var mu sync.Mutex
		logged := map[string]logLine{} // per domain (bounded by tls.acme.domains): the last error logged
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := get(hello)
			if err != nil && slices.Contains(p.domains, strings.ToLower(hello.ServerName)) {
				// A configured name without a certificate: the CA refused or cannot be
				// reached. Other names are scanners and typos (the host policy's refusal).
				// Every handshake fails the same way until autocert asks again: a line
				// per domain when the error changes, else once a minute.
				domain, now := strings.ToLower(hello.ServerName), time.Now()
				mu.Lock()
				last := logged[domain]
				again := last.err != err.Error() || now.Sub(last.at) >= time.Minute
				if again {
					logged[domain] = logLine{err.Error(), now}
				}
				mu.Unlock()
				if again {
					log.Error("ACME: no certificate for a configured domain", "domain", hello.ServerName, "error", err)
				}
			}
			return c, err
		}
	} else {
		if certs, err = certfile.New(p.certFile, p.keyFile); err != nil {
			return nil, nil, err
		}
		cfg = &tls.Config{GetCertificate: certs.GetCertificate}
		logCert(log, "TLS certificate loaded", certs.Leaf())
	}
	cfg.MinVersion = tls.VersionTLS12
	return cfg, certs, nil
}

func logCert(log *slog.Logger, msg string, leaf *x509.Certificate) {
	log.Info(msg, "subject", leaf.Subject.String(), "dns_names", leaf.DNSNames,
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// warmACME asks for the certificates of every domain once the listeners serve, so that
// the first browser does not wait for the CA (a failure is logged; the next handshake
// asks again).
func warmACME(ctx context.Context, cfg *tls.Config, domains []string) {
	for _, d := range domains {
		if ctx.Err() != nil {
			return
		}
		cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: d,
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.CurveP256},
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	}
}

// acmeHTTPHandler answers HTTP-01 challenges and redirects every other request to the
// same path on public_url's origin.
func acmeHTTPHandler(m *autocert.Manager, publicURL string) http.Handler {
	origin := strings.TrimSuffix(publicURL, "/")
	if u, err := url.Parse(publicURL); err == nil {
		origin = u.Scheme + "://" + u.Host
	}
	challenges := m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, origin+r.URL.RequestURI(), http.StatusPermanentRedirect)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// autocert checks the Host header against tls.acme.domains as it is: without
		// the port of a listener that is not on :80 (behind a port mapping, in tests).
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r = r.Clone(r.Context())
			r.Host = host
		}
		challenges.ServeHTTP(w, r)
	})
}

// reloadCert reads the certificate files again after a configuration reload (the
// reload has checked them: it fails, keeping the running certificate, when the new pair
// does not load). A pair that broke in between is a failed reload too.
func reloadCert(certs *certfile.Reloader, gw interface{ ReloadFailed(error) }, log *slog.Logger) {
	before := certs.Leaf()
	if err := certs.Reload(); err != nil {
		gw.ReloadFailed(err)
		log.Error("TLS certificate not reloaded; the running certificate stays", "error", err)
		return
	}
	if after := certs.Leaf(); !after.Equal(before) {
		logCert(log, "TLS certificate reloaded", after)
	}
}

// tlsFootguns are what `gatehouse check` warns about a certificate from files: one that
// does not cover public_url's host, or that expires within two weeks.
func tlsFootguns(l *loaded) []string {
	if l.tls == nil || l.tls.leaf == nil {
		return nil
	}
	var out []string
	leaf := l.tls.leaf
	if u, err := url.Parse(l.gw.PublicURL); err == nil && leaf.VerifyHostname(u.Hostname()) != nil {
		out = append(out, fmt.Sprintf("tls.cert_file: the certificate (%s) is not valid for public_url's host %q: browsers will refuse it",
			strings.Join(leaf.DNSNames, ", "), u.Hostname()))
	}
	switch left := time.Until(leaf.NotAfter); {
	case left <= 0:
		out = append(out, "tls.cert_file: the certificate expired on "+leaf.NotAfter.UTC().Format(time.DateOnly))
	case left < 14*24*time.Hour:
		out = append(out, "tls.cert_file: the certificate expires on "+leaf.NotAfter.UTC().Format(time.DateOnly)+": renew it")
	}
	return out
}

// tlsMode names the public listener's TLS for the startup log.
func tlsMode(p *tlsPlan) string {
	switch {
	case p == nil:
		return "off"
	case p.acme != nil:
		return "acme"
	}
	return "files"
}
