package events_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// nodePackage returns node and testdata/<dir>, where npm ci installed
// pkg, or, without them, skips the test locally and fails it in CI: .ci/run
// and .ci/test install them.
func nodePackage(t *testing.T, dir, pkg string) (node, path string) {
	t.Helper()
	path = filepath.Join("..", "testdata", dir)
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(path, "node_modules", pkg, "package.json"))
	}
	if err != nil {
		skipOrFail(t, fmt.Sprintf("node or %s from testdata/%s is missing (npm ci --prefix testdata/%s): %v", pkg, dir, dir, err))
	}
	return node, path
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run this: %s", why)
	}
	t.Skip(why)
}
