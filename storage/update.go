package storage

import (
	"bytes"
	"errors"
)

// What an UpdateX function may not change (see the package contract).
var (
	ErrIDChanged       = errors.New("update must not change the record id")
	ErrKeyChanged      = errors.New("update must not change the user key")
	ErrSessionIdentity = errors.New("update must not change the session's id, key, user, device, device name, client or family")
)

// CheckDeviceUpdate reports an update that changes what identifies a
// device. Every backend's UpdateDevice calls it.
func CheckDeviceUpdate(old, next Device) error {
	if next.ID != old.ID {
		return ErrIDChanged
	}
	return nil
}

// CheckUserUpdate reports an update that changes what identifies a user.
func CheckUserUpdate(old, next User) error {
	switch {
	case next.ID != old.ID:
		return ErrIDChanged
	case next.Key != old.Key:
		return ErrKeyChanged
	}
	return nil
}

// CheckSessionUpdate reports an update that changes what identifies a
// session.
func CheckSessionUpdate(old, next Session) error {
	if next.ID != old.ID || next.Key != old.Key || next.UserID != old.UserID ||
		next.DeviceID != old.DeviceID || next.DeviceName != old.DeviceName || next.ClientID != old.ClientID || !bytes.Equal(next.FamilyHash, old.FamilyHash) {
		return ErrSessionIdentity
	}
	return nil
}

// CheckCodeUpdate reports an update that changes what identifies an
// enrollment code.
func CheckCodeUpdate(old, next EnrollmentCode) error {
	if next.ID != old.ID || !bytes.Equal(next.Hash, old.Hash) {
		return ErrIDChanged
	}
	return nil
}

// CheckOAuthClientUpdate reports an update that changes a client's ID.
func CheckOAuthClientUpdate(old, next OAuthClient) error {
	if next.ID != old.ID {
		return ErrIDChanged
	}
	return nil
}

// CheckAuthCodeUpdate reports an update that changes what identifies an
// authorization code: its ID or hash.
func CheckAuthCodeUpdate(old, next AuthCode) error {
	if next.ID != old.ID || !bytes.Equal(next.Hash, old.Hash) {
		return ErrIDChanged
	}
	return nil
}

// CheckDeviceCodeUpdate reports an update that changes what identifies a
// device code: its ID, hash or user code.
func CheckDeviceCodeUpdate(old, next DeviceCode) error {
	if next.ID != old.ID || !bytes.Equal(next.Hash, old.Hash) || next.UserCode != old.UserCode {
		return ErrIDChanged
	}
	return nil
}
