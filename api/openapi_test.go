package api_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// notNative are the routes the server serves that are not the native API:
// the compatibility dialects (docs/compat.md) and the console's files.
var notNative = map[string]bool{
	"POST /api/User/GetUserToken":             true,
	"POST /api/Login":                         true,
	"POST /commandcenter/api/Login":           true,
	"POST /api/RenewLoginToken":               true,
	"POST /commandcenter/api/RenewLoginToken": true,
	"POST /api/v1/Authentication/Login":       true,
	"POST /api/v1/Authentication/TokenLogin":  true,
	"POST /Auth/Login":                        true,
	"POST /api/session/regeneratetoken":       true,
	"GET /console":                            true,
	"GET /console/*":                          true,
}

// TestOpenAPIMatchesRoutes checks that every route the server serves is in
// /openapi.json, and every operation there is served: without OAuth (no
// public URL), and with it.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Run("native", func(t *testing.T) { checkOpenAPIRoutes(t, newEnv(t), 30) })
	t.Run("oauth", func(t *testing.T) { checkOpenAPIRoutes(t, newEnv(t, oauthOn{}), 60) })
}

func checkOpenAPIRoutes(t *testing.T, e *env, least int) {
	r := e.do("GET", "/openapi.json", "", nil)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &doc) != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("/openapi.json: %d %.200s", r.status, r.body)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	param := regexp.MustCompile(`:([a-zA-Z]+)`)
	served := map[string]bool{}
	for _, rt := range e.app.GetRoutes(true) {
		if rt.Method == "HEAD" {
			continue
		}
		path := strings.TrimSuffix(rt.Path, "/")
		if path == "" {
			path = "/"
		}
		key := rt.Method + " " + param.ReplaceAllString(path, "{$1}")
		if notNative[rt.Method+" "+path] {
			continue
		}
		served[key] = true
		if !documented[key] {
			t.Errorf("served but not in /openapi.json: %s", key)
		}
	}
	var missing []string
	for key := range documented {
		if !served[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	for _, key := range missing {
		t.Errorf("in /openapi.json but not served: %s", key)
	}
	if len(served) < least {
		t.Fatalf("only %d routes found: the route listing is broken", len(served))
	}
}

// TestOpenAPIValid runs an OpenAPI validator (swagger-parser, in
// testdata/openapi) on the document. .ci/run installs it.
func TestOpenAPIValid(t *testing.T) {
	dir := filepath.Join("..", "testdata", "openapi")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@apidevtools", "swagger-parser"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run this: %v (run npm ci in testdata/openapi)", err)
		}
		t.Skipf("node or testdata/openapi/node_modules missing: %v", err)
	}
	for name, e := range map[string]*env{"native": newEnv(t), "oauth": newEnv(t, oauthOn{})} {
		file := filepath.Join(t.TempDir(), "openapi.json")
		if err := os.WriteFile(file, e.do("GET", "/openapi.json", "", nil).body, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, filepath.Join(dir, "validate.mjs"), file).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "valid: Tether") {
			t.Fatalf("the validator refuses the %s /openapi.json: %v\n%s", name, err, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(string(out)))
	}

	// And it refuses a broken document, so the check means something.
	broken := filepath.Join(t.TempDir(), "broken.json")
	os.WriteFile(broken, []byte(`{"openapi":"3.1.0","info":{"title":"x"},"paths":{"/a":{"get":{"responses":{"200":{"$ref":"#/nope"}}}}}}`), 0o600)
	if out, err := exec.Command(node, filepath.Join(dir, "validate.mjs"), broken).CombinedOutput(); err == nil {
		t.Fatalf("the validator accepted a broken document: %s", out)
	}
}
