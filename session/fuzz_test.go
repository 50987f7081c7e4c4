package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

type mapStore map[string][]byte

func (m mapStore) Get(_ context.Context, k string) ([]byte, error) {
	if v, ok := m[k]; ok {
		return v, nil
	}
	return nil, ErrNotFound
}
func (m mapStore) Set(_ context.Context, k string, v []byte, _ time.Duration) error {
	m[k] = v
	return nil
}
func (m mapStore) Delete(_ context.Context, k string) (bool, error) {
	_, ok := m[k]
	delete(m, k)
	return ok, nil
}

// FuzzLoad: any cookie value and any stored bytes give a clean error, never a panic,
// and never a session the cookie did not create.
func FuzzLoad(f *testing.F) {
	ring, _ := NewKeyRing(make([]byte, KeySize))
	m := &Manager{Store: mapStore{}, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	real := &Session{Subject: "alice", Token: Token{AccessToken: "at"}}
	cookie, err := m.Create(context.Background(), real)
	if err != nil {
		f.Fatal(err)
	}
	record, _ := m.Store.Get(context.Background(), recordKey(real.Handle))
	f.Add(cookie, record) // a genuine pair: Load succeeds
	f.Add("", []byte{})
	f.Add(cookie[:10], []byte{1, 200, 1})
	f.Add(cookie, append([]byte{1, 5}, record...))
	f.Fuzz(func(t *testing.T, c string, stored []byte) {
		st := mapStore{}
		fm := &Manager{Store: st, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
		if tk, ok := parseTicket(c); ok {
			st[recordKey(tk.handle())] = stored
		}
		s, err := fm.Load(context.Background(), c)
		if err == nil {
			// Only a genuine cookie and record pair opens (every worker process seals its
			// own, all for alice): fuzzed bytes cannot forge an AES-GCM tag.
			if s.Subject != "alice" || s.Token.AccessToken != "at" {
				t.Fatalf("cookie %q opened a session %+v from fuzzed bytes", c, s)
			}
			return
		}
		if !errors.Is(err, ErrNoSession) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked) && !errors.Is(err, ErrRefreshFailed) {
			t.Fatalf("unexpected error %v", err)
		}
		if _, err := decodeMeta(ring, "s:{x}", stored); err == nil && len(stored) < 10 {
			t.Fatalf("%d bytes decoded as metadata", len(stored))
		}
	})
}
