package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

// TestUnknownServerKey: a record sealed with a server key the ring lacks is ErrNoSession,
// and says why (ErrUnknownKey), unlike a cookie whose key does not open the record.
func TestUnknownServerKey(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	ring := func(k []byte) *session.KeyRing {
		r, err := session.NewKeyRing(k)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := &session.Manager{Store: st, Keys: ring(session.NewRandomKey()), IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	cookie, err := a.Create(t.Context(), &session.Session{Subject: "u"})
	if err != nil {
		t.Fatal(err)
	}
	b := &session.Manager{Store: st, Keys: ring(session.NewRandomKey()), IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	if _, err := b.Load(t.Context(), cookie); !errors.Is(err, session.ErrNoSession) || !errors.Is(err, session.ErrUnknownKey) {
		t.Fatalf("Load with a ring lacking the key: %v, want ErrNoSession and ErrUnknownKey", err)
	}
	other, _ := a.Create(t.Context(), &session.Session{Subject: "v"})
	forged := cookie[:len(cookie)/2] + other[len(other)/2:]
	if _, err := a.Load(t.Context(), forged); errors.Is(err, session.ErrUnknownKey) {
		t.Fatalf("a mismatched cookie reported an unknown server key: %v", err)
	}
}
