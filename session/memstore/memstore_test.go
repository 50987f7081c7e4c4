package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/session/sessiontest"
)

func TestConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store { return memstore.New(memstore.Options{}) })
}

func TestSweepRemovesExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	s := memstore.New(memstore.Options{Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	s.Set(ctx, "a", []byte("1"), time.Second)
	s.SetIndexed(ctx, "b", []byte("2"), time.Minute, "ix")
	now = now.Add(2 * time.Second)
	s.Sweep()
	if s.Len() != 1 {
		t.Fatalf("after sweep %d values remain, want 1", s.Len())
	}
	now = now.Add(time.Hour)
	s.Sweep()
	if m, _ := s.Members(ctx, "ix"); s.Len() != 0 || len(m) != 0 {
		t.Fatalf("after sweep %d values and %d members remain", s.Len(), len(m))
	}
}
