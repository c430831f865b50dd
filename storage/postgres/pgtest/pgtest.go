// Package pgtest gives tests an empty PostgreSQL schema of their own on the
// server named by TETHER_TEST_POSTGRES (make test starts one with
// .ci/postgres when PostgreSQL is installed).
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"tether/storage/postgres"
)

// Env is the variable holding the test server's URL.
const Env = "TETHER_TEST_POSTGRES"

// ServerURL returns the test server's URL, or skips the test when there is
// none (and fails it in CI, which must test the PostgreSQL store).
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
	url, drop, err := postgres.NewSchema(context.Background(), ServerURL(t), fmt.Sprintf("t_%016x", rand.Uint64()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return url
}
