package bolt

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// CreateAPIKey implements storage.APIKeys.
func (s *Store) CreateAPIKey(ctx context.Context, k storage.APIKey, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		keys := tx.Bucket(bucketAPIKeys)
		if keys.Get([]byte(k.ID)) != nil {
			return &storage.ConflictError{Entity: "api key", Field: "id", Value: k.ID}
		}
		conflict := &storage.ConflictError{Entity: "api key", Field: "hash", Value: k.Hint}
		if err := claim(tx.Bucket(bucketAPIKeyHash), k.Hash, k.ID, conflict); err != nil {
			return err
		}
		return put(keys, []byte(k.ID), k)
	})
}

// GetAPIKeyByHash implements storage.APIKeys.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash []byte) (storage.APIKey, error) {
	var k storage.APIKey
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketAPIKeyHash).Get(hash)
		if id == nil {
			return fmt.Errorf("api key: %w", storage.ErrNotFound)
		}
		return get(tx.Bucket(bucketAPIKeys), "api key", id, &k)
	})
	return k, err
}

// ListAPIKeys implements storage.APIKeys.
func (s *Store) ListAPIKeys(ctx context.Context) ([]storage.APIKey, error) {
	keys := []storage.APIKey{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAPIKeys).ForEach(func(id, v []byte) error {
			var k storage.APIKey
			if err := codec.Decode(v, &k); err != nil {
				return fmt.Errorf("decode api key %q: %w", id, err)
			}
			keys = append(keys, k)
			return nil
		})
	})
	return keys, err
}

// DeleteAPIKey implements storage.APIKeys.
func (s *Store) DeleteAPIKey(ctx context.Context, id string, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		keys := tx.Bucket(bucketAPIKeys)
		var k storage.APIKey
		if err := get(keys, "api key", []byte(id), &k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAPIKeyHash).Delete(k.Hash); err != nil {
			return err
		}
		return keys.Delete([]byte(id))
	})
}
