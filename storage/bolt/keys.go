package bolt

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// ListSigningKeys implements storage.SigningKeys.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	keys := []storage.SigningKey{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSigningKeys).ForEach(func(id, v []byte) error {
			var k storage.SigningKey
			if err := codec.Decode(v, &k); err != nil {
				return fmt.Errorf("decode signing key %q: %w", id, err)
			}
			keys = append(keys, k)
			return nil
		})
	})
	return keys, err
}

// AddMissingSigningKeys implements storage.SigningKeys.
func (s *Store) AddMissingSigningKeys(ctx context.Context, next []storage.SigningKey) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		active := map[string]bool{}
		err := b.ForEach(func(id, v []byte) error {
			var k storage.SigningKey
			if err := codec.Decode(v, &k); err != nil {
				return fmt.Errorf("decode signing key %q: %w", id, err)
			}
			if k.RetiredAt.IsZero() {
				active[k.Algorithm()] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range next {
			if active[k.Algorithm()] {
				continue
			}
			if b.Get([]byte(k.ID)) != nil {
				return &storage.ConflictError{Entity: "signing key", Field: "id", Value: k.ID}
			}
			if err := put(b, []byte(k.ID), k); err != nil {
				return err
			}
			active[k.Algorithm()] = true
		}
		return nil
	})
}

// RotateSigningKeys implements storage.SigningKeys.
func (s *Store) RotateSigningKeys(ctx context.Context, next []storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		retireAt := map[string]time.Time{}
		for _, k := range next {
			if b.Get([]byte(k.ID)) != nil {
				return &storage.ConflictError{Entity: "signing key", Field: "id", Value: k.ID}
			}
			retireAt[k.Algorithm()] = k.CreatedAt
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var old storage.SigningKey
			if err := codec.Decode(v, &old); err != nil {
				return fmt.Errorf("decode signing key %q: %w", k, err)
			}
			if at, ok := retireAt[old.Algorithm()]; ok && old.RetiredAt.IsZero() {
				old.RetiredAt = at
				if err := put(b, k, old); err != nil {
					return err
				}
			}
		}
		for _, k := range next {
			if err := put(b, []byte(k.ID), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// RevokeSigningKeys implements storage.SigningKeys.
func (s *Store) RevokeSigningKeys(ctx context.Context, next []storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketSigningKeys); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketSigningKeys)
		if err != nil {
			return err
		}
		for _, k := range next {
			if err := put(b, []byte(k.ID), k); err != nil {
				return err
			}
		}
		return nil
	})
}

// newestKey is the id of the newest signing key: ids sort by the time they
// were made.
func newestKey(tx *bolt.Tx) string {
	k, _ := tx.Bucket(bucketSigningKeys).Cursor().Last()
	return string(k)
}

// DeleteSigningKey implements storage.SigningKeys.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("signing key %q: %w", id, storage.ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
}

// ReplaceSigningKey implements storage.SigningKeys.
func (s *Store) ReplaceSigningKey(ctx context.Context, k storage.SigningKey) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		if b.Get([]byte(k.ID)) == nil {
			return fmt.Errorf("signing key %q: %w", k.ID, storage.ErrNotFound)
		}
		return put(b, []byte(k.ID), k)
	})
}

// LoadSigningKeys implements storage.Loader: keys as they are, retirements
// included.
func (s *Store) LoadSigningKeys(ctx context.Context, keys []storage.SigningKey) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSigningKeys)
		for _, k := range keys {
			if b.Get([]byte(k.ID)) != nil {
				return &storage.ConflictError{Entity: "signing key", Field: "id", Value: k.ID}
			}
			if err := put(b, []byte(k.ID), k); err != nil {
				return err
			}
		}
		return nil
	})
}
