package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

func registrationConflict(id string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "oauth client", Field: "registrationHash", Value: id}
}

// CreateOAuthClient implements storage.OAuthClients.
func (s *Store) CreateOAuthClient(ctx context.Context, c storage.OAuthClient, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		clients := tx.Bucket(bucketOAuthClients)
		if clients.Get([]byte(c.ID)) != nil {
			return &storage.ConflictError{Entity: "oauth client", Field: "id", Value: c.ID}
		}
		if len(c.RegistrationHash) > 0 {
			if err := claim(tx.Bucket(bucketOAuthClientReg), c.RegistrationHash, c.ID, registrationConflict(c.ID)); err != nil {
				return err
			}
		}
		return put(clients, []byte(c.ID), c)
	})
}

// GetOAuthClient implements storage.OAuthClients.
func (s *Store) GetOAuthClient(ctx context.Context, id string) (storage.OAuthClient, error) {
	var c storage.OAuthClient
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketOAuthClients), "oauth client", []byte(id), &c)
	})
	return c, err
}

// ListOAuthClients implements storage.OAuthClients.
func (s *Store) ListOAuthClients(ctx context.Context) ([]storage.OAuthClient, error) {
	clients := []storage.OAuthClient{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOAuthClients).ForEach(func(id, v []byte) error {
			var c storage.OAuthClient
			if err := codec.Decode(v, &c); err != nil {
				return fmt.Errorf("decode oauth client %q: %w", id, err)
			}
			clients = append(clients, c)
			return nil
		})
	})
	return clients, err
}

// UpdateOAuthClient implements storage.OAuthClients.
func (s *Store) UpdateOAuthClient(ctx context.Context, id string, fn func(storage.OAuthClient) (storage.OAuthClient, error), opts ...storage.WriteOption) (storage.OAuthClient, error) {
	var updated storage.OAuthClient
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		clients := tx.Bucket(bucketOAuthClients)
		var old storage.OAuthClient
		if err := get(clients, "oauth client", []byte(id), &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckOAuthClientUpdate(old, next); err != nil {
			return err
		}
		if !bytes.Equal(old.RegistrationHash, next.RegistrationHash) {
			idx := tx.Bucket(bucketOAuthClientReg)
			if len(next.RegistrationHash) > 0 {
				if err := claim(idx, next.RegistrationHash, id, registrationConflict(id)); err != nil {
					return err
				}
			}
			if len(old.RegistrationHash) > 0 {
				if err := idx.Delete(old.RegistrationHash); err != nil {
					return err
				}
			}
		}
		updated = next.Clone()
		return put(clients, []byte(id), next)
	})
	return updated, err
}

// DeleteOAuthClient implements storage.OAuthClients.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		clients := tx.Bucket(bucketOAuthClients)
		var c storage.OAuthClient
		if err := get(clients, "oauth client", []byte(id), &c); err != nil {
			return err
		}
		if len(c.RegistrationHash) > 0 {
			if err := tx.Bucket(bucketOAuthClientReg).Delete(c.RegistrationHash); err != nil {
				return err
			}
		}
		return clients.Delete([]byte(id))
	})
}

// CreateAuthCode implements storage.OAuthGrants.
func (s *Store) CreateAuthCode(ctx context.Context, c storage.AuthCode, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		codes := tx.Bucket(bucketAuthCodes)
		if codes.Get([]byte(c.ID)) != nil {
			return &storage.ConflictError{Entity: "authorization code", Field: "id", Value: c.ID}
		}
		conflict := &storage.ConflictError{Entity: "authorization code", Field: "code", Value: c.ID}
		if err := claim(tx.Bucket(bucketAuthCodeHash), c.Hash, c.ID, conflict); err != nil {
			return err
		}
		return put(codes, []byte(c.ID), c)
	})
}

// UpdateAuthCode implements storage.OAuthGrants: the look-up by hash, fn
// and the write are one write transaction, and bbolt has one writer at a
// time, so a code is redeemed once.
func (s *Store) UpdateAuthCode(ctx context.Context, hash []byte, fn func(storage.AuthCode) (storage.AuthCode, error), opts ...storage.WriteOption) (storage.AuthCode, error) {
	var updated storage.AuthCode
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketAuthCodeHash).Get(hash)
		if id == nil {
			return fmt.Errorf("authorization code: %w", storage.ErrNotFound)
		}
		codes := tx.Bucket(bucketAuthCodes)
		var old storage.AuthCode
		if err := get(codes, "authorization code", id, &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckAuthCodeUpdate(old, next); err != nil {
			return err
		}
		updated = next.Clone()
		return put(codes, []byte(old.ID), next)
	})
	return updated, err
}

// liveAt reports whether a device code still holds its user code at t.
func liveAt(c storage.DeviceCode, t time.Time) bool { return t.Before(c.ExpiresAt) }

// CreateDeviceCode implements storage.OAuthGrants. The user code index
// points at the newest code that took the user code: a new code takes it
// over from one expired at its CreatedAt, and is refused while that one
// is live.
func (s *Store) CreateDeviceCode(ctx context.Context, c storage.DeviceCode, opts ...storage.WriteOption) error {
	return s.write(ctx, opts, func(tx *bolt.Tx) error {
		codes := tx.Bucket(bucketDeviceCodes)
		if codes.Get([]byte(c.ID)) != nil {
			return &storage.ConflictError{Entity: "device code", Field: "id", Value: c.ID}
		}
		conflict := &storage.ConflictError{Entity: "device code", Field: "code", Value: c.ID}
		if err := claim(tx.Bucket(bucketDeviceCodeHash), c.Hash, c.ID, conflict); err != nil {
			return err
		}
		byUser := tx.Bucket(bucketDeviceCodeUserCode)
		if holder := byUser.Get([]byte(c.UserCode)); holder != nil {
			// A holder that is gone or expired leaves the user code free.
			var h storage.DeviceCode
			err := get(codes, "device code", holder, &h)
			switch {
			case err == nil && liveAt(h, c.CreatedAt):
				return &storage.ConflictError{Entity: "device code", Field: "userCode", Value: c.UserCode}
			case err != nil && !errors.Is(err, storage.ErrNotFound):
				return err
			}
		}
		if err := byUser.Put([]byte(c.UserCode), []byte(c.ID)); err != nil {
			return err
		}
		return put(codes, []byte(c.ID), c)
	})
}

// updateDeviceCode replaces the device code with ID id with what fn
// returns, in tx.
func updateDeviceCode(tx *bolt.Tx, id []byte, live func(storage.DeviceCode) bool, fn func(storage.DeviceCode) (storage.DeviceCode, error)) (storage.DeviceCode, error) {
	codes := tx.Bucket(bucketDeviceCodes)
	var old storage.DeviceCode
	if err := get(codes, "device code", id, &old); err != nil {
		return storage.DeviceCode{}, err
	}
	if live != nil && !live(old) {
		return storage.DeviceCode{}, fmt.Errorf("device code: %w", storage.ErrNotFound)
	}
	next, err := fn(old.Clone())
	if err != nil {
		return storage.DeviceCode{}, err
	}
	if err := storage.CheckDeviceCodeUpdate(old, next); err != nil {
		return storage.DeviceCode{}, err
	}
	return next.Clone(), put(codes, []byte(old.ID), next)
}

// UpdateDeviceCode implements storage.OAuthGrants, in one write
// transaction as UpdateAuthCode.
func (s *Store) UpdateDeviceCode(ctx context.Context, hash []byte, fn func(storage.DeviceCode) (storage.DeviceCode, error), opts ...storage.WriteOption) (storage.DeviceCode, error) {
	var updated storage.DeviceCode
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketDeviceCodeHash).Get(hash)
		if id == nil {
			return fmt.Errorf("device code: %w", storage.ErrNotFound)
		}
		var err error
		updated, err = updateDeviceCode(tx, id, nil, fn)
		return err
	})
	return updated, err
}

// UpdateDeviceCodeByUserCode implements storage.OAuthGrants.
func (s *Store) UpdateDeviceCodeByUserCode(ctx context.Context, userCode string, now time.Time, fn func(storage.DeviceCode) (storage.DeviceCode, error), opts ...storage.WriteOption) (storage.DeviceCode, error) {
	var updated storage.DeviceCode
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketDeviceCodeUserCode).Get([]byte(userCode))
		if id == nil {
			return fmt.Errorf("device code: %w", storage.ErrNotFound)
		}
		var err error
		updated, err = updateDeviceCode(tx, id, func(c storage.DeviceCode) bool { return liveAt(c, now) }, fn)
		return err
	})
	return updated, err
}

// PurgeOAuthGrants implements storage.OAuthGrants.
func (s *Store) PurgeOAuthGrants(ctx context.Context, before time.Time) (int, error) {
	expired := func(v []byte) (bool, error) {
		var c struct {
			ExpiresAt time.Time `json:"expiresAt"`
		}
		if err := codec.Decode(v, &c); err != nil {
			return false, fmt.Errorf("decode code: %w", err)
		}
		return c.ExpiresAt.Before(before), nil
	}
	auth, err := s.purge(ctx, bucketAuthCodes, 0, func(_, v []byte) (bool, error) { return expired(v) }, nil,
		func(tx *bolt.Tx, k, v []byte) error {
			var c storage.AuthCode
			if err := codec.Decode(v, &c); err != nil {
				return fmt.Errorf("decode authorization code %q: %w", k, err)
			}
			if err := tx.Bucket(bucketAuthCodeHash).Delete(c.Hash); err != nil {
				return err
			}
			return tx.Bucket(bucketAuthCodes).Delete(k)
		})
	if err != nil {
		return auth, err
	}
	device, err := s.purge(ctx, bucketDeviceCodes, 0, func(_, v []byte) (bool, error) { return expired(v) }, nil,
		func(tx *bolt.Tx, k, v []byte) error {
			var c storage.DeviceCode
			if err := codec.Decode(v, &c); err != nil {
				return fmt.Errorf("decode device code %q: %w", k, err)
			}
			if err := tx.Bucket(bucketDeviceCodeHash).Delete(c.Hash); err != nil {
				return err
			}
			// The user code may have gone to a newer code since.
			byUser := tx.Bucket(bucketDeviceCodeUserCode)
			if bytes.Equal(byUser.Get([]byte(c.UserCode)), k) {
				if err := byUser.Delete([]byte(c.UserCode)); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketDeviceCodes).Delete(k)
		})
	return auth + device, err
}
