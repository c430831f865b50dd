package bolt

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// CreateEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) CreateEnrollmentCode(ctx context.Context, c storage.EnrollmentCode, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		codes := tx.Bucket(bucketEnrollCodes)
		if codes.Get([]byte(c.ID)) != nil {
			return &storage.ConflictError{Entity: "enrollment code", Field: "id", Value: c.ID}
		}
		conflict := &storage.ConflictError{Entity: "enrollment code", Field: "code", Value: c.ID}
		if err := claim(tx.Bucket(bucketEnrollCodeHash), c.Hash, c.ID, conflict); err != nil {
			return err
		}
		return put(codes, []byte(c.ID), c)
	})
}

// GetEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) GetEnrollmentCode(ctx context.Context, id string) (storage.EnrollmentCode, error) {
	var c storage.EnrollmentCode
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketEnrollCodes), "enrollment code", []byte(id), &c)
	})
	return c, err
}

// ListEnrollmentCodes implements storage.EnrollmentCodes. Codes are few:
// it reads them all.
func (s *Store) ListEnrollmentCodes(ctx context.Context, f storage.CodeFilter) ([]storage.EnrollmentCode, error) {
	codes := []storage.EnrollmentCode{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnrollCodes).ForEach(func(id, v []byte) error {
			var c storage.EnrollmentCode
			if err := codec.Decode(v, &c); err != nil {
				return fmt.Errorf("decode enrollment code %q: %w", id, err)
			}
			if f.Match(c) {
				codes = append(codes, c)
			}
			return nil
		})
	})
	return codes, err
}

// UpdateEnrollmentCode implements storage.EnrollmentCodes.
func (s *Store) UpdateEnrollmentCode(ctx context.Context, id string, fn func(storage.EnrollmentCode) (storage.EnrollmentCode, error), opts ...storage.WriteOption) (storage.EnrollmentCode, error) {
	var updated storage.EnrollmentCode
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		codes := tx.Bucket(bucketEnrollCodes)
		var old storage.EnrollmentCode
		if err := get(codes, "enrollment code", []byte(id), &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckCodeUpdate(old, next); err != nil {
			return err
		}
		updated = next.Clone()
		return put(codes, []byte(id), next)
	})
	return updated, err
}

// EnrollWithCode implements storage.EnrollmentCodes.
func (s *Store) EnrollWithCode(ctx context.Context, hash []byte, enroll func(storage.EnrollmentCode) (storage.EnrollmentCode, storage.Device, error), opts ...storage.WriteOption) (storage.Device, error) {
	var d storage.Device
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketEnrollCodeHash).Get(hash)
		if id == nil {
			return fmt.Errorf("enrollment code: %w", storage.ErrNotFound)
		}
		codes := tx.Bucket(bucketEnrollCodes)
		var c storage.EnrollmentCode
		if err := get(codes, "enrollment code", id, &c); err != nil {
			return err
		}
		next, dev, err := enroll(c.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckCodeUpdate(c, next); err != nil {
			return err
		}
		if err := createDevice(tx, dev); err != nil {
			return err
		}
		d = dev.Clone()
		return put(codes, id, next)
	})
	return d, err
}
