package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/storagetest"
)

// serverURL is the PostgreSQL server the tests use, from
// TETHER_TEST_POSTGRES (make test starts one with .ci/postgres when
// PostgreSQL is installed). Without it the tests are skipped.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TETHER_TEST_POSTGRES")
	if u == "" {
		t.Skip("TETHER_TEST_POSTGRES is not set: no PostgreSQL server to test against (run make test with PostgreSQL installed, or .ci/postgres)")
	}
	return u
}

// freshSchema makes an empty schema for one test, dropped when it ends,
// and returns a URL whose connections use it.
func freshSchema(t testing.TB) string {
	t.Helper()
	base := serverURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("t_%016x", rand.Uint64())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
		return open(t, freshSchema(t))
	})
}
