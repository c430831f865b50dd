// Package bolt is the embedded storage backend: one bbolt file, no other
// process. It is Tether's default store.
//
// Records are JSON values in one bucket per kind; every secondary index
// (IMEI to device, username to user, key hash to API key) is a bucket of its
// own, written in the same transaction as the record it points at.
package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"tether/internal/codec"
	"tether/storage"
)

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Loader = (*Store)(nil)
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("store is in use by another process")

// ErrSchemaTooNew is returned by Open for a file written by a newer Tether.
var ErrSchemaTooNew = errors.New("store was written by a newer version")

// Bucket names. Each index bucket maps a unique value to a record ID.
var (
	bucketMeta       = []byte("meta")
	bucketDevices    = []byte("devices")
	bucketDeviceIMEI = []byte("devices_by_imei")
	bucketUsers      = []byte("users")
	bucketUserName   = []byte("users_by_name")
	// skeleton \x00 userID: usernames that look alike (storage.UsernameSkeleton);
	// several accounts may share one from before the rule.
	bucketUserSkeleton = []byte("users_by_skeleton")
	// userID → username: what a page of handsets shows of their users,
	// without decoding whole user records.
	bucketUsernameByID = []byte("usernames_by_id")
	bucketGroups       = []byte("groups")
	bucketAPIKeys      = []byte("api_keys")
	bucketAPIKeyHash   = []byte("api_keys_by_hash")

	bucketSessions       = []byte("sessions")
	bucketSessionFamily  = []byte("sessions_by_family")
	bucketSessionUser    = []byte("sessions_by_user")   // userID \x00 sessionID
	bucketSessionDevice  = []byte("sessions_by_device") // deviceID \x00 sessionID
	bucketSessionPair    = []byte("sessions_by_pair")   // userID \x00 deviceID → live session
	bucketEvents         = []byte("events")
	bucketSigningKeys    = []byte("signing_keys")
	bucketEnrollCodes    = []byte("enrollment_codes")
	bucketEnrollCodeHash = []byte("enrollment_codes_by_hash")

	bucketOAuthClients       = []byte("oauth_clients")
	bucketOAuthClientReg     = []byte("oauth_clients_by_registration") // registration hash → client
	bucketAuthCodes          = []byte("auth_codes")
	bucketAuthCodeHash       = []byte("auth_codes_by_hash")
	bucketDeviceCodes        = []byte("device_codes")
	bucketDeviceCodeHash     = []byte("device_codes_by_hash")
	bucketDeviceCodeUserCode = []byte("device_codes_by_user_code") // user code → its newest device code

	keySchemaVersion = []byte("schema_version")
)

const (
	defaultLockWait = time.Second
	fileMode        = fs.FileMode(0o600)
)

var currentSchemaVers = uint64(len(migrations))

// migrations[i] takes a store from schema version i to i+1. They run at
// Open, all in one transaction, so a store is never left half-migrated.
// Append only: a published migration never changes.
var migrations = []func(tx *bolt.Tx) error{
	// 0 → 1: devices, users, API keys.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketDevices, bucketDeviceIMEI, bucketUsers, bucketUserName,
			bucketAPIKeys, bucketAPIKeyHash)
	},
	// 1 → 2: sessions, the audit trail, signing keys, enrollment codes.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketSessions, bucketSessionFamily, bucketSessionUser,
			bucketSessionDevice, bucketSessionPair, bucketEvents, bucketSigningKeys,
			bucketEnrollCodes, bucketEnrollCodeHash)
	},
	// 2 → 3: usernames by skeleton, for every user there is.
	func(tx *bolt.Tx) error {
		idx, err := tx.CreateBucketIfNotExists(bucketUserSkeleton)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).ForEach(func(id, v []byte) error {
			var u storage.User
			if err := codec.Decode(v, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", id, err)
			}
			return idx.Put(skeletonKey(u.Username, u.ID), nil)
		})
	},
	// 3 → 4: OAuth clients, authorization codes, device codes.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketOAuthClients, bucketOAuthClientReg, bucketAuthCodes,
			bucketAuthCodeHash, bucketDeviceCodes, bucketDeviceCodeHash, bucketDeviceCodeUserCode)
	},
	// 4 → 5: the scope indexes (scopes.go), for the devices and users
	// there are.
	migrateScopes,
	// 5 → 6: the outbox (outbox.go).
	func(tx *bolt.Tx) error { return createBuckets(tx, bucketOutbox, bucketSinkLeases) },
	// 6 → 7: usernames by user id, for the users there are.
	func(tx *bolt.Tx) error {
		idx, err := tx.CreateBucketIfNotExists(bucketUsernameByID)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).ForEach(func(id, v []byte) error {
			var u struct {
				Username string `json:"username"`
			}
			if err := codec.Decode(v, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", id, err)
			}
			return idx.Put(id, []byte(u.Username))
		})
	},
	// 7 → 8: group settings (groups.go).
	func(tx *bolt.Tx) error { return createBuckets(tx, bucketGroups) },
}

func createBuckets(tx *bolt.Tx, names ...[]byte) error {
	for _, b := range names {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Store is a storage.Store on one bbolt file.
type Store struct {
	db      *bolt.DB
	observe TxObserver
	// routes are the event routes (outbox.go), never nil.
	routes atomic.Pointer[[]storage.EventRoute]
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockWait time.Duration
	observe  TxObserver
}

// WithLockWait sets how long Open waits for another process to release the
// file before it fails with ErrLocked. The default is one second.
func WithLockWait(d time.Duration) Option {
	return func(o *options) { o.lockWait = d }
}

// Open opens or creates the store at path (file mode 0600) and brings its
// schema up to date.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockWait: defaultLockWait}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: o.lockWait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// bbolt sets the mode only when it creates the file: tighten one that an
	// operator copied in with looser permissions.
	if err := os.Chmod(path, fileMode); err != nil {
		return nil, errors.Join(fmt.Errorf("chmod %s: %w", path, err), db.Close())
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := migrate(tx); err != nil {
			return err
		}
		// One process at a time opens the file: the sinks' leases in it
		// are a dead process's.
		return clearLeases(tx)
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), db.Close())
	}
	// Group commits: writers that arrive within 2 ms share one commit, up
	// to 64 of them (bbolt's default is 10 ms and 1000, which adds latency
	// to every lone write).
	db.MaxBatchDelay = 2 * time.Millisecond
	db.MaxBatchSize = 64
	s := &Store{db: db, observe: o.observe}
	if err := s.loadRoutes(); err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), db.Close())
	}
	return s, nil
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() uint64 { return currentSchemaVers }

func migrate(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	var version uint64
	if v := meta.Get(keySchemaVersion); v != nil {
		if len(v) != 8 {
			return fmt.Errorf("corrupt schema version %x", v)
		}
		version = binary.BigEndian.Uint64(v)
	}
	if version > currentSchemaVers {
		return fmt.Errorf("schema version %d, this build knows up to %d: %w",
			version, currentSchemaVers, ErrSchemaTooNew)
	}
	for ; version < currentSchemaVers; version++ {
		if err := migrations[version](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", version, version+1, err)
		}
	}
	return meta.Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, version))
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Ping runs an empty read transaction.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.db.Path() }

// view and update run fn in a transaction unless ctx is already done. bbolt
// transactions are short and cannot be interrupted, so the context is only
// checked before starting.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.observe == nil {
		return s.db.View(fn)
	}
	start := time.Now()
	err := s.db.View(fn)
	s.observe(false, time.Since(start))
	return err
}

// update runs fn in a write transaction shared with other writers that
// arrive within a couple of milliseconds (bbolt's Batch): one commit, one
// fsync, for all of them. Every fn here only writes through its
// transaction and sets its results anew each time it runs, as Batch needs:
// when one fn in a batch fails, the batch is rolled back and each fn is
// run again alone. A nil return still means committed.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.observe == nil {
		return s.db.Batch(fn)
	}
	start := time.Now()
	err := s.db.Batch(fn)
	s.observe(true, time.Since(start))
	return err
}

// write runs fn and then the write options in one transaction.
func (s *Store) write(ctx context.Context, opts []storage.WriteOption, fn func(*bolt.Tx) error) error {
	return s.writeWith(ctx, storage.ApplyOptions(opts), fn)
}

// writeWith is write, for a caller that has applied its options already
// (and reads them itself).
func (s *Store) writeWith(ctx context.Context, o storage.WriteOptions, fn func(*bolt.Tx) error) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return s.applyOptions(tx, o)
	})
}

// applyOptions makes the extra writes a write method was asked for.
func (s *Store) applyOptions(tx *bolt.Tx, o storage.WriteOptions) error {
	n := 0
	events := o.Events
	for _, r := range o.Revoke {
		revoked, err := revokeSessions(tx, r)
		if err != nil {
			return err
		}
		n += len(revoked)
		if r.Audit != nil {
			for _, sess := range revoked {
				events = append(events, r.Audit(sess))
			}
		}
	}
	if o.Revoked != nil {
		*o.Revoked = n
	}
	return s.appendEvents(tx, events)
}

// get decodes the record under key in bucket into v, or returns ErrNotFound.
func get(b *bolt.Bucket, kind string, key []byte, v any) error {
	_, err := getData(b, kind, key, v)
	return err
}

// getData is get, returning the record's bytes too (valid only in the
// transaction).
func getData(b *bolt.Bucket, kind string, key []byte, v any) ([]byte, error) {
	data := b.Get(key)
	if data == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, key, storage.ErrNotFound)
	}
	if err := codec.Decode(data, v); err != nil {
		return nil, fmt.Errorf("decode %s %q: %w", kind, key, err)
	}
	return data, nil
}

func put(b *bolt.Bucket, key []byte, v any) error {
	data, err := codec.Encode(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// claim points index entry key at id, unless another record holds it.
func claim(idx *bolt.Bucket, key []byte, id string, conflict *storage.ConflictError) error {
	if cur := idx.Get(key); cur != nil && string(cur) != id {
		return conflict
	}
	return idx.Put(key, []byte(id))
}

// list walks bucket b in key order from just after the cursor, decoding each
// record into a T and keeping those match accepts, up to limit. It looks one
// match further to tell whether there is a next page.
func list[T any](b *bolt.Bucket, after string, limit int, match func(T) bool, id func(T) string) (storage.Page[T], error) {
	return walk(b, after, limit, false, match, id)
}

// walk is list in either order: with backwards, from the last key down,
// the cursor naming the key to go on below.
func walk[T any](b *bolt.Bucket, after string, limit int, backwards bool, match func(T) bool, id func(T) string) (storage.Page[T], error) {
	limit = storage.PageLimit(limit)
	page := newPage[T](limit)
	c := b.Cursor()
	step := c.Next
	if backwards {
		step = c.Prev
	}
	var k, v []byte
	switch {
	case after == "" && backwards:
		k, v = c.Last()
	case after == "":
		k, v = c.First()
	case backwards:
		// Seek lands on the first key at or above the cursor (nil past
		// the last): the page starts on the key below it.
		if k, _ = c.Seek([]byte(after)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	default:
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = step() {
		rec := nextSlot(&page)
		if err := codec.Decode(v, rec); err != nil {
			return storage.Page[T]{}, fmt.Errorf("decode %q: %w", k, err)
		}
		if !match(*rec) {
			dropSlot(&page)
			continue
		}
		if full(&page, limit, id) {
			break
		}
	}
	return page, nil
}

// A page is filled in place: each record is decoded into a slot after the
// page's items (nextSlot), not into a variable copied there, and the slot
// is dropped again if the record is not wanted (dropSlot). The items have
// room for a default page and the record after it, the one that tells
// whether there is a next page (full).

// newPage returns an empty page with room for limit items and one more,
// up to a default page's.
func newPage[T any](limit int) storage.Page[T] {
	return storage.Page[T]{Items: make([]T, 0, min(limit, storage.DefaultPageSize)+1)}
}

// nextSlot appends a zero item to p and returns it.
func nextSlot[T any](p *storage.Page[T]) *T {
	var zero T
	p.Items = append(p.Items, zero)
	return &p.Items[len(p.Items)-1]
}

// dropSlot removes p's last item, and clears it so that nothing past the
// end of the items keeps memory alive.
func dropSlot[T any](p *storage.Page[T]) {
	var zero T
	p.Items[len(p.Items)-1] = zero
	p.Items = p.Items[:len(p.Items)-1]
}

// full reports whether p has gone past limit items: then the item past it
// is dropped and p's cursor set, to the last item kept.
func full[T any](p *storage.Page[T], limit int, id func(T) string) bool {
	if len(p.Items) <= limit {
		return false
	}
	dropSlot(p)
	p.Next = id(p.Items[limit-1])
	return true
}
