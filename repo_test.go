package tether_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNothingBuiltIsTracked: what a build makes stays out of git. No
// tracked file is a binary or over 5 MB, and the binaries a build drops at
// the root (go build ./cmd/tether) or in bin/ are ignored.
func TestNothingBuiltIsTracked(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this: git is missing")
		}
		t.Skip("git is missing")
	}
	out, err := exec.Command(git, "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Stat(name)
		if err != nil || fi.IsDir() {
			continue // deleted in the working tree, or a submodule
		}
		if fi.Size() > 5<<20 {
			t.Errorf("%s is tracked and %d MB", name, fi.Size()>>20)
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		if bytes.Equal(head[:n], []byte("\x7fELF")) {
			t.Errorf("%s is a binary, tracked in git", name)
		}
	}
	for _, built := range []string{"tether", "tether-bench", "bin/tether", "bin/tether-bench", "tether.test"} {
		if err := exec.Command(git, "check-ignore", "-q", "--no-index", built).Run(); err != nil {
			t.Errorf("%s, which a build makes, is not ignored by git", built)
		}
	}
}
