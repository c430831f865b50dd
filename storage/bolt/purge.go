package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// purge deletes, batch by batch, the records of bucket that doomed picks.
// Each round finds up to batch records in a read transaction (resuming
// where the last one stopped) and deletes them in a short write
// transaction, so purging a large store never holds the writer long.
// stop, when it returns true, ends the scan early (for buckets in time
// order).
func (s *Store) purge(ctx context.Context, bucket []byte, batch int, doomed func(k, v []byte) (bool, error), stop func(k, v []byte) bool, del func(tx *bolt.Tx, k, v []byte) error) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	total := 0
	var after []byte
	for {
		type rec struct{ k, v []byte }
		var found []rec
		done := true
		err := s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil; k, v = c.Next() {
				if stop != nil && stop(k, v) {
					return nil
				}
				ok, err := doomed(k, v)
				if err != nil {
					return err
				}
				if ok {
					found = append(found, rec{bytes.Clone(k), bytes.Clone(v)})
				}
				if len(found) == batch {
					after, done = bytes.Clone(k), false
					return nil
				}
			}
			return nil
		})
		if err != nil || len(found) == 0 {
			return total, err
		}
		err = s.update(ctx, func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, r := range found {
				// The record may have changed since it was found: look again.
				cur := b.Get(r.k)
				if cur == nil {
					continue
				}
				if ok, err := doomed(r.k, cur); err != nil || !ok {
					continue
				}
				if err := del(tx, r.k, cur); err != nil {
					return err
				}
				total++
			}
			return nil
		})
		if err != nil || done {
			return total, err
		}
	}
}

// PurgeSessions implements storage.Sessions.
func (s *Store) PurgeSessions(ctx context.Context, endedBefore time.Time, batch int) (int, error) {
	decode := func(v []byte) (storage.Session, error) {
		var sess storage.Session
		return sess, codec.Decode(v, &sess)
	}
	return s.purge(ctx, bucketSessions, batch, func(_, v []byte) (bool, error) {
		sess, err := decode(v)
		return err == nil && sess.EndedAt().Before(endedBefore), err
	}, nil, func(tx *bolt.Tx, k, v []byte) error {
		sess, err := decode(v)
		if err != nil {
			return err
		}
		if err := releasePair(tx, sess); err != nil {
			return err
		}
		for _, step := range []struct {
			b   []byte
			key []byte
		}{
			{bucketSessionFamily, sess.FamilyHash},
			{bucketSessionUser, refKey(sess.UserID, sess.ID)},
			{bucketSessionDevice, refKey(sess.DeviceID, sess.ID)},
		} {
			if err := tx.Bucket(step.b).Delete(step.key); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketSessions).Delete(k)
	})
}

// PurgeEvents implements storage.Audit. Event IDs sort by time, so the scan
// stops at the first event that is recent enough.
func (s *Store) PurgeEvents(ctx context.Context, before time.Time, batch int) (int, error) {
	old := func(v []byte) (bool, error) {
		var e struct {
			Time time.Time `json:"time"`
		}
		if err := codec.Decode(v, &e); err != nil {
			return false, fmt.Errorf("decode event: %w", err)
		}
		return e.Time.Before(before), nil
	}
	return s.purge(ctx, bucketEvents, batch, func(_, v []byte) (bool, error) { return old(v) },
		func(_, v []byte) bool {
			ok, err := old(v)
			return err == nil && !ok
		},
		func(tx *bolt.Tx, k, v []byte) error {
			var e storage.Event
			if err := codec.Decode(v, &e); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			if err := indexEvent(tx, e, false); err != nil {
				return err
			}
			return tx.Bucket(bucketEvents).Delete(k)
		})
}

// PurgeEnrollmentCodes implements storage.EnrollmentCodes.
func (s *Store) PurgeEnrollmentCodes(ctx context.Context, before time.Time, batch int) (int, error) {
	decode := func(v []byte) (storage.EnrollmentCode, error) {
		var c storage.EnrollmentCode
		return c, codec.Decode(v, &c)
	}
	return s.purge(ctx, bucketEnrollCodes, batch, func(_, v []byte) (bool, error) {
		c, err := decode(v)
		return err == nil && (c.ExpiresAt.Before(before) || (!c.RevokedAt.IsZero() && c.RevokedAt.Before(before))), err
	}, nil, func(tx *bolt.Tx, k, v []byte) error {
		c, err := decode(v)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketEnrollCodeHash).Delete(c.Hash); err != nil {
			return err
		}
		return tx.Bucket(bucketEnrollCodes).Delete(k)
	})
}
