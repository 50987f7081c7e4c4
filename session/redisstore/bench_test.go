package redisstore_test

import (
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// BenchmarkGet measures the hot path: a session read that the client-side cache
// answers, against one that goes to Redis.
func BenchmarkGet(b *testing.B) {
	srv := redistest.Start(b)
	for _, bc := range []struct {
		name  string
		fresh bool
	}{{"Cached", false}, {"Fresh", true}} {
		b.Run(bc.name, func(b *testing.B) {
			st, err := redisstore.Open(b.Context(), redisstore.Options{URL: srv.URL, KeyPrefix: "bench:"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx := b.Context()
			if err := st.Set(ctx, "s:{h}", make([]byte, 1500), time.Hour); err != nil {
				b.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // past the own-write window
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if bc.fresh {
					_, err = st.GetFresh(ctx, "s:{h}")
				} else {
					_, err = st.Get(ctx, "s:{h}")
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
