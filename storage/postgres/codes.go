package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// orNull is t, or NULL for the zero time.
func orNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// CreateEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) CreateEnrollmentCode(ctx context.Context, c storage.EnrollmentCode, opts ...storage.WriteOption) error {
	return s.write(ctx, "create enrollment code", opts, func(tx pgx.Tx) error {
		data, err := codec.Encode(c)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO enrollment_codes (id, hash, expires_at, revoked_at, grp, data) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.ID, c.Hash, c.ExpiresAt, orNull(c.RevokedAt), c.Group, data)
		err = unique(err, "enrollment_codes_pkey", &storage.ConflictError{Entity: "enrollment code", Field: "id", Value: c.ID})
		return unique(err, "enrollment_codes_hash_key", &storage.ConflictError{Entity: "enrollment code", Field: "code", Value: c.ID})
	})
}

func putCode(ctx context.Context, tx pgx.Tx, c storage.EnrollmentCode) error {
	data, err := codec.Encode(c)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE enrollment_codes SET expires_at = $2, revoked_at = $3, grp = $4, data = $5 WHERE id = $1`,
		c.ID, c.ExpiresAt, orNull(c.RevokedAt), c.Group, data)
	return err
}

// GetEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) GetEnrollmentCode(ctx context.Context, id string) (storage.EnrollmentCode, error) {
	var c storage.EnrollmentCode
	err := s.read(ctx, "get enrollment code", func(q querier) error {
		return getOne(ctx, q, &c, fmt.Sprintf("enrollment code %q", id), `SELECT data FROM enrollment_codes WHERE id = $1`, id)
	})
	return c, err
}

// ListEnrollmentCodes implements storage.EnrollmentCodes.
func (s *Store) ListEnrollmentCodes(ctx context.Context, f storage.CodeFilter) ([]storage.EnrollmentCode, error) {
	groups, none := scope(f.Groups)
	if none {
		return []storage.EnrollmentCode{}, ctx.Err()
	}
	var codes []storage.EnrollmentCode
	err := s.read(ctx, "list enrollment codes", func(q querier) error {
		var err error
		if groups == nil {
			codes, err = all[storage.EnrollmentCode](ctx, q, `SELECT data FROM enrollment_codes ORDER BY id`)
		} else {
			codes, err = all[storage.EnrollmentCode](ctx, q, `SELECT data FROM enrollment_codes WHERE grp = ANY($1) ORDER BY id`, groups)
		}
		return err
	})
	return codes, err
}

// UpdateEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) UpdateEnrollmentCode(ctx context.Context, id string, fn func(storage.EnrollmentCode) (storage.EnrollmentCode, error), opts ...storage.WriteOption) (storage.EnrollmentCode, error) {
	var updated storage.EnrollmentCode
	err := s.write(ctx, "update enrollment code", opts, func(tx pgx.Tx) error {
		var old storage.EnrollmentCode
		if err := getOne(ctx, tx, &old, fmt.Sprintf("enrollment code %q", id), `SELECT data FROM enrollment_codes WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckCodeUpdate(old, next); err != nil {
			return err
		}
		if err := putCode(ctx, tx, next); err != nil {
			return err
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// EnrollWithCode implements storage.EnrollmentCodes: the code's row is
// locked while it is used, so concurrent enrollments, on any instance,
// count every use.
func (s *Store) EnrollWithCode(ctx context.Context, hash []byte, enroll func(storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error), opts ...storage.WriteOption) (storage.Device, error) {
	var d storage.Device
	err := s.write(ctx, "enroll with code", opts, func(tx pgx.Tx) error {
		var c storage.EnrollmentCode
		if err := getOne(ctx, tx, &c, "enrollment code", `SELECT data FROM enrollment_codes WHERE hash = $1 FOR UPDATE`, hash); err != nil {
			return err
		}
		next, dev, err := enroll(c.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckCodeUpdate(c, next); err != nil {
			return err
		}
		if err := createDevice(ctx, tx, dev); err != nil {
			return err
		}
		if err := refreshGroups(ctx, tx, dev); err != nil {
			return err
		}
		if err := putCode(ctx, tx, next); err != nil {
			return err
		}
		d = dev.Clone()
		return nil
	})
	return d, err
}
