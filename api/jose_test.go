package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tether/auth"
)

// TestTokensVerifyWithJose checks tokens as a resource server written in
// another language would: the jose library for JavaScript verifies them,
// for each --token-alg, against the JWKS the server publishes (every key
// of every algorithm), with the algorithm pinned as such a server pins it;
// it refuses a tampered token, and a token of an algorithm it was not told
// to accept. The renewed token verifies too.
// .ci/run installs it (testdata/jose); elsewhere the test skips without it.
func TestTokensVerifyWithJose(t *testing.T) {
	node, dir := joseTool(t)
	for _, alg := range auth.Algorithms() {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, func(c *auth.Config) { c.TokenAlg = alg })
			e.fleet()
			tok := e.loginWorker()
			jwks := filepath.Join(t.TempDir(), "jwks.json")
			if err := os.WriteFile(jwks, e.do("GET", "/.well-known/jwks.json", "", nil).body, 0o600); err != nil {
				t.Fatal(err)
			}
			verify := func(token, algorithms string) (string, error) {
				out, err := exec.Command(node, filepath.Join(dir, "verify.mjs"), jwks, token, "tether", "tether", algorithms).CombinedOutput()
				return string(out), err
			}

			access := tok["accessToken"].(string)
			out, err := verify(access, alg)
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
			if got.Header["alg"] != alg || got.Claims["sid"] != tok["sessionId"] || got.Claims["did"] != tok["deviceId"] || got.Claims["role"] != "worker" {
				t.Fatalf("jose saw %+v; want a %s token of the session", got, alg)
			}
			// A resource server accepting all three takes it too.
			if out, err := verify(access, strings.Join(auth.Algorithms(), ",")); err != nil {
				t.Fatalf("jose accepting every algorithm refused a %s token: %v\n%s", alg, err, out)
			}

			r := e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": access, "deviceId": tok["deviceId"]})
			if r.status != 200 {
				t.Fatalf("renew: %d %s", r.status, r.body)
			}
			if out, err := verify(r.json(t)["accessToken"].(string), alg); err != nil {
				t.Fatalf("jose refused the renewed token: %v\n%s", err, out)
			}

			parts := strings.Split(access, ".")
			tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
			if out, err := verify(tampered, alg); err == nil {
				t.Fatalf("jose accepted a tampered token: %s", out)
			}
			for _, other := range auth.Algorithms() {
				if other == alg {
					continue
				}
				if out, err := verify(access, other); err == nil || !strings.Contains(out, "ERR_JOSE_ALG_NOT_ALLOWED") {
					t.Fatalf("jose pinned to %s: got %v, %s; want ERR_JOSE_ALG_NOT_ALLOWED", other, err, out)
				}
			}
		})
	}
}

// joseTool returns node and the directory of the jose scripts
// (testdata/jose), or skips the test without them (CI must have them).
func joseTool(t *testing.T) (node, dir string) {
	t.Helper()
	return nodePackage(t, "jose", "jose")
}

// nodePackage returns node and testdata/<dir>, where npm ci installed
// pkg, or, without them, skips the test locally and fails it in CI
// (skipOrFail): .ci/run and .ci/test install them.
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
