package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
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

// AddMissingSigningKeys implements storage.SigningKeys. Instances adding
// at once are serialised: the transaction reads every key, so of two that
// both found an algorithm without an active key, one commits and the other
// runs again and finds it.
func (s *Store) AddMissingSigningKeys(ctx context.Context, next []storage.SigningKey) error {
	return s.update(ctx, "add signing keys", func(tx pgx.Tx) error {
		keys, err := all[storage.SigningKey](ctx, tx, `SELECT data FROM signing_keys ORDER BY id FOR UPDATE`)
		if err != nil {
			return err
		}
		active := map[string]bool{}
		for _, k := range keys {
			if k.RetiredAt.IsZero() {
				active[k.Algorithm()] = true
			}
		}
		for _, k := range next {
			if active[k.Algorithm()] {
				continue
			}
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
			active[k.Algorithm()] = true
		}
		return nil
	})
}

// RotateSigningKeys implements storage.SigningKeys. Instances rotating at
// once are serialised: one key of each algorithm wins the active place,
// the other retires.
func (s *Store) RotateSigningKeys(ctx context.Context, next []storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, "rotate signing keys", opts, func(tx pgx.Tx) error {
		keys, err := all[storage.SigningKey](ctx, tx, `SELECT data FROM signing_keys ORDER BY id FOR UPDATE`)
		if err != nil {
			return err
		}
		retireAt := map[string]time.Time{}
		for _, k := range next {
			retireAt[k.Algorithm()] = k.CreatedAt
		}
		for _, k := range keys {
			for _, n := range next {
				if k.ID == n.ID {
					return &storage.ConflictError{Entity: "signing key", Field: "id", Value: n.ID}
				}
			}
			if at, ok := retireAt[k.Algorithm()]; ok && k.RetiredAt.IsZero() {
				k.RetiredAt = at
				if err := putKey(ctx, tx, k); err != nil {
					return err
				}
			}
		}
		for _, k := range next {
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// RevokeSigningKeys implements storage.SigningKeys.
func (s *Store) RevokeSigningKeys(ctx context.Context, next []storage.SigningKey, opts ...storage.WriteOption) error {
	return s.write(ctx, "revoke signing keys", opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM signing_keys`); err != nil {
			return err
		}
		for _, k := range next {
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
}

func insertKey(ctx context.Context, tx pgx.Tx, k storage.SigningKey) error {
	data, err := codec.Encode(k)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO signing_keys (id, data) VALUES ($1, $2)`, k.ID, data)
	return unique(err, "signing_keys_pkey", &storage.ConflictError{Entity: "signing key", Field: "id", Value: k.ID})
}

func putKey(ctx context.Context, tx pgx.Tx, k storage.SigningKey) error {
	data, err := codec.Encode(k)
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
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
}
