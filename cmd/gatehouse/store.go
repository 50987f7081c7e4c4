package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/boltstore"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
)

// redisOptions are the resolved (read from files) parts of session.redis.
type redisOptions struct {
	password, sentinelPassword string
	caPEM                      []byte
}

var redisSchemes = []string{"redis", "rediss", "redis-sentinel", "rediss-sentinel", "redis-cluster", "rediss-cluster"}

// checkStoreURL validates session.store without opening anything.
func checkStoreURL(raw string, probs *problems) {
	if raw == "memory" {
		return
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	switch {
	case !ok:
		probs.add("session.store", "%q is not memory, bolt:///path/sessions.db or a redis:// URL", raw)
	case scheme == "bolt":
		if rest == "" || rest == "/" {
			probs.add("session.store", "%q names no file (bolt:///var/lib/gatehouse/sessions.db)", raw)
		}
	case isRedis(scheme):
		// Parsed for real by redisstore.Open, which lists every problem; a dry run here
		// keeps `check` offline.
		if err := redisstore.CheckURL(raw); err != nil {
			probs.add("session.store", "%v", err)
		}
	default:
		probs.add("session.store", "%q: unknown store %q (use memory, bolt, redis, rediss, redis-sentinel or redis-cluster)", redactURL(raw), scheme)
	}
}

func isRedis(scheme string) bool {
	for _, s := range redisSchemes {
		if s == scheme {
			return true
		}
	}
	return false
}

// redactURL hides a password in a store URL before it is printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// openStore opens the store session.store names. base resolves relative file paths.
func openStore(ctx context.Context, l *loaded, base string) (session.Store, error) {
	if l.storeURL == "memory" {
		return memstore.New(memstore.Options{}), nil
	}
	scheme, rest, _ := strings.Cut(l.storeURL, "://")
	scheme = strings.ToLower(scheme)
	switch {
	case scheme == "bolt":
		path := rest // bolt:///abs/path, or bolt://relative/path
		if !filepath.IsAbs(path) {
			path = filepath.Join(base, path)
		}
		return boltstore.Open(boltstore.Options{Path: path})
	case isRedis(scheme):
		rd := l.file.Session.Redis
		opts := redisstore.Options{
			URL: l.storeURL, Username: rd.Username, Password: l.redis.password,
			SentinelUsername: rd.SentinelUsername, SentinelPassword: l.redis.sentinelPassword,
			KeyPrefix: rd.KeyPrefix, DialTimeout: time.Duration(rd.DialTimeout), Timeout: time.Duration(rd.Timeout),
			ClientCacheTTL: time.Duration(rd.ClientCacheTTL), InsecureSkipTLSVerify: rd.InsecureSkipTLSVerify,
		}
		if rd.ClientCache != nil {
			opts.DisableClientCache = !*rd.ClientCache
		}
		if len(l.redis.caPEM) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(l.redis.caPEM) {
				return nil, errors.New("session.redis.tls_ca_file: no PEM certificate in the file")
			}
			opts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		return redisstore.Open(ctx, opts)
	}
	return nil, fmt.Errorf("session.store: unsupported store %q", redactURL(l.storeURL))
}

// limiterFor returns the rate limiter to use with store: shared through the session
// store's Redis when the store is Redis, so that replicas behind one balancer count
// together; else nil (the gateway's default, in memory).
func limiterFor(store session.Store, l *loaded) ratelimit.Limiter {
	rs, ok := store.(*redisstore.Store)
	if !ok {
		return nil
	}
	return rs.Limiter(redisstore.LimiterOptions{Prefix: l.file.Session.Redis.KeyPrefix + "rl:"})
}
