package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

func TestOnEnd(t *testing.T) {
	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New(memstore.Options{})
	defer st.Close()
	m := &session.Manager{Store: st, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	var heard []string
	remove := m.OnEnd(func(h string) { heard = append(heard, h) })

	a, b := &session.Session{Subject: "alice"}, &session.Session{Subject: "bob"}
	for _, s := range []*session.Session{a, b} {
		if _, err := m.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.End(t.Context(), a.Handle, session.ReasonRevoked); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 || heard[0] != a.Handle {
		t.Fatalf("OnEnd heard %q, want [%q]", heard, a.Handle)
	}
	remove()
	if _, err := m.End(t.Context(), b.Handle, session.ReasonRevoked); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 {
		t.Fatalf("a removed listener still heard %q", heard[1:])
	}

	// A store that is no Broadcaster: ListenForEnds just waits for its context.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { m.ListenForEnds(ctx, func() { t.Error("resync without a subscription") }); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ListenForEnds did not return when its context ended")
	}
}
