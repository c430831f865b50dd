// Package storage defines what Tether persists and the small interfaces a
// backend implements to persist it. It holds no backend: storage/bolt is the
// embedded default, and storage/storagetest is the conformance suite every
// backend must pass unchanged.
//
// Contract shared by every interface here:
//
//   - Every method takes a context first.
//   - A missing record is reported as an error wrapping ErrNotFound; a
//     uniqueness violation as a *ConflictError, which matches ErrConflict.
//     Backends never leak driver errors through %w.
//   - A method that returns nil has committed durably: what it wrote survives
//     a crash or power loss.
//   - Records are values. What a method returns is the caller's own copy, and
//     changing it changes nothing stored.
//   - Write methods take WriteOptions: audit events to append and sessions
//     to revoke in the same transaction as the write itself.
//   - UpdateX(ctx, id, fn) reads the record, calls fn, and writes what fn
//     returns, atomically with respect to every other write of that record.
//     fn may be called more than once and must have no side effects; if it
//     returns an error nothing is written and UpdateX returns that error.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is wrapped by every error reporting a missing record.
var ErrNotFound = errors.New("not found")

// ErrConflict is matched by every *ConflictError.
var ErrConflict = errors.New("conflict")

// ConflictError reports a write that would break a uniqueness rule: a second
// device with the same IMEI, a second user with the same username.
type ConflictError struct {
	// Entity is the kind of record, such as "device" or "user".
	Entity string
	// Field is the unique field, such as "imei" or "username".
	Field string
	// Value is the value that is already taken.
	Value string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s with %s %q already exists", e.Entity, e.Field, e.Value)
}

// Is makes errors.Is(err, ErrConflict) true for every *ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// DefaultPageSize is the page size of a list when the filter asks for none;
// MaxPageSize caps what a filter may ask for.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// PageLimit returns the page size a backend should use for a requested limit.
func PageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}

// Devices persists handsets. IDs and IMEIs are unique.
type Devices interface {
	// CreateDevice stores a new device. It returns a *ConflictError if the
	// ID or the IMEI is taken.
	CreateDevice(ctx context.Context, d Device, opts ...WriteOption) error
	// CreateDevices stores many new devices in one transaction: all of them
	// or, if any ID or IMEI is taken (by a stored device or another in the
	// batch), none, with a *ConflictError.
	CreateDevices(ctx context.Context, ds []Device, opts ...WriteOption) error
	// GetDevice returns the device with the given ID, or ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)
	// GetDeviceByIMEI returns the device with the given IMEI, or ErrNotFound.
	GetDeviceByIMEI(ctx context.Context, imei string) (Device, error)
	// DeviceNames returns the IMEIs and labels of the devices with the
	// given IDs, in one read; IDs of no device are left out.
	DeviceNames(ctx context.Context, ids []string) (map[string]DeviceName, error)
	// ListDevices returns one page of the devices matching f, in ID order.
	ListDevices(ctx context.Context, f DeviceFilter) (Page[Device], error)
	// DeviceGroups returns the groups the devices are in, each once, in
	// byte order (no empty one).
	DeviceGroups(ctx context.Context) ([]string, error)
	// UpdateDevice replaces the device with what fn returns (see the package
	// contract). Changing the ID is an error; changing the IMEI to one that
	// is taken is a *ConflictError.
	UpdateDevice(ctx context.Context, id string, fn func(Device) (Device, error), opts ...WriteOption) (Device, error)
}

// Users persists accounts. IDs, integer keys and usernames (compared by
// UsernameKey, so case-insensitively) are unique.
type Users interface {
	// CreateUser stores a new user and returns it with Key set to a new
	// integer key. It returns a *ConflictError if the ID or username is taken.
	CreateUser(ctx context.Context, u User, opts ...WriteOption) (User, error)
	// GetUser returns the user with the given ID, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// Usernames returns the usernames of the users with the given IDs, in
	// one read; IDs of no user are left out.
	Usernames(ctx context.Context, ids []string) (map[string]string, error)
	// GetUserByUsername returns the user whose username has the same
	// UsernameKey as name, or ErrNotFound.
	GetUserByUsername(ctx context.Context, name string) (User, error)
	// ListUsers returns one page of the users matching f, in ID order.
	ListUsers(ctx context.Context, f UserFilter) (Page[User], error)
	// UpdateUser replaces the user with what fn returns (see the package
	// contract). Changing the ID or Key is an error; changing the username to
	// a taken one is a *ConflictError.
	UpdateUser(ctx context.Context, id string, fn func(User) (User, error), opts ...WriteOption) (User, error)
}

// APIKeys persists API keys. Only a hash of each key's secret is stored.
type APIKeys interface {
	// CreateAPIKey stores a new key. It returns a *ConflictError if the ID
	// or the hash is taken.
	CreateAPIKey(ctx context.Context, k APIKey, opts ...WriteOption) error
	// GetAPIKeyByHash returns the key whose secret hashes to hash, or
	// ErrNotFound.
	GetAPIKeyByHash(ctx context.Context, hash []byte) (APIKey, error)
	// ListAPIKeys returns every key, in ID order.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// DeleteAPIKey removes a key, or returns ErrNotFound.
	DeleteAPIKey(ctx context.Context, id string, opts ...WriteOption) error
}

// Store is every interface a backend implements, plus its lifecycle.
type Store interface {
	Devices
	Groups
	Users
	APIKeys
	Sessions
	Audit
	SigningKeys
	EnrollmentCodes
	OAuthClients
	OAuthGrants
	ScopeChecker
	Outbox
	// Ping reports whether the store can serve reads.
	Ping(ctx context.Context) error
	// Close releases the store. Nothing may be called after it.
	Close() error
}

// Page is one page of a list. Next is the cursor of the following page, or
// empty when this is the last one.
type Page[T any] struct {
	Items []T
	Next  string
}

// Backuper is a store that can write a consistent copy of itself while it
// serves. The embedded store implements it; a database server has its own
// backups.
type Backuper interface {
	// Backup writes a snapshot of the whole store, as of one instant, to w
	// and returns the bytes written.
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// Stats are the figures an operator watches.
type Stats struct {
	DevicesByStatus map[DeviceStatus]int
	// Sessions counts the sessions not revoked (some may have expired and
	// await the sweeper).
	Sessions  int
	SizeBytes int64
}

// Statser is a store that can count what it holds.
type Statser interface {
	Stats(ctx context.Context) (Stats, error)
}

// ProofLedger is a store that remembers the proofs of possession (DPoP
// proofs) used, for every server sharing it, so a proof replayed to
// another instance is refused too. A single server needs none: it
// remembers them in memory.
type ProofLedger interface {
	// UseProof records, at now, the proof named key as used until
	// expires. It reports false if a record of it is still there: a
	// replay.
	UseProof(ctx context.Context, key string, now, expires time.Time) (bool, error)
	// PurgeProofs forgets the proofs that expired before t.
	PurgeProofs(ctx context.Context, before time.Time) (int, error)
}

// Locker is a store shared by several servers that can make one of them
// do a job at a time, such as the directory sync. A single server needs
// none.
type Locker interface {
	// TryLock takes the lock named name if no server holds it, and reports
	// whether it did; unlock gives it back. A server that dies holding it
	// gives it back too.
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}
