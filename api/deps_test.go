package api_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// TestDependenciesPatched: the modules the HTTP server is built on are at
// versions with the known vulnerabilities fixed (`make lint` checks every
// module with govulncheck where the database can be had; this holds where
// it cannot). fasthttp before v1.70.0 has GO-2026-4950.
func TestDependenciesPatched(t *testing.T) {
	path := filepath.Join("..", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	least := map[string]string{"github.com/valyala/fasthttp": "v1.70.0"}
	for _, r := range mod.Require {
		if want, ok := least[r.Mod.Path]; ok {
			if semver.Compare(r.Mod.Version, want) < 0 {
				t.Errorf("%s %s; want %s or newer", r.Mod.Path, r.Mod.Version, want)
			}
			delete(least, r.Mod.Path)
		}
	}
	for path := range least {
		t.Errorf("%s is not required by go.mod", path)
	}
}
