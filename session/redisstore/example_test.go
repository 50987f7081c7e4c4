package redisstore_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
)

// Replicas share sessions through Redis behind two sentinels. Open fails only on bad
// options; whether Redis answers is Ping's business, checked by the readiness probe.
func ExampleOpen() {
	ctx := context.Background()
	st, err := redisstore.Open(ctx, redisstore.Options{
		URL:      "redis-sentinel://sentinel-a.example:26379,sentinel-b.example:26379/gatehouse?db=0",
		Password: os.Getenv("REDIS_PASSWORD"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		log.Fatal(err)
	}
	m := &session.Manager{Store: st, Keys: ring, IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour}
	_ = m

	if err := st.Ping(ctx); errors.Is(err, session.ErrUnavailable) {
		log.Print("not ready: ", err) // /readyz answers 503 until Redis is back
	}
}
