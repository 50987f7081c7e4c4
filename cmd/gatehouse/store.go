package main

import (
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/boltstore"
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
	case "bolt":
		if u.Host+u.Path == "" {
			probs.add("session.store", "%q names no file (bolt:///var/lib/gatehouse/sessions.db)", raw)
		}
	default:
		probs.add("session.store", "%q: unknown store (use memory or bolt:///path/sessions.db)", raw)
	}
}

// openStore opens the store session.store names. base resolves relative file paths.
func openStore(l *loaded, base string) (session.Store, error) {
	if l.storeURL == "memory" {
		return memstore.New(memstore.Options{}), nil
	}
	u, err := url.Parse(l.storeURL)
	if err != nil {
		return nil, fmt.Errorf("session.store: %w", err)
	}
	switch u.Scheme {
	case "bolt":
		path := u.Host + u.Path // bolt:///abs/path or bolt://relative/path
		if !filepath.IsAbs(path) {
			path = filepath.Join(base, path)
		}
		return boltstore.Open(boltstore.Options{Path: path})
	}
	return nil, fmt.Errorf("session.store: unsupported store %q", l.storeURL)
}
