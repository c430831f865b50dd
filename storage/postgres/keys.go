package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether/storage"
)

// ListSigningKeys implements storage.SigningKeys.
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	var keys []storage.SigningKey
	err := s.read(ctx, "list signing keys", func(q querier) error {
		var err error
		keys, err = all[storage.SigningKey](ctx, q, `SELECT data FROM signing_keys ORDER BY id`)
		return err
	})
	return keys, err
}

// RotateSigningKey implements storage.SigningKeys. Instances rotating at
// once are serialised: one key wins the active place, the other retires.
func (s *Store) RotateSigningKey(ctx context.Context, next storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, "rotate signing key", opts, func(tx pgx.Tx) error {
		keys, err := all[storage.SigningKey](ctx, tx, `SELECT data FROM signing_keys ORDER BY id FOR UPDATE`)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.ID == next.ID {
				return &storage.ConflictError{Entity: "signing key", Field: "id", Value: next.ID}
			}
			if k.RetiredAt.IsZero() {
				k.RetiredAt = next.CreatedAt
				if err := putKey(ctx, tx, k); err != nil {
					return err
				}
			}
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO signing_keys (id, data) VALUES ($1, $2)`, next.ID, data)
		return unique(err, "signing_keys_pkey", &storage.ConflictError{Entity: "signing key", Field: "id", Value: next.ID})
	})
}

// RevokeSigningKeys implements storage.SigningKeys.
func (s *Store) RevokeSigningKeys(ctx context.Context, next storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, "revoke signing keys", opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM signing_keys`); err != nil {
			return err
		}
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO signing_keys (id, data) VALUES ($1, $2)`, next.ID, data)
		return err
	})
}

func putKey(ctx context.Context, tx pgx.Tx, k storage.SigningKey) error {
	data, err := json.Marshal(k)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE signing_keys SET data = $2 WHERE id = $1`, k.ID, data)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("signing key %q: %w", k.ID, storage.ErrNotFound)
	}
	return nil
}

// DeleteSigningKey implements storage.SigningKeys.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	return s.update(ctx, "delete signing key", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM signing_keys WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("signing key %q: %w", id, storage.ErrNotFound)
		}
		return nil
	})
}

// ReplaceSigningKey implements storage.SigningKeys.
func (s *Store) ReplaceSigningKey(ctx context.Context, k storage.SigningKey) error {
	return s.update(ctx, "replace signing key", func(tx pgx.Tx) error { return putKey(ctx, tx, k) })
}

// LoadSigningKeys implements storage.Loader: keys as they are, retirements
// included.
func (s *Store) LoadSigningKeys(ctx context.Context, keys []storage.SigningKey) error {
	return s.update(ctx, "load signing keys", func(tx pgx.Tx) error {
		for _, k := range keys {
			data, err := json.Marshal(k)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO signing_keys (id, data) VALUES ($1, $2)`, k.ID, data)
			if err := unique(err, "signing_keys_pkey", &storage.ConflictError{Entity: "signing key", Field: "id", Value: k.ID}); err != nil {
				return err
			}
		}
		return nil
	})
}
