package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// CreateAPIKey implements storage.APIKeys.
func (s *Store) CreateAPIKey(ctx context.Context, k storage.APIKey, opts ...storage.WriteOption) error {
	return s.write(ctx, "create api key", opts, func(tx pgx.Tx) error {
		data, err := codec.Encode(k)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO api_keys (id, hash, data) VALUES ($1, $2, $3)`, k.ID, k.Hash, data)
		err = unique(err, "api_keys_pkey", &storage.ConflictError{Entity: "api key", Field: "id", Value: k.ID})
		return unique(err, "api_keys_hash_key", &storage.ConflictError{Entity: "api key", Field: "hash", Value: k.Hint})
	})
}

// GetAPIKeyByHash implements storage.APIKeys.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash []byte) (storage.APIKey, error) {
	var k storage.APIKey
	err := s.read(ctx, "get api key", func(q querier) error {
		return getOne(ctx, q, &k, "api key", `SELECT data FROM api_keys WHERE hash = $1`, hash)
	})
	return k, err
}

// ListAPIKeys implements storage.APIKeys.
func (s *Store) ListAPIKeys(ctx context.Context) ([]storage.APIKey, error) {
	var keys []storage.APIKey
	err := s.read(ctx, "list api keys", func(q querier) error {
		var err error
		keys, err = all[storage.APIKey](ctx, q, `SELECT data FROM api_keys ORDER BY id`)
		return err
	})
	return keys, err
}

// DeleteAPIKey implements storage.APIKeys.
func (s *Store) DeleteAPIKey(ctx context.Context, id string, opts ...storage.WriteOption) error {
	return s.write(ctx, "delete api key", opts, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("api key %q: %w", id, storage.ErrNotFound)
		}
		return nil
	})
}
