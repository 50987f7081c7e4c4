package boltstore

import (
	"context"
	"errors"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/leases"
)

// Lock grants leases from a table in memory, not in the file. Open's exclusive file lock
// means every caller that could contend for a lease is in this process, so the table is
// exact; it also costs no fsync, and a restart, which ends every holder, rightly ends
// every lease.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	release, err := s.leases.Lock(ctx, name, ttl)
	if errors.Is(err, leases.ErrClosed) {
		return nil, ErrClosed
	}
	return release, err
}
