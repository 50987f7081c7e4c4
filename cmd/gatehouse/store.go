package main

import (
	"fmt"
	"net/url"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

// checkStoreURL validates session.store without opening anything.
func checkStoreURL(raw string, probs *problems) {
	if raw == "memory" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		probs.add("session.store", "%q is not memory or a store URL", raw)
		return
	}
	switch u.Scheme {
	default:
		probs.add("session.store", "%q: unknown store (use memory)", raw)
	}
}

// openStore opens the store session.store names.
func openStore(l *loaded) (session.Store, error) {
	switch l.storeURL {
	case "memory":
		return memstore.New(memstore.Options{}), nil
	}
	return nil, fmt.Errorf("session.store: unsupported store %q", l.storeURL)
}
