package redisstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// A Lock whose reply comes too late has still taken the lease on Redis: Lock releases
// it, so that the session is not blocked for the lease's whole ttl by a holder that
// does not know it holds it.
func TestLockReleasesALeaseTakenAfterATimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := redistest.NewProxy(t, srv.Addr)
	st := open(t, redisstore.Options{URL: p.URL(), KeyPrefix: "orphan:", Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	// Load the scripts first: a NOSCRIPT reply held back would keep the lease from being
	// taken at all, which is not the case under test.
	release, err := st.Lock(ctx, "l:{warm}", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	release()

	p.Delay(time.Second)
	if _, err := st.Lock(ctx, "l:{x}", 30*time.Second); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Lock with its reply delayed past the timeout: %v, want an error wrapping session.ErrUnavailable", err)
	}
	// The SET ran on Redis. The release cannot be answered while the replies come a
	// second late (each new connection's handshake times out); it is done once Redis
	// answers in time again, without anyone calling Lock.
	p.Forward()
	deadline := time.Now().Add(3 * time.Second)
	for {
		pttl := srv.Do(t, "PTTL", "orphan:l:{x}").(int64)
		if pttl == -2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3 s after Redis answers again, the failed Lock's lease is still held (PTTL %d ms): an orphan", pttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	release, err = st.Lock(ctx, "l:{x}", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	release()
}
