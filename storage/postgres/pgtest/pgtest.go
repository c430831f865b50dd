// Package pgtest gives tests an empty PostgreSQL schema of their own on the
// server named by TETHER_TEST_POSTGRES (make test starts one with
// .ci/postgres when PostgreSQL is installed).
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env is the variable holding the test server's URL.
const Env = "TETHER_TEST_POSTGRES"

// ServerURL returns the test server's URL, or skips the test when there is
// none.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" && os.Getenv("CI") != "" {
		t.Fatal(Env + " is not set: CI must test the PostgreSQL store (.ci/run starts a server)")
	}
	if u == "" {
		t.Skip(Env + " is not set: no PostgreSQL server to test against (make test starts one when PostgreSQL is installed; see .ci/postgres)")
	}
	return u
}

// Schema makes an empty schema for one test, dropped when the test ends,
// and returns a URL whose connections use it.
func Schema(t testing.TB) string {
	t.Helper()
	base := ServerURL(t)
	ctx := context.Background()
	schema := fmt.Sprintf("t_%016x", rand.Uint64())
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
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
