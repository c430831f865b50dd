package bolt_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"tether/storage"
	"tether/storage/bolt"
	"tether/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "tether.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

func TestOutboxConformance(t *testing.T) {
	storagetest.RunOutbox(t, func(t *testing.T) (storagetest.OutboxStore, func() storagetest.OutboxStore) {
		path := filepath.Join(t.TempDir(), "tether.db")
		open := func() *bolt.Store {
			s, err := bolt.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		return s, func() storagetest.OutboxStore {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open()
			return s
		}
	})
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.db")
	// A file an operator copied in with loose permissions is tightened.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("store file mode %o; want 600", got)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	start := time.Now()
	_, err = bolt.Open(path, bolt.WithLockWait(50*time.Millisecond))
	if !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("second Open: %v; want ErrLocked", err)
	}
	// Generous bound: this guards against a hang, not a slow machine.
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("second Open took %v", waited)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tether.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	d := storage.Device{ID: storage.NewID(storage.PrefixDevice), IMEI: "490154203237518", Status: storage.DeviceEnrolled}
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "alice", Role: storage.RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.GetDeviceByIMEI(ctx, d.IMEI); err != nil || got.ID != d.ID {
		t.Fatalf("device after reopen: %v, %v", got.ID, err)
	}
	if got, err := s.GetUserByUsername(ctx, "ALICE"); err != nil || got.Key != u.Key {
		t.Fatalf("user after reopen: %+v, %v", got, err)
	}
	// The key sequence goes on where it stopped.
	u2, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "bob", Role: storage.RoleWorker})
	if err != nil || u2.Key != u.Key+1 {
		t.Fatalf("key after reopen = %d, %v; want %d", u2.Key, err, u.Key+1)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	read := func() uint64 {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v uint64
		if err := db.View(func(tx *bbolt.Tx) error {
			v = binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema_version")))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := read(); got != bolt.SchemaVersion() {
		t.Fatalf("schema version on disk %d; want %d", got, bolt.SchemaVersion())
	}

	// A store from a newer build is refused, not silently misread.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, bolt.SchemaVersion()+1))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Open(path); !errors.Is(err, bolt.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer store: %v; want ErrSchemaTooNew", err)
	}
}

// TestMigratesFromSchema1 opens a store as the first schema left it (only
// devices, users and API keys) and checks it comes up whole on the current
// schema, with its data.
func TestMigratesFromSchema1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tether.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := storage.Device{ID: storage.NewID(storage.PrefixDevice), IMEI: "490154203237518", Status: storage.DeviceEnrolled}
	alice := storage.User{ID: storage.NewID(storage.PrefixUser), Key: 1, Username: "alice", Role: storage.RoleWorker}
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []string{"meta", "devices", "devices_by_imei", "users", "users_by_name", "api_keys", "api_keys_by_hash"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		data, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if err := tx.Bucket([]byte("devices")).Put([]byte(d.ID), data); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("devices_by_imei")).Put([]byte(d.IMEI), []byte(d.ID)); err != nil {
			return err
		}
		if data, err = json.Marshal(alice); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("users")).Put([]byte(alice.ID), data); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("users_by_name")).Put([]byte("alice"), []byte(alice.ID)); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, 1))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open of a schema 1 store: %v", err)
	}
	defer s.Close()
	if got, err := s.GetDeviceByIMEI(ctx, d.IMEI); err != nil || got.ID != d.ID {
		t.Fatalf("device after migration: %v, %v", got.ID, err)
	}
	// The users there before are indexed by skeleton: a look-alike is
	// refused.
	if _, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "аlice" /* Cyrillic а */, Role: storage.RoleWorker}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a look-alike of a user from schema 1: %v; want a conflict", err)
	}
	u, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "bob", Role: storage.RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	sess := storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: u.ID, DeviceID: d.ID, FamilyHash: []byte("family"), ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := s.CreateSession(ctx, sess, nil); err != nil {
		t.Fatalf("a session in the migrated store: %v", err)
	}
	// The OAuth buckets of schema 4 are there.
	client := storage.OAuthClient{ID: storage.NewID(storage.PrefixClient), RegistrationHash: []byte("registration")}
	if err := s.CreateOAuthClient(ctx, client); err != nil {
		t.Fatalf("an OAuth client in the migrated store: %v", err)
	}
	code := storage.DeviceCode{ID: storage.NewID(storage.PrefixDeviceCode), Hash: []byte("device"), UserCode: "BCDFGHJK", ExpiresAt: time.Now().Add(time.Minute), CreatedAt: time.Now()}
	if err := s.CreateDeviceCode(ctx, code); err != nil {
		t.Fatalf("a device code in the migrated store: %v", err)
	}
}

// TestBackupUnderWrites backs up while writers keep writing, restores the
// copy, and finds every write acknowledged before the backup began.
func TestBackupUnderWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := bolt.Open(filepath.Join(dir, "tether.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := storage.User{ID: storage.NewID(storage.PrefixUser), Username: fmt.Sprintf("w%d-%d", w, i), Role: storage.RoleWorker}
				if _, err := s.CreateUser(ctx, u); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, u.ID)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	before := slices.Clone(acked)
	mu.Unlock()
	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(ctx, f)
	if err != nil || n == 0 {
		t.Fatalf("Backup = %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(before) == 0 {
		t.Fatal("no write was acknowledged before the backup")
	}

	if v, err := bolt.Verify(backup); err != nil || v != bolt.SchemaVersion() {
		t.Fatalf("Verify(backup) = %d, %v", v, err)
	}
	target := filepath.Join(t.TempDir(), "tether.db")
	if err := bolt.Restore(backup, target); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	r, err := bolt.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, id := range before {
		if _, err := r.GetUser(ctx, id); err != nil {
			t.Fatalf("user %s, acknowledged before the backup, is missing from it: %v", id, err)
		}
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored file mode %v, %v", fi.Mode().Perm(), err)
	}
}

func TestRestoreRefuses(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("not a database at all, just some bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "tether.db")
	if err := bolt.Restore(junk, target); !errors.Is(err, bolt.ErrBadBackup) {
		t.Fatalf("restoring junk: %v; want ErrBadBackup", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatal("a refused restore left a file")
	}

	// A live store is not replaced under its server.
	s, err := bolt.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := filepath.Join(dir, "good.db")
	f, err := os.Create(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := bolt.Restore(good, target); !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("restoring over an open store: %v; want ErrLocked", err)
	}
}

// TestMigratesScopeIndexes: a store of schema 4, without the scope
// indexes, gets them filled from its devices and users as it opens.
func TestMigratesScopeIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tether.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	check := storagetest.SeedScopes(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{"devices_by_group", "devices_by_assignee", "users_by_group", "events_by_group"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, 4))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("Open of a schema 4 store: %v", err)
	}
	defer s.Close()
	check(t, s)
}

// TestMigratesUsernameIndex: a store of schema 6, without the index of
// usernames by id, gets it filled from its users as it opens; renames are
// kept in it from then on.
func TestMigratesUsernameIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tether.db")
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, name := range []string{"ada", "grace", "édith"} {
		u, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: name, Role: storage.RoleWorker})
		if err != nil {
			t.Fatal(err)
		}
		ids[u.ID] = name
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("usernames_by_id")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, 6))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("Open of a schema 6 store: %v", err)
	}
	defer s.Close()
	var all []string
	for id := range ids {
		all = append(all, id)
	}
	got, err := s.Usernames(ctx, append(all, "usr_missing"))
	if err != nil || !maps.Equal(got, ids) {
		t.Fatalf("Usernames after the migration: %v, %v; want %v", got, err, ids)
	}
	id := all[0]
	if _, err := s.UpdateUser(ctx, id, func(u storage.User) (storage.User, error) { u.Username = "renamed"; return u, nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Usernames(ctx, []string{id}); got[id] != "renamed" {
		t.Fatalf("after a rename: %v", got)
	}
}

func openBench(b *testing.B) *bolt.Store {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "tether.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkEventGroups: an event's write, about nobody, or about a worker
// on 0 to 10,000 handsets (docs/scaling.md quotes the figures).
func BenchmarkEventGroups(b *testing.B) {
	for _, n := range []int{-1, 0, 10, 1000, 10000} {
		b.Run(fmt.Sprintf("handsets=%d", n), func(b *testing.B) { storagetest.BenchEventGroups(b, openBench(b), n) })
	}
}

// BenchmarkScopedLists: a page of each list, unscoped and scoped, on a
// store of 20,000 handsets, workers and sessions and 200,000 events.
func BenchmarkScopedLists(b *testing.B) {
	storagetest.BenchScopedLists(b, openBench(b), 20000)
}
