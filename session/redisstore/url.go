package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

type mode int

const (
	modeStandalone mode = iota
	modeSentinel
	modeCluster
)

// target is what a URL names.
type target struct {
	mode               mode
	tls                bool
	addrs              []string
	username, password string
	db                 int
	masterSet          string
}

var schemes = map[string]struct {
	mode mode
	tls  bool
}{
	"redis":           {modeStandalone, false},
	"rediss":          {modeStandalone, true},
	"redis-sentinel":  {modeSentinel, false},
	"rediss-sentinel": {modeSentinel, true},
	"redis-cluster":   {modeCluster, false},
	"rediss-cluster":  {modeCluster, true},
}

// CheckURL reports whether raw is a store URL Open would accept, without connecting.
// Its error never repeats the URL (which may hold a password).
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

// parseURL reads a URL of one of the forms in the package documentation. Its errors
// never repeat the URL, which may hold a password.
func parseURL(raw string) (*target, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("redisstore: URL: "+format, a...)
	}
	if raw == "" {
		return nil, bad("missing (want redis://host:port/db, redis-sentinel://…, redis-cluster://…)")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, bad("no scheme (want redis://, rediss://, redis-sentinel://, redis-cluster://…)")
	}
	sch, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return nil, bad("unknown scheme %q (want redis, rediss, redis-sentinel, rediss-sentinel, redis-cluster or rediss-cluster)", scheme)
	}
	t := &target{mode: sch.mode, tls: sch.tls}

	// The host list is not one host, which net/url cannot parse when it starts with
	// an IPv6 literal: cut it out by hand and let net/url read the rest.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	u, err := url.Parse("x://" + userinfo + "h" + tail)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("%v", err)
	}
	if u.User != nil {
		t.username = u.User.Username()
		t.password, _ = u.User.Password()
	}
	if u.Fragment != "" {
		return nil, bad("unexpected fragment")
	}

	defPort := "6379"
	if t.mode == modeSentinel {
		defPort = "26379"
	}
	for h := range strings.SplitSeq(hosts, ",") {
		addr, err := hostPort(h, defPort)
		if err != nil {
			return nil, bad("%v", err)
		}
		t.addrs = append(t.addrs, addr)
	}
	if t.mode == modeStandalone && len(t.addrs) > 1 {
		return nil, bad("%s:// takes one host; use redis-cluster:// or redis-sentinel:// for several", scheme)
	}

	q := u.Query()
	for name := range q {
		if name != "db" {
			return nil, bad("unknown parameter %q (only db is accepted)", name)
		}
	}
	path := strings.TrimSuffix(u.Path, "/")
	dbFromPath := false
	switch t.mode {
	case modeStandalone, modeCluster:
		if p := strings.TrimPrefix(path, "/"); p != "" {
			if t.db, err = parseDB(p); err != nil {
				return nil, bad("%v", err)
			}
			dbFromPath = true
		}
	case modeSentinel:
		t.masterSet = strings.TrimPrefix(path, "/")
		if t.masterSet == "" || strings.Contains(t.masterSet, "/") {
			return nil, bad("a sentinel URL names the master set as its path: redis-sentinel://host:26379/mymaster")
		}
	}
	if q.Has("db") {
		if dbFromPath {
			return nil, bad("the database is given twice (path and db parameter)")
		}
		if t.db, err = parseDB(q.Get("db")); err != nil {
			return nil, bad("%v", err)
		}
	}
	if t.mode == modeCluster && t.db != 0 {
		return nil, bad("Redis Cluster has only database 0")
	}
	return t, nil
}

func parseDB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid database number %q", s)
	}
	return n, nil
}

// hostPort validates one host[:port] and adds the default port when it is missing.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a name, an IPv4 address or a bracketed IPv6 literal.
		host, port = h, defPort
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			host = h[1 : len(h)-1]
		} else if strings.Contains(h, ":") {
			return "", fmt.Errorf("invalid host %q (bracket IPv6 literals: [::1]:6379)", h)
		}
	}
	if host == "" || strings.ContainsAny(host, "[]/@ ") {
		return "", fmt.Errorf("invalid host %q", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("invalid port in %q", h)
	}
	return net.JoinHostPort(host, port), nil
}
