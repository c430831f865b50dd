package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// orNullBytes is b, or NULL for an empty b.
func orNullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func registrationConflict(id string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "oauth client", Field: "registrationHash", Value: id}
}

// CreateOAuthClient implements storage.OAuthClients.
func (s *Store) CreateOAuthClient(ctx context.Context, c storage.OAuthClient, opts ...storage.WriteOption) error {
	return s.write(ctx, "create oauth client", opts, func(tx pgx.Tx) error {
		data, err := codec.Encode(c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO oauth_clients (id, registration_hash, data) VALUES ($1, $2, $3)`,
			c.ID, orNullBytes(c.RegistrationHash), data)
		err = unique(err, "oauth_clients_pkey", &storage.ConflictError{Entity: "oauth client", Field: "id", Value: c.ID})
		return unique(err, "oauth_clients_registration_hash_key", registrationConflict(c.ID))
	})
}

// GetOAuthClient implements storage.OAuthClients.
func (s *Store) GetOAuthClient(ctx context.Context, id string) (storage.OAuthClient, error) {
	var c storage.OAuthClient
	err := s.read(ctx, "get oauth client", func(q querier) error {
		return getOne(ctx, q, &c, fmt.Sprintf("oauth client %q", id), `SELECT data FROM oauth_clients WHERE id = $1`, id)
	})
	return c, err
}

// ListOAuthClients implements storage.OAuthClients.
func (s *Store) ListOAuthClients(ctx context.Context) ([]storage.OAuthClient, error) {
	var clients []storage.OAuthClient
	err := s.read(ctx, "list oauth clients", func(q querier) error {
		var err error
		clients, err = all[storage.OAuthClient](ctx, q, `SELECT data FROM oauth_clients ORDER BY id`)
		return err
	})
	return clients, err
}

// UpdateOAuthClient implements storage.OAuthClients.
func (s *Store) UpdateOAuthClient(ctx context.Context, id string, fn func(storage.OAuthClient) (storage.OAuthClient, error), opts ...storage.WriteOption) (storage.OAuthClient, error) {
	var updated storage.OAuthClient
	err := s.write(ctx, "update oauth client", opts, func(tx pgx.Tx) error {
		var old storage.OAuthClient
		if err := getOne(ctx, tx, &old, fmt.Sprintf("oauth client %q", id), `SELECT data FROM oauth_clients WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckOAuthClientUpdate(old, next); err != nil {
			return err
		}
		data, err := codec.Encode(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE oauth_clients SET registration_hash = $2, data = $3 WHERE id = $1`,
			id, orNullBytes(next.RegistrationHash), data)
		if err := unique(err, "oauth_clients_registration_hash_key", registrationConflict(id)); err != nil {
			return err
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// DeleteOAuthClient implements storage.OAuthClients.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string, opts ...storage.WriteOption) error {
	return s.write(ctx, "delete oauth client", opts, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM oauth_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("oauth client %q: %w", id, storage.ErrNotFound)
		}
		return nil
	})
}

// CreateAuthCode implements storage.OAuthGrants.
func (s *Store) CreateAuthCode(ctx context.Context, c storage.AuthCode, opts ...storage.WriteOption) error {
	return s.write(ctx, "create authorization code", opts, func(tx pgx.Tx) error {
		data, err := codec.Encode(c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO auth_codes (id, hash, expires_at, data) VALUES ($1, $2, $3, $4)`,
			c.ID, c.Hash, c.ExpiresAt, data)
		err = unique(err, "auth_codes_pkey", &storage.ConflictError{Entity: "authorization code", Field: "id", Value: c.ID})
		return unique(err, "auth_codes_hash_key", &storage.ConflictError{Entity: "authorization code", Field: "code", Value: c.ID})
	})
}

// UpdateAuthCode implements storage.OAuthGrants: the code's row is locked
// while fn decides, so of concurrent redemptions, on any instance, one
// sees the code unused.
func (s *Store) UpdateAuthCode(ctx context.Context, hash []byte, fn func(storage.AuthCode) (storage.AuthCode, error), opts ...storage.WriteOption) (storage.AuthCode, error) {
	var updated storage.AuthCode
	err := s.write(ctx, "update authorization code", opts, func(tx pgx.Tx) error {
		var old storage.AuthCode
		if err := getOne(ctx, tx, &old, "authorization code", `SELECT data FROM auth_codes WHERE hash = $1 FOR UPDATE`, hash); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckAuthCodeUpdate(old, next); err != nil {
			return err
		}
		data, err := codec.Encode(next)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE auth_codes SET expires_at = $2, data = $3 WHERE id = $1`, next.ID, next.ExpiresAt, data); err != nil {
			return err
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// CreateDeviceCode implements storage.OAuthGrants. A user code is unique
// only among the live codes, a rule no constraint can say: the
// transaction reads for a live holder after its insert, and SERIALIZABLE
// fails one of two concurrent creates of the same user code, whose retry
// then finds the other.
func (s *Store) CreateDeviceCode(ctx context.Context, c storage.DeviceCode, opts ...storage.WriteOption) error {
	return s.write(ctx, "create device code", opts, func(tx pgx.Tx) error {
		data, err := codec.Encode(c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO device_codes (id, hash, user_code, expires_at, data) VALUES ($1, $2, $3, $4, $5)`,
			c.ID, c.Hash, c.UserCode, c.ExpiresAt, data)
		err = unique(err, "device_codes_pkey", &storage.ConflictError{Entity: "device code", Field: "id", Value: c.ID})
		if err := unique(err, "device_codes_hash_key", &storage.ConflictError{Entity: "device code", Field: "code", Value: c.ID}); err != nil {
			return err
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_codes WHERE user_code = $1 AND expires_at > $2 AND id <> $3)`,
			c.UserCode, c.CreatedAt, c.ID).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return &storage.ConflictError{Entity: "device code", Field: "userCode", Value: c.UserCode}
		}
		return nil
	})
}

// updateDeviceCode replaces the device code that query (with args)
// selects and locks with what fn returns, in tx.
func updateDeviceCode(ctx context.Context, tx pgx.Tx, fn func(storage.DeviceCode) (storage.DeviceCode, error), query string, args ...any) (storage.DeviceCode, error) {
	var old storage.DeviceCode
	if err := getOne(ctx, tx, &old, "device code", query, args...); err != nil {
		return storage.DeviceCode{}, err
	}
	next, err := fn(old.Clone())
	if err != nil {
		return storage.DeviceCode{}, err
	}
	if err := storage.CheckDeviceCodeUpdate(old, next); err != nil {
		return storage.DeviceCode{}, err
	}
	data, err := codec.Encode(next)
	if err != nil {
		return storage.DeviceCode{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE device_codes SET expires_at = $2, data = $3 WHERE id = $1`, next.ID, next.ExpiresAt, data); err != nil {
		return storage.DeviceCode{}, err
	}
	return next.Clone(), nil
}

// UpdateDeviceCode implements storage.OAuthGrants, with the row locked as
// UpdateAuthCode does.
func (s *Store) UpdateDeviceCode(ctx context.Context, hash []byte, fn func(storage.DeviceCode) (storage.DeviceCode, error), opts ...storage.WriteOption) (storage.DeviceCode, error) {
	var updated storage.DeviceCode
	err := s.write(ctx, "update device code", opts, func(tx pgx.Tx) error {
		var err error
		updated, err = updateDeviceCode(ctx, tx, fn, `SELECT data FROM device_codes WHERE hash = $1 FOR UPDATE`, hash)
		return err
	})
	return updated, err
}

// UpdateDeviceCodeByUserCode implements storage.OAuthGrants. Of codes
// with the user code live at now (there is one but for a code whose
// expiry was moved), the newest.
func (s *Store) UpdateDeviceCodeByUserCode(ctx context.Context, userCode string, now time.Time, fn func(storage.DeviceCode) (storage.DeviceCode, error), opts ...storage.WriteOption) (storage.DeviceCode, error) {
	var updated storage.DeviceCode
	err := s.write(ctx, "update device code", opts, func(tx pgx.Tx) error {
		var err error
		updated, err = updateDeviceCode(ctx, tx, fn,
			`SELECT data FROM device_codes WHERE user_code = $1 AND expires_at > $2 ORDER BY id DESC LIMIT 1 FOR UPDATE`, userCode, now)
		return err
	})
	return updated, err
}

// PurgeOAuthGrants implements storage.OAuthGrants.
func (s *Store) PurgeOAuthGrants(ctx context.Context, before time.Time) (int, error) {
	auth, err := s.purge(ctx, "purge authorization codes", "auth_codes",
		`SELECT id FROM auth_codes WHERE expires_at < $1`, "", before, 0)
	if err != nil {
		return auth, err
	}
	device, err := s.purge(ctx, "purge device codes", "device_codes",
		`SELECT id FROM device_codes WHERE expires_at < $1`, "", before, 0)
	return auth + device, err
}
