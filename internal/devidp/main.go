package devidp

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// Main runs "gatehouse devidp": it builds a Config from --config and the
// flags (flags win), serves until ctx is done and returns the exit code:
// 0 after a clean shutdown, 1 when the provider cannot start, 2 for bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gatehouse devidp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration `file`")
	listen := fs.String("listen", "", "listen `address` (default "+DefaultListen+"; loopback only unless --insecure-allow-any-address)")
	issuer := fs.String("issuer", "", "issuer `URL` (default http://<listen>)")
	accessTTL := fs.Duration("access-token-ttl", 0, "access token lifetime (default 5m)")
	idTTL := fs.Duration("id-token-ttl", 0, "ID token lifetime (default 1h)")
	refreshTTL := fs.Duration("refresh-token-ttl", 0, "refresh token lifetime (default 24h)")
	clientID := fs.String("client-id", "", "register a client with this `id` (quick single-client setup)")
	clientSecret := fs.String("client-secret", "", "the --client-id client's `secret`")
	var redirectURIs, postLogoutURIs stringList
	fs.Var(&redirectURIs, "redirect-uri", "a redirect `URI` of the --client-id client (repeatable)")
	fs.Var(&postLogoutURIs, "post-logout-redirect-uri", "a post-logout redirect `URI` of the --client-id client (repeatable)")
	backchannelURI := fs.String("backchannel-logout-uri", "", "the --client-id client's back-channel logout `URI`")
	insecure := fs.Bool("insecure-allow-any-address", false, "allow a non-loopback --listen address (anyone who can reach it can sign in as anyone)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gatehouse devidp [flags]\n\n%s: an OpenID Connect provider that signs anyone in without a password.\n\n", devNotice)
		fs.PrintDefaults()
	}
	// The usage goes to stdout for --help (asked for), to stderr for a bad flag.
	var parseOut bytes.Buffer
	fs.SetOutput(&parseOut)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(parseOut.Bytes())
			return 0
		}
		stderr.Write(parseOut.Bytes())
		return 2
	}
	fs.SetOutput(stderr)
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "devidp: unexpected arguments %q\n", fs.Args())
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var cfg Config
	if *configPath != "" {
		var err error
		if cfg, err = LoadConfig(*configPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if set["listen"] {
		cfg.Listen = *listen
	}
	if set["issuer"] {
		cfg.Issuer = *issuer
	}
	if set["access-token-ttl"] {
		cfg.AccessTokenTTL = *accessTTL
	}
	if set["id-token-ttl"] {
		cfg.IDTokenTTL = *idTTL
	}
	if set["refresh-token-ttl"] {
		cfg.RefreshTokenTTL = *refreshTTL
	}
	if set["insecure-allow-any-address"] {
		cfg.InsecureAllowAnyAddress = *insecure
	}
	switch {
	case *clientID != "":
		c := Client{ID: *clientID, Secret: *clientSecret, RedirectURIs: redirectURIs,
			PostLogoutRedirectURIs: postLogoutURIs, BackchannelLogoutURI: *backchannelURI}
		replaced := false
		for i := range cfg.Clients {
			if cfg.Clients[i].ID == c.ID {
				cfg.Clients[i], replaced = c, true
			}
		}
		if !replaced {
			cfg.Clients = append(cfg.Clients, c)
		}
	case set["client-secret"] || set["redirect-uri"] || set["post-logout-redirect-uri"] || set["backchannel-logout-uri"]:
		fmt.Fprintln(stderr, "devidp: --client-secret, --redirect-uri, --post-logout-redirect-uri and --backchannel-logout-uri need --client-id")
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}

	// Report every problem, a non-loopback address included, before binding.
	if err := cfg.withDefaults().validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "devidp: %v\n", err)
		return 1
	}
	defer ln.Close()
	if _, port, _ := net.SplitHostPort(cfg.Listen); port == "0" {
		cfg.Listen = ln.Addr().String() // so that the default issuer names the real port
	}
	srv, err := New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Fprintf(stdout, "devidp: %s\ndevidp: issuer %s listening on %s\ndevidp: discovery %s/.well-known/openid-configuration\n",
		devNotice, srv.Issuer(), ln.Addr(), strings.TrimSuffix(srv.Issuer(), "/"))

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "devidp: serving: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintf(stderr, "devidp: shutdown: %v\n", err)
		return 1
	}
	return 0
}
