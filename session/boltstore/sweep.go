package boltstore

import (
	"bytes"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A sweep alternates a read transaction that finds expired records and a write
// transaction that deletes them, so that neither is long: writers wait for at most one
// small batch, and no read transaction keeps bolt from remapping a growing file.
const (
	scanBatch   = 10_000 // records one read transaction examines
	deleteBatch = 1_000  // records one write transaction deletes
)

func (s *Store) sweepLoop(every time.Duration) {
	defer close(s.sweepDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.Sweep() // a failed sweep is retried at the next tick; reads never depend on it
		}
	}
}

// Sweep deletes expired values, expired index members and the index sets they leave
// empty, and forgets expired leases. It reports how many values and members it deleted.
// The store sweeps by itself every Options.SweepInterval; tests call Sweep directly.
func (s *Store) Sweep() (deleted int, err error) {
	at := s.now()
	now := at.UnixNano()
	var pos sweepPos
	for !pos.done {
		select {
		case <-s.quit:
			return deleted, ErrClosed
		default:
		}
		found, err := s.sweepScan(now, &pos)
		if err != nil {
			return deleted, s.fail("sweep", err)
		}
		if len(found) == 0 {
			continue
		}
		n, err := s.sweepDelete(now, found)
		deleted += n
		if err != nil {
			return deleted, s.fail("sweep", err)
		}
	}
	s.leases.Sweep()
	return deleted, nil
}

// sweepPos is where a sweep resumes: the values bucket first, then each index set in
// key order.
type sweepPos struct {
	inIndexes bool   // the values bucket is done
	index     []byte // the index set being scanned
	after     []byte // the last key examined in the current bucket; nil at its start
	done      bool
}

// expired names a record to delete: a value when index is nil, else a member of index,
// or when key is nil the index set itself, if it is still empty.
type expired struct {
	index, key []byte
}

// sweepScan examines records from pos on, in one read transaction, and returns the
// expired ones. It advances pos past every record it examined.
func (s *Store) sweepScan(now int64, pos *sweepPos) ([]expired, error) {
	var found []expired
	err := s.db.View(func(tx *bolt.Tx) error {
		budget := scanBatch
		full := func() bool { return budget == 0 || len(found) == deleteBatch }
		// scan reports whether it reached the end of b.
		scan := func(b *bolt.Bucket, index []byte) bool {
			c := b.Cursor()
			k, v := c.First()
			if pos.after != nil {
				if k, v = c.Seek(pos.after); bytes.Equal(k, pos.after) {
					k, v = c.Next()
				}
			}
			for ; k != nil; k, v = c.Next() {
				if full() {
					return false
				}
				budget--
				pos.after = bytes.Clone(k)
				// A record that does not decode is left alone: reads report it.
				if exp, ok := expiryOf(v); ok && exp <= now {
					found = append(found, expired{index: index, key: pos.after})
				}
			}
			return true
		}

		if !pos.inIndexes {
			if !scan(tx.Bucket(bucketValues), nil) {
				return nil
			}
			pos.inIndexes, pos.after = true, nil
		}
		root := tx.Bucket(bucketIndexes)
		rc := root.Cursor()
		name, _ := rc.First()
		if pos.index != nil {
			name, _ = rc.Seek(pos.index)
		}
		for ; name != nil; name, _ = rc.Next() {
			if !bytes.Equal(name, pos.index) {
				pos.index, pos.after = bytes.Clone(name), nil
			}
			b := root.Bucket(name)
			if b == nil {
				continue
			}
			if pos.after == nil {
				if full() {
					return nil
				}
				if k, _ := b.Cursor().First(); k == nil {
					budget--
					found = append(found, expired{index: pos.index})
					continue
				}
			}
			if !scan(b, pos.index) {
				return nil
			}
		}
		pos.done = true
		return nil
	})
	return found, err
}

// sweepDelete deletes the records sweepScan found, in one write transaction, unless a
// write since has given them a new expiry. It returns how many it deleted.
func (s *Store) sweepDelete(now int64, found []expired) (int, error) {
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		values, root := tx.Bucket(bucketValues), tx.Bucket(bucketIndexes)
		for i, e := range found {
			b := values
			if e.index != nil {
				b = root.Bucket(e.index)
			}
			if b != nil && e.key != nil {
				if exp, ok := expiryOf(b.Get(e.key)); ok && exp <= now {
					if err := b.Delete(e.key); err != nil {
						return err
					}
					n++
				}
			}
			// found is in index order: leaving an index set, delete it if now empty.
			if e.index != nil && (i+1 == len(found) || !bytes.Equal(found[i+1].index, e.index)) {
				if err := deleteIfEmpty(root, e.index); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}
