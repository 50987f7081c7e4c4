package redisstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// An index is a sorted set: member = key (without the prefix), score = the member's
// expiry in Unix milliseconds on the Redis server's clock.

// addMemberScript adds or refreshes ARGV[1] in index KEYS[1] for ARGV[2] ms, prunes
// expired members, and keeps the index key itself alive at least that long.
var addMemberScript = rueidis.NewLuaScriptRetryable(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local pt = redis.call('PTTL', KEYS[1])
if pt == -1 or (pt >= 0 and pt < ttl) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// membersScript lists the members of KEYS[1] that expire after now.
var membersScript = rueidis.NewLuaScriptRetryable(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
`)

// SetIndexed adds key to each index, then stores value. The index sets and the value
// live in different cluster slots, so this is not one transaction: the memberships are
// written first, and a failure before the value leaves only memberships of a key that
// readers will not find.
func (s *Store) SetIndexed(ctx context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	k := s.prefix + key
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	pttl := strconv.FormatInt(ms(ttl), 10)
	err = s.eachIndex(indexes, func(ix string) error {
		return addMemberScript.Exec(ctx, c, []string{ix}, []string{key, pttl}).Error()
	})
	if err != nil {
		return wrap("index", err)
	}
	return s.set(ctx, c, k, value, ttl)
}

// DeleteIndexed deletes key, then removes it from each index.
func (s *Store) DeleteIndexed(ctx context.Context, key string, indexes ...string) (bool, error) {
	k := s.prefix + key
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	s.wrote(k)
	n, err := c.Do(ctx, c.B().Del().Key(k).Build()).AsInt64()
	if err != nil {
		return false, wrap("delete", err)
	}
	err = s.eachIndex(indexes, func(ix string) error {
		return c.Do(ctx, c.B().Zrem().Key(ix).Member(key).Build().ToRetryable()).Error()
	})
	// A membership left behind points at nothing; readers Get each member.
	return n > 0, wrap("unindex", err)
}

// Members lists the keys whose membership of index has not expired.
func (s *Store) Members(ctx context.Context, index string) ([]string, error) {
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	m, err := membersScript.Exec(ctx, c, []string{s.prefix + index}, nil).AsStrSlice()
	if err != nil {
		return nil, wrap("members", err)
	}
	if m == nil {
		m = []string{}
	}
	return m, nil
}

// eachIndex runs fn for every prefixed index name at once (rueidis pipelines the
// commands) and returns the first error.
func (s *Store) eachIndex(indexes []string, fn func(ix string) error) error {
	switch len(indexes) {
	case 0:
		return nil
	case 1:
		return fn(s.prefix + indexes[0])
	}
	errs := make([]error, len(indexes))
	var wg sync.WaitGroup
	for i, ix := range indexes {
		wg.Go(func() { errs[i] = fn(s.prefix + ix) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
