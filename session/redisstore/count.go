package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/session"
)

var _ session.Counter = (*Store)(nil)

// scanCount is the COUNT hint of each SCAN: how many keys Redis examines per call, so
// that no single call holds the server for long.
const scanCount = 1000

// Client returns the rueidis client this Store uses, so that the gateway's other users of
// Redis (the rate limiter, [Store.Limiter]) share its connections, credentials, TLS
// settings and deployment mode instead of opening their own.
//
// The client is shared: do not close it; Store.Close closes it, after which it fails
// every command. It bounds nothing by the Store's Timeout: callers set their own
// deadlines.
//
// Client never waits. It returns nil while the Store has no client yet: Open starts
// making one in the background, which for a redis:// or rediss:// URL succeeds even while
// Redis is down (that client redials by itself), and for a sentinel or cluster URL only
// once Redis answers. A call that finds no client starts another attempt in the
// background (one at a time) and returns nil at once, so it can be called on a request's
// path: treat nil as "Redis unavailable" and call again on the next request.
func (s *Store) Client() rueidis.Client {
	if c := s.client.Load(); c != nil {
		return c.Client
	}
	if !s.closed.Load() {
		s.startDial()
	}
	return nil
}

// CountSessions counts the session records under the Store's key prefix with SCAN …
// MATCH <prefix>s:{* COUNT 1000, never KEYS: each call examines about a thousand keys, so
// Redis keeps serving other clients while a large count runs. In a cluster it scans
// every master (a replica holds copies of its master's keys). Each SCAN call is bounded
// by Options.Timeout; the whole count only by ctx.
//
// The count is approximate, as SCAN is: a key created or deleted during the count may or
// may not be counted, and a key may be counted twice if Redis resizes its table (or a
// cluster moves its slot) meanwhile. Expired keys are not counted.
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, errClosed
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	c, err := s.conn(cctx)
	cancel()
	if err != nil {
		return 0, err
	}
	pattern := escapeGlob(s.prefix) + session.RecordKeyPrefix + "*"
	nodes := []rueidis.Client{c}
	if s.cluster {
		if nodes, err = s.masters(ctx, c); err != nil {
			return 0, err
		}
	}
	total := 0
	for _, node := range nodes {
		n, err := s.scan(ctx, node, pattern)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// scan counts the keys of one server that match pattern.
func (s *Store) scan(ctx context.Context, node rueidis.Client, pattern string) (int, error) {
	n := 0
	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("redisstore: count: %w", context.Cause(ctx))
		}
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		page, err := node.Do(cctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(scanCount).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return 0, wrap("count", err)
		}
		n += len(page.Elements)
		if page.Cursor == 0 {
			return n, nil
		}
		cursor = page.Cursor
	}
}

// masters returns a client for each master of the cluster, asking every known node its
// ROLE: the client also knows the replicas, whose keys are copies.
func (s *Store) masters(ctx context.Context, c rueidis.Client) ([]rueidis.Client, error) {
	var out []rueidis.Client
	for addr, node := range c.Nodes() {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		role, err := node.Do(cctx, node.B().Role().Build()).ToArray()
		cancel()
		if err != nil {
			return nil, wrap("count: ROLE of "+addr, err)
		}
		if len(role) == 0 {
			return nil, fmt.Errorf("redisstore: count: empty ROLE reply from %s", addr)
		}
		if kind, _ := role[0].ToString(); kind == "master" {
			out = append(out, node)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("redisstore: count: %w: %w", session.ErrUnavailable, errors.New("no cluster master known"))
	}
	return out, nil
}

// escapeGlob quotes the characters that are special in a Redis MATCH pattern, so that a
// key prefix matches itself only.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := range len(s) { // bytes, not runes: a prefix need not be UTF-8
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
