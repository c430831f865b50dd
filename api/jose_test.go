package api_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokensVerifyWithJose checks tokens as a resource server written in
// another language would: the jose library for JavaScript verifies them
// against the JWKS the server publishes, and refuses a tampered one.
// .ci/run installs it (testdata/jose); elsewhere the test skips without it.
func TestTokensVerifyWithJose(t *testing.T) {
	node, dir := joseTool(t)
	e := newEnv(t)
	e.fleet()
	tok := e.loginWorker()
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, e.do("GET", "/.well-known/jwks.json", "", nil).body, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(token string) (string, error) {
		out, err := exec.Command(node, filepath.Join(dir, "verify.mjs"), jwks, token).CombinedOutput()
		return string(out), err
	}

	out, err := verify(tok["accessToken"].(string))
	if err != nil {
		t.Fatalf("jose refused a good token: %v\n%s", err, out)
	}
	var got struct {
		Header map[string]any `json:"header"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("jose output: %v\n%s", err, out)
	}
	if got.Header["alg"] != "EdDSA" || got.Claims["sid"] != tok["sessionId"] || got.Claims["did"] != tok["deviceId"] || got.Claims["role"] != "worker" {
		t.Fatalf("jose saw %+v", got)
	}

	parts := strings.Split(tok["accessToken"].(string), ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	if out, err := verify(tampered); err == nil {
		t.Fatalf("jose accepted a tampered token: %s", out)
	}
}

// joseTool returns node and the directory of the jose scripts
// (testdata/jose), or skips the test without them (CI must have them).
func joseTool(t *testing.T) (node, dir string) {
	t.Helper()
	dir = filepath.Join("..", "testdata", "jose")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "jose"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: %v (run npm ci in testdata/jose)", err)
		}
		t.Skipf("node or testdata/jose/node_modules missing: %v", err)
	}
	return node, dir
}
