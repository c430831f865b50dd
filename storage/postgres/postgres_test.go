package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

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
