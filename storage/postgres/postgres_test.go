package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
	"tether/storage/storagetest"
)

func open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, pgtest.Schema(t))
	})
}

func TestOutboxConformance(t *testing.T) {
	storagetest.RunOutbox(t, func(t *testing.T) (storagetest.OutboxStore, func() storagetest.OutboxStore) {
		url := pgtest.Schema(t)
		return open(t, url), func() storagetest.OutboxStore { return open(t, url) }
	})
}

// TestThrottlesConformance: the login throttle's counters, shared by the
// instances on one database.
func TestThrottlesConformance(t *testing.T) {
	storagetest.RunThrottles(t, func(t *testing.T) storage.Throttles {
		return open(t, pgtest.Schema(t))
	})
}

// TestMigrationFillsSkeletons: users from before schema 4 get their
// username skeletons as the database migrates, so look-alikes of them are
// refused.
func TestMigrationFillsSkeletons(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	s := open(t, url)
	alice := storage.User{ID: storage.NewID(storage.PrefixUser), Username: "alice", Role: storage.RoleWorker}
	if _, err := s.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	// Back to schema 3, as a database of an older build (undoing schemas 5
	// to 7 too).
	for _, sql := range append(undoScopes,
		`ALTER TABLE session_pairs DROP CONSTRAINT session_pairs_pkey`, `ALTER TABLE session_pairs DROP COLUMN client_id`,
		`ALTER TABLE session_pairs ADD PRIMARY KEY (user_id, device_id)`,
		`DROP TABLE oauth_clients, auth_codes, device_codes`,
		`DROP INDEX users_username_skeleton_idx`, `ALTER TABLE users DROP COLUMN username_skeleton`,
		`DELETE FROM schema_migrations WHERE version >= 4`,
	) {
		if _, err := s.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, url)
	if _, err := s.CreateUser(ctx, storage.User{ID: storage.NewID(storage.PrefixUser), Username: "аlice" /* Cyrillic а */, Role: storage.RoleWorker}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a look-alike of a user from schema 3: %v; want a conflict", err)
	}
}

// TestMigrationFillsScopeColumns: a database of schema 6 gets the scope
// columns filled from its records as it migrates.
func TestMigrationFillsScopeColumns(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	s := open(t, url)
	check := storagetest.SeedScopes(t, s)
	for _, sql := range undoScopes {
		if _, err := s.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	check(t, open(t, url))
}

// undoScopes takes a database back from schema 9 to schema 6.
var undoScopes = []string{
	`DROP TABLE groups`,
	`DROP TABLE outbox, sink_leases, event_routes`,
	`ALTER TABLE users DROP COLUMN role, DROP COLUMN scopes, DROP COLUMN groups`,
	`ALTER TABLE devices DROP COLUMN assigned_users`,
	`ALTER TABLE enrollment_codes DROP COLUMN grp`,
	`ALTER TABLE events DROP COLUMN groups`,
	`DELETE FROM schema_migrations WHERE version >= 7`,
}

// TestLocker: of two servers on one database, one holds a lock at a time;
// one that goes away gives it back.
func TestLocker(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	a, b := open(t, url), open(t, url)
	unlock, ok, err := a.TryLock(ctx, "directory-sync")
	if err != nil || !ok {
		t.Fatalf("first lock: %v, %v", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "directory-sync"); err != nil || ok {
		t.Fatalf("second server while the first holds it: %v, %v; want refused", ok, err)
	}
	if unlockOther, ok, err := b.TryLock(ctx, "another job"); err != nil || !ok {
		t.Fatalf("another lock's name: %v, %v", ok, err)
	} else {
		unlockOther()
	}
	unlock()
	unlockB, ok, err := b.TryLock(ctx, "directory-sync")
	if err != nil || !ok {
		t.Fatalf("after unlock: %v, %v", ok, err)
	}
	ok = false
	// A server whose connection dies holding the lock gives it back.
	if _, err := a.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatal(err)
	}
	var unlockA func()
	for deadline := time.Now().Add(5 * time.Second); !ok; time.Sleep(20 * time.Millisecond) {
		if unlockA, ok, err = a.TryLock(ctx, "directory-sync"); err != nil || (!ok && time.Now().After(deadline)) {
			t.Fatalf("after the holder's connection died: %v, %v", ok, err)
		}
	}
	unlockB() // on a dead connection: no harm
	unlockA()
}

// TestInstancesMigrateOnce: instances starting together on an empty
// database migrate it once, and all of them open it.
func TestInstancesMigrateOnce(t *testing.T) {
	url := pgtest.Schema(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(context.Background(), url)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, url)
	var n int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != postgres.SchemaVersion() {
		t.Fatalf("%d migrations recorded; want %d", n, postgres.SchemaVersion())
	}
}

// TestSchemaTooNew: a database migrated by a newer build is refused, not
// written to.
func TestSchemaTooNew(t *testing.T) {
	url := pgtest.Schema(t)
	s := open(t, url)
	if _, err := s.Pool().Exec(context.Background(), `INSERT INTO schema_migrations (version) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Open(context.Background(), url); !errors.Is(err, postgres.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v; want ErrSchemaTooNew", err)
	}
}

// TestOpenErrorsHideThePassword: a failed connection says where it tried,
// never with the password of the URL.
func TestOpenErrorsHideThePassword(t *testing.T) {
	for _, url := range []string{
		"postgres://tether:s3cretpw@127.0.0.1:1/tether?connect_timeout=2",
		"postgres://tether:s3cretpw@[::1/tether",
	} {
		_, err := postgres.Open(context.Background(), url)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", url)
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Fatalf("the error shows the password: %v", err)
		}
	}
}

// TestProofLedger: a proof is used once while its record lasts, on every
// store sharing the database; an expired record is taken over; purging
// forgets the expired ones.
func TestProofLedger(t *testing.T) {
	url := pgtest.Schema(t)
	a, b := open(t, url), open(t, url)
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	exp := now.Add(time.Minute)
	if fresh, err := a.UseProof(ctx, "jkt.1", now, exp); err != nil || !fresh {
		t.Fatalf("first use: %v, %v", fresh, err)
	}
	if fresh, err := b.UseProof(ctx, "jkt.1", now.Add(time.Second), exp); err != nil || fresh {
		t.Fatalf("the same proof on another instance: %v, %v; want a replay", fresh, err)
	}
	if fresh, err := b.UseProof(ctx, "jkt.1", exp.Add(time.Second), exp.Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("after its record expired: %v, %v", fresh, err)
	}
	if _, err := a.UseProof(ctx, "jkt.2", now, exp); err != nil {
		t.Fatal(err)
	}
	if n, err := a.PurgeProofs(ctx, exp.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v; want 1 (jkt.2)", n, err)
	}
}

// BenchmarkEventGroups: an event's write, about nobody, or about a worker
// on 0 to 10,000 handsets (docs/scaling.md quotes the figures).
func BenchmarkEventGroups(b *testing.B) {
	for _, n := range []int{-1, 0, 10, 1000, 10000} {
		b.Run(fmt.Sprintf("handsets=%d", n), func(b *testing.B) { storagetest.BenchEventGroups(b, open(b, pgtest.Schema(b)), n) })
	}
}

// BenchmarkScopedLists: a page of each list, unscoped and scoped, on a
// store of 20,000 handsets, workers and sessions and 200,000 events.
func BenchmarkScopedLists(b *testing.B) {
	storagetest.BenchScopedLists(b, open(b, pgtest.Schema(b)), 20000)
}
