package sessiontest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

func newManager(t *testing.T, s session.Store, idle, absolute time.Duration, keys ...[]byte) *session.Manager {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{session.NewRandomKey()}
	}
	ring, err := session.NewKeyRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return &session.Manager{Store: s, Keys: ring, IdleTimeout: idle, AbsoluteTimeout: absolute, LockTTL: 10 * time.Second}
}

func sample(sub string) *session.Session {
	return &session.Session{
		Subject: sub, Issuer: "https://idp.example", ProviderSID: "psid-" + sub,
		Frontend: "shop", Provider: "customers",
		UserAgent: "TestAgent/1.0", IP: "192.0.2.1",
		Claims:  map[string]any{"sub": sub, "email": sub + "@mail.example", "groups": []any{"staff"}},
		IDToken: "eyJ.idtoken-" + sub,
		Token: session.Token{AccessToken: "access-" + sub, TokenType: "Bearer",
			Expiry: time.Now().Add(time.Hour).Round(time.Second), RefreshToken: "refresh-" + sub},
	}
}

func testManager(t *testing.T, open func(*testing.T) session.Store) {
	t.Run("CreateLoad", func(t *testing.T) {
		st := open(t)
		m := newManager(t, st, time.Minute, time.Hour)
		in := sample("alice")
		cookie, err := m.Create(ctx(t), in)
		if err != nil {
			t.Fatal(err)
		}
		if len(cookie) < 43 || strings.Contains(cookie, in.Handle) {
			t.Fatalf("cookie %q is too short or contains the public handle", cookie)
		}
		if !session.ValidHandle(in.Handle) {
			t.Fatalf("handle %q is not valid", in.Handle)
		}
		got, err := m.Load(ctx(t), cookie)
		if err != nil {
			t.Fatal(err)
		}
		if got.Handle != in.Handle || got.Subject != "alice" || got.ProviderSID != "psid-alice" ||
			got.Token.AccessToken != "access-alice" || got.Token.RefreshToken != "refresh-alice" ||
			!got.Token.Expiry.Equal(in.Token.Expiry) || got.IDToken != in.IDToken ||
			got.Claims["email"] != "alice@mail.example" || got.UserAgent != "TestAgent/1.0" ||
			got.Frontend != "shop" || got.Provider != "customers" {
			t.Fatalf("loaded session differs: %+v", got)
		}
		// Encrypted at rest: the store's bytes hold no token, claim or metadata in clear.
		raw, err := st.Get(ctx(t), "s:{"+in.Handle+"}")
		if err != nil {
			t.Fatalf("record not under its documented key: %v", err)
		}
		for _, secret := range []string{"access-alice", "refresh-alice", "idtoken-alice", "alice@mail.example", "alice", "TestAgent", "192.0.2.1"} {
			if strings.Contains(string(raw), secret) {
				t.Fatalf("stored record contains %q in clear", secret)
			}
		}
	})
	t.Run("BadCookies", func(t *testing.T) {
		m := newManager(t, open(t), time.Minute, time.Hour)
		cookie, err := m.Create(ctx(t), sample("bob"))
		if err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]string{
			"empty": "", "garbage": "not-a-cookie", "truncated": cookie[:len(cookie)-2],
			"padded": cookie + "AA", "bad base64": strings.Repeat("!", len(cookie)),
		} {
			if _, err := m.Load(ctx(t), c); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("%s cookie: err = %v, want ErrNoSession", name, err)
			}
		}
		// Same id, flipped key bit: the record exists but does not open.
		tampered := []byte(cookie)
		last := len(tampered) - 3
		if tampered[last] == 'A' {
			tampered[last] = 'B'
		} else {
			tampered[last] = 'A'
		}
		if _, err := m.Load(ctx(t), string(tampered)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("tampered key: err = %v, want ErrNoSession", err)
		}
		// A well-formed cookie for a session that does not exist.
		other := newManager(t, open(t), time.Minute, time.Hour)
		foreign, _ := other.Create(ctx(t), sample("eve"))
		if _, err := m.Load(ctx(t), foreign); !errors.Is(err, session.ErrExpired) {
			t.Errorf("unknown session: err = %v, want ErrExpired", err)
		}
	})
	t.Run("IdleExpiry", func(t *testing.T) {
		m := newManager(t, open(t), 600*time.Millisecond, time.Hour)
		s := sample("carol")
		cookie, err := m.Create(ctx(t), s)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // kept alive by use
			time.Sleep(300 * time.Millisecond)
			cur, err := m.Load(ctx(t), cookie)
			if err != nil {
				t.Fatalf("active session ended: %v", err)
			}
			touched, err := m.Touch(ctx(t), cur, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !touched.LastSeen.After(cur.LastSeen) || time.Until(m.IdleExpiry(touched)) < 500*time.Millisecond {
				t.Fatalf("Touch did not report the extended idle expiry: %v", m.IdleExpiry(touched))
			}
		}
		time.Sleep(900 * time.Millisecond)
		if _, err := m.Load(ctx(t), cookie); !errors.Is(err, session.ErrExpired) {
			t.Fatalf("idle session: err = %v, want ErrExpired", err)
		}
	})
	t.Run("AbsoluteExpiry", func(t *testing.T) {
		m := newManager(t, open(t), time.Minute, 800*time.Millisecond)
		cookie, err := m.Create(ctx(t), sample("dave"))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			time.Sleep(300 * time.Millisecond)
			cur, err := m.Load(ctx(t), cookie)
			if err != nil {
				t.Fatalf("session ended before its absolute timeout: %v", err)
			}
			if _, err := m.Touch(ctx(t), cur, 0); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
		if _, err := m.Load(ctx(t), cookie); !errors.Is(err, session.ErrExpired) {
			t.Fatalf("session past its absolute timeout: err = %v, want ErrExpired", err)
		}
		// ExpiresAt set by the caller (a refresh token's end) is honoured when sooner.
		s := sample("dave2")
		s.ExpiresAt = time.Now().Add(300 * time.Millisecond)
		c2, err := m.Create(ctx(t), s)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if _, err := m.Load(ctx(t), c2); !errors.Is(err, session.ErrExpired) {
			t.Fatalf("session past its own ExpiresAt: err = %v", err)
		}
	})
	t.Run("EndAndTombstones", func(t *testing.T) {
		m := newManager(t, open(t), time.Minute, time.Hour)
		s1, s2 := sample("erin"), sample("erin")
		c1, _ := m.Create(ctx(t), s1)
		c2, _ := m.Create(ctx(t), s2)
		ended, err := m.End(ctx(t), s1.Handle, session.ReasonRevoked)
		if err != nil || !ended {
			t.Fatalf("End = %v, %v", ended, err)
		}
		if _, err := m.Load(ctx(t), c1); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("ended session: err = %v, want ErrRevoked", err)
		}
		if ended, _ := m.End(ctx(t), s1.Handle, session.ReasonRevoked); ended {
			t.Fatal("ending an ended session reported success")
		}
		if _, err := m.End(ctx(t), s2.Handle, session.ReasonRefreshFailed); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Load(ctx(t), c2); !errors.Is(err, session.ErrRefreshFailed) {
			t.Fatalf("err = %v, want ErrRefreshFailed", err)
		}
		if ended, err := m.End(ctx(t), "not a handle", session.ReasonRevoked); ended || err != nil {
			t.Fatalf("End(garbage) = %v, %v", ended, err)
		}
	})
	t.Run("SaveDoesNotResurrect", func(t *testing.T) {
		m := newManager(t, open(t), time.Minute, time.Hour)
		s := sample("frank")
		cookie, _ := m.Create(ctx(t), s)
		loaded, err := m.Load(ctx(t), cookie)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.End(ctx(t), s.Handle, session.ReasonRevoked); err != nil {
			t.Fatal(err)
		}
		loaded.Token.AccessToken = "new"
		if err := m.Save(ctx(t), loaded); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("Save of an ended session: err = %v, want ErrRevoked", err)
		}
		if _, err := m.Load(ctx(t), cookie); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("ended session came back: err = %v", err)
		}
	})
	t.Run("RestoredRecordStaysEnded", func(t *testing.T) {
		// A backup restore or a stale writer puts an ended session's record back: the
		// tombstone still ends it, for Load, Reload and the lists.
		st := open(t)
		m := newManager(t, st, time.Minute, time.Hour)
		s := sample("rita")
		cookie, _ := m.Create(ctx(t), s)
		loaded, err := m.Load(ctx(t), cookie)
		if err != nil {
			t.Fatal(err)
		}
		key := session.RecordKeyPrefix + s.Handle + "}"
		old, err := st.Get(ctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		old = slices.Clone(old)
		if _, err := m.End(ctx(t), s.Handle, session.ReasonRevoked); err != nil {
			t.Fatal(err)
		}
		restore := st.Set
		if ix, ok := st.(session.Indexer); ok {
			// Restored with its index memberships, as a snapshot would hold them.
			restore = func(c context.Context, k string, v []byte, ttl time.Duration) error {
				return ix.SetIndexed(c, k, v, ttl, m.KeyRing().IndexNames("sub", "rita")[0])
			}
		}
		if err := restore(ctx(t), key, old, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Load(ctx(t), cookie); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("Load of a restored record: err = %v, want ErrRevoked", err)
		}
		if _, err := m.Reload(ctx(t), loaded); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("Reload of a restored record: err = %v, want ErrRevoked", err)
		}
		if _, err := m.Peek(ctx(t), s.Handle); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Peek of a restored record: err = %v, want ErrNotFound", err)
		}
		if _, ok := st.(session.Indexer); ok {
			if l, err := m.ListSubject(ctx(t), "rita"); err != nil || len(l) != 0 {
				t.Fatalf("a restored record is listed: %v, %v", l, err)
			}
		}
		// A second Manager (another replica, with its own decoded cache) agrees.
		other := &session.Manager{Store: st, Keys: m.Keys, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour}
		if _, err := other.Load(ctx(t), cookie); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("another Manager loads a restored record: err = %v", err)
		}
	})
	t.Run("Lists", func(t *testing.T) {
		st := open(t)
		if _, ok := st.(session.Indexer); !ok {
			t.Skip("store is not a session.Indexer")
		}
		m := newManager(t, st, time.Minute, time.Hour)
		a1, a2, b := sample("gina"), sample("gina"), sample("hank")
		a2.ProviderSID = "other-psid"
		for _, s := range []*session.Session{a1, a2, b} {
			if _, err := m.Create(ctx(t), s); err != nil {
				t.Fatal(err)
			}
		}
		list, err := m.ListSubject(ctx(t), "gina")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Fatalf("ListSubject(gina) = %d sessions, want 2", len(list))
		}
		for _, s := range list {
			if s.Token.AccessToken != "" || s.Claims != nil || s.IDToken != "" {
				t.Fatal("listing exposed a session's secrets")
			}
			if s.Subject != "gina" || s.UserAgent != "TestAgent/1.0" || s.CreatedAt.IsZero() {
				t.Fatalf("listed metadata incomplete: %+v", s)
			}
		}
		byPSID, err := m.ListProviderSession(ctx(t), "https://idp.example", "psid-gina")
		if err != nil || len(byPSID) != 1 || byPSID[0].Handle != a1.Handle {
			t.Fatalf("ListProviderSession = %v, %v", byPSID, err)
		}
		if other, _ := m.ListProviderSession(ctx(t), "https://other.example", "psid-gina"); len(other) != 0 {
			t.Fatal("provider session ids of another issuer matched")
		}
		if _, err := m.End(ctx(t), a1.Handle, session.ReasonRevoked); err != nil {
			t.Fatal(err)
		}
		list, _ = m.ListSubject(ctx(t), "gina")
		if len(list) != 1 || list[0].Handle != a2.Handle {
			t.Fatalf("after End, ListSubject = %v", list)
		}
		if l, _ := m.ListProviderSession(ctx(t), "https://idp.example", "psid-gina"); len(l) != 0 {
			t.Fatal("ended session still listed by provider session id")
		}
	})
	t.Run("CountSessions", func(t *testing.T) {
		st := open(t)
		c, ok := st.(session.Counter)
		if !ok {
			t.Skip("store is not a session.Counter")
		}
		count := func(want int) {
			t.Helper()
			n, err := c.CountSessions(ctx(t))
			if err != nil {
				t.Fatalf("CountSessions: %v", err)
			}
			if n != want {
				t.Fatalf("CountSessions = %d, want %d", n, want)
			}
		}
		count(0)
		m := newManager(t, st, time.Minute, time.Hour)
		var handles []string
		for _, sub := range []string{"kate", "kate", "liam"} {
			s := sample(sub)
			if _, err := m.Create(ctx(t), s); err != nil {
				t.Fatal(err)
			}
			handles = append(handles, s.Handle)
		}
		// Keys of every other kind the gateway stores do not count: a login flow, a used
		// logout token, a lease, look-alikes of a record key.
		for _, k := range []string{"f:flow", "j:jti", "t:{x}", "sub:x", "psid:x", "s:", "s{x}", "xs:{x}", "S:{x}"} {
			if err := st.Set(ctx(t), k, []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if l, ok := st.(session.Locker); ok {
			release, err := l.Lock(ctx(t), "l:{"+handles[0]+"}", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
		}
		count(3)
		if ended, err := m.End(ctx(t), handles[0], session.ReasonRevoked); err != nil || !ended {
			t.Fatalf("End = %v, %v", ended, err)
		}
		count(2) // and its tombstone does not count
		// An expired record does not count.
		if err := st.Set(ctx(t), "s:{short}", []byte("v"), 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		count(3)
		time.Sleep(400 * time.Millisecond)
		count(2)
	})
	t.Run("KeyRotation", func(t *testing.T) {
		st := open(t)
		k1, k2 := session.NewRandomKey(), session.NewRandomKey()
		before := newManager(t, st, time.Minute, time.Hour, k1)
		s := sample("ivy")
		cookie, _ := before.Create(ctx(t), s)
		after := newManager(t, st, time.Minute, time.Hour, k2, k1)
		got, err := after.Load(ctx(t), cookie)
		if err != nil {
			t.Fatalf("rotated ring cannot load an older session: %v", err)
		}
		if err := after.Save(ctx(t), got); err != nil { // re-sealed under k2
			t.Fatal(err)
		}
		if _, ok := st.(session.Indexer); ok {
			if l, err := after.ListSubject(ctx(t), "ivy"); err != nil || len(l) != 1 {
				t.Fatalf("after rotation ListSubject = %v, %v", l, err)
			}
		}
		onlyNew := newManager(t, st, time.Minute, time.Hour, k2)
		if _, err := onlyNew.Load(ctx(t), cookie); err != nil {
			t.Fatalf("re-saved session does not open with the new key alone: %v", err)
		}
		if _, err := after.End(ctx(t), s.Handle, session.ReasonRevoked); err != nil {
			t.Fatal(err)
		}
		if l, _ := after.ListSubject(ctx(t), "ivy"); len(l) != 0 {
			t.Fatalf("ended session still listed under an old index name: %v", l)
		}
	})
	t.Run("RollingRotationWithAcceptedKeys", func(t *testing.T) {
		// Two replicas share a store. The new key is accepted by both before either
		// seals with it; at every step each replica reads and finds what the other wrote.
		st := open(t)
		oldKey, newKey := session.NewRandomKey(), session.NewRandomKey()
		ring := func(keys, accepted [][]byte) *session.KeyRing {
			r, err := session.NewKeyRingAccepting(keys, accepted)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		a := newManager(t, st, time.Minute, time.Hour, oldKey)
		b := newManager(t, st, time.Minute, time.Hour, oldKey)
		_, indexed := st.(session.Indexer)
		steps := []struct {
			name string
			a, b *session.KeyRing
		}{
			{"b accepts", ring([][]byte{oldKey}, nil), ring([][]byte{oldKey}, [][]byte{newKey})},
			{"both accept", ring([][]byte{oldKey}, [][]byte{newKey}), ring([][]byte{oldKey}, [][]byte{newKey})},
			{"b seals with the new key", ring([][]byte{oldKey}, [][]byte{newKey}), ring([][]byte{newKey, oldKey}, nil)},
			{"both seal with the new key", ring([][]byte{newKey, oldKey}, nil), ring([][]byte{newKey, oldKey}, nil)},
		}
		for i, step := range steps {
			a.SetKeys(step.a)
			b.SetKeys(step.b)
			for _, w := range []struct {
				name          string
				writer, other *session.Manager
			}{{"a writes", a, b}, {"b writes", b, a}} {
				sub := fmt.Sprintf("step%d-%s", i, w.name[:1])
				s := sample(sub)
				cookie, err := w.writer.Create(ctx(t), s)
				if err != nil {
					t.Fatal(err)
				}
				got, err := w.other.Load(ctx(t), cookie)
				if err != nil {
					t.Fatalf("%s, %s: the other cannot load it: %v", step.name, w.name, err)
				}
				if indexed {
					if l, err := w.other.ListSubject(ctx(t), sub); err != nil || len(l) != 1 {
						t.Fatalf("%s, %s: the other lists %v, %v", step.name, w.name, l, err)
					}
				}
				// The other re-seals it (a touch); the writer still reads it.
				fresh, err := w.other.Reload(ctx(t), got)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.other.Save(ctx(t), fresh); err != nil {
					t.Fatal(err)
				}
				if _, err := w.writer.Load(ctx(t), cookie); err != nil {
					t.Fatalf("%s, %s: re-sealed by the other, the writer cannot load it: %v", step.name, w.name, err)
				}
				if ended, err := w.writer.End(ctx(t), s.Handle, session.ReasonRevoked); err != nil || !ended {
					t.Fatalf("End = %v, %v", ended, err)
				}
				if indexed {
					if l, _ := w.other.ListSubject(ctx(t), sub); len(l) != 0 {
						t.Fatalf("%s, %s: ended session still listed: %v", step.name, w.name, l)
					}
				}
			}
		}
		// An accepted key never seals: a ring without it reads what a ring accepting it wrote.
		acc := newManager(t, st, time.Minute, time.Hour)
		acc.SetKeys(ring([][]byte{oldKey}, [][]byte{newKey}))
		s := sample("vera")
		cookie, _ := acc.Create(ctx(t), s)
		if _, err := newManager(t, st, time.Minute, time.Hour, oldKey).Load(ctx(t), cookie); err != nil {
			t.Fatalf("a record written by a ring with an accepted key needs that key: %v", err)
		}
	})
	t.Run("LockSerialisesWriters", func(t *testing.T) {
		st := open(t)
		if _, shared := st.(session.Locker); !shared {
			t.Skip("store is not a session.Locker")
		}
		key := session.NewRandomKey()
		m := newManager(t, st, time.Minute, time.Hour, key)
		// A second manager over the same store stands for another replica.
		m2 := newManager(t, st, time.Minute, time.Hour, key)
		s := sample("jack")
		s.Claims["n"] = float64(0)
		cookie, _ := m.Create(ctx(t), s)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mgr := m
				if i%2 == 1 {
					mgr = m2
				}
				cur, err := mgr.Load(ctx(t), cookie)
				if err != nil {
					t.Error(err)
					return
				}
				release, err := mgr.Lock(ctx(t), cur)
				if err != nil {
					t.Error(err)
					return
				}
				defer release()
				cur, err = mgr.Reload(ctx(t), cur)
				if err != nil {
					t.Error(err)
					return
				}
				cur.Claims["n"] = cur.Claims["n"].(float64) + 1
				if err := mgr.Save(ctx(t), cur); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got, err := m.Load(ctx(t), cookie)
		if err != nil {
			t.Fatal(err)
		}
		if got.Claims["n"] != float64(20) {
			t.Fatalf("after 20 locked increments n = %v: updates were lost", got.Claims["n"])
		}
	})
	t.Run("Flows", func(t *testing.T) {
		st := open(t)
		m := newManager(t, st, time.Minute, time.Hour)
		key, err := m.PutFlow(ctx(t), "state-1", []byte(`{"v":"verifier"}`), 400*time.Millisecond)
		if err != nil || len(key) != session.KeySize {
			t.Fatalf("PutFlow = %d-byte key, %v", len(key), err)
		}
		// A dump of the store holds neither the state nor the flow in clear.
		if _, err := st.Get(ctx(t), "f:state-1"); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("the flow is stored under its state in clear: %v", err)
		}
		// Another browser's key does not open it, and does not consume it either.
		if _, err := m.TakeFlow(ctx(t), "state-1", session.NewRandomKey()); !errors.Is(err, session.ErrDecrypt) {
			t.Fatalf("TakeFlow with another key: %v, want ErrDecrypt", err)
		}
		got, err := m.TakeFlow(ctx(t), "state-1", key)
		if err != nil || string(got) != `{"v":"verifier"}` {
			t.Fatalf("TakeFlow = %q, %v", got, err)
		}
		if _, err := m.TakeFlow(ctx(t), "state-1", key); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("second TakeFlow: %v, want ErrNotFound", err)
		}
		if _, err := m.TakeFlow(ctx(t), "never-started", key); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("TakeFlow of an unknown state: %v, want ErrNotFound", err)
		}
		// Racing callbacks: exactly one completes the login.
		key2, _ := m.PutFlow(ctx(t), "state-2", []byte("x"), time.Minute)
		taken := winners(t, 16, func(int) (bool, error) {
			_, err := m.TakeFlow(ctx(t), "state-2", key2)
			if errors.Is(err, session.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		})
		if taken != 1 {
			t.Fatalf("%d racing TakeFlows succeeded, want exactly 1", taken)
		}
		// A flow ends with its ttl.
		key3, _ := m.PutFlow(ctx(t), "state-3", []byte("x"), 300*time.Millisecond)
		time.Sleep(600 * time.Millisecond)
		if _, err := m.TakeFlow(ctx(t), "state-3", key3); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("TakeFlow after the ttl: %v, want ErrNotFound", err)
		}
	})
	t.Run("AddOnce", func(t *testing.T) {
		st := open(t)
		m := newManager(t, st, time.Minute, time.Hour)
		if added, err := m.AddOnce(ctx(t), "iss\x00jti-1", 300*time.Millisecond); err != nil || !added {
			t.Fatalf("first AddOnce = %v, %v", added, err)
		}
		if added, err := m.AddOnce(ctx(t), "iss\x00jti-1", time.Minute); err != nil || added {
			t.Fatalf("second AddOnce = %v, %v; want false", added, err)
		}
		if err := m.ForgetOnce(ctx(t), "iss\x00jti-1"); err != nil {
			t.Fatal(err)
		}
		if added, err := m.AddOnce(ctx(t), "iss\x00jti-1", 300*time.Millisecond); err != nil || !added {
			t.Fatalf("AddOnce after ForgetOnce = %v, %v; want true", added, err)
		}
		time.Sleep(600 * time.Millisecond)
		if added, err := m.AddOnce(ctx(t), "iss\x00jti-1", time.Minute); err != nil || !added {
			t.Fatalf("AddOnce after the ttl = %v, %v; want true", added, err)
		}
		// Concurrent callers, on two managers over one store when it is shared by replicas
		// (an Adder); within one manager otherwise: exactly one sees true.
		m2 := m
		if _, ok := st.(session.Adder); ok {
			m2 = newManager(t, st, time.Minute, time.Hour)
		}
		added := winners(t, 16, func(i int) (bool, error) {
			if i%2 == 1 {
				return m2.AddOnce(ctx(t), "contended", time.Minute)
			}
			return m.AddOnce(ctx(t), "contended", time.Minute)
		})
		if added != 1 {
			t.Fatalf("%d concurrent AddOnce calls saw true, want exactly 1", added)
		}
	})
	t.Run("Observe", func(t *testing.T) {
		st := open(t)
		m := newManager(t, st, time.Minute, time.Hour)
		var mu sync.Mutex
		var ops []string
		m.Observe = func(op string, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if d < 0 {
				t.Errorf("%s took %v", op, d)
			}
			if err != nil && !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s failed: %v", op, err)
			}
			ops = append(ops, op)
		}
		s := sample("olga")
		cookie, err := m.Create(ctx(t), s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Load(ctx(t), cookie); err != nil {
			t.Fatal(err)
		}
		if _, err := m.End(ctx(t), s.Handle, session.ReasonRevoked); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Load(ctx(t), cookie); !errors.Is(err, session.ErrRevoked) {
			t.Fatal(err)
		}
		key, _ := m.PutFlow(ctx(t), "st", []byte("x"), time.Minute)
		m.TakeFlow(ctx(t), "st", key)
		m.AddOnce(ctx(t), "id", time.Minute)
		m.Ping(ctx(t))
		mu.Lock()
		defer mu.Unlock()
		// Every store operation was seen, and each by a name Ops lists.
		for _, op := range ops {
			if !slices.Contains(session.Ops(), op) {
				t.Errorf("Observe got %q, which session.Ops does not list", op)
			}
		}
		write, del := session.OpSet, session.OpDelete
		if _, ok := st.(session.Indexer); ok {
			write, del = session.OpSetIndexed, session.OpDeleteIndexed
		}
		end := []string{session.OpGet, session.OpSet, del} // End: read, tombstone, delete
		if _, ok := st.(session.Broadcaster); ok {
			end = append(end, session.OpPublish) // and tell the other processes
		}
		want := []string{
			write,                        // Create
			session.OpGet, session.OpGet, // Load: record, no tombstone
		}
		want = append(want, end...)
		want = append(want,
			session.OpGet, session.OpGet, // Load: record gone, tombstone
			session.OpSet,                   // PutFlow
			session.OpGet, session.OpDelete, // TakeFlow
		)
		if !slices.Equal(ops[:min(len(ops), len(want))], want) {
			t.Fatalf("observed %v,\nwant it to start with %v", ops, want)
		}
		rest := ops[len(want):]
		if len(rest) == 0 || (rest[0] != session.OpAdd && rest[0] != session.OpGet && rest[0] != session.OpGetFresh) {
			t.Fatalf("AddOnce was not observed: %v", rest)
		}
		if _, ok := st.(session.Pinger); ok && rest[len(rest)-1] != session.OpPing {
			t.Fatalf("Ping was not observed: %v", rest)
		}
	})
}
