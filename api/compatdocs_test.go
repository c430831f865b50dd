package api_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"tether/auth"
)

// docExamples reads the examples of docs/compat.md: each fenced block after
// a <!-- example NAME KIND --> marker.
func docExamples(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "compat.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- example ([a-z-]+) ([a-z]+) -->\\s*```[a-z]*\\n(.*?)```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		out[m[1]+" "+m[2]] = m[3]
	}
	return out
}

// TestCompatDocs sends every request example of docs/compat.md and checks
// every answer example has the shape of the real answer.
func TestCompatDocs(t *testing.T) {
	ex := docExamples(t)
	want := []string{
		"get-user-token request", "get-user-token answer", "command-login request", "renew-login-token request",
		"renew-login-token answer", "renew-login-token error", "token-login request", "token-login answer",
		"token-login-reauth request", "auth-login-session answer", "regenerate-token request", "regenerate-token answer",
	}
	for _, name := range want {
		if _, ok := ex[name]; !ok {
			t.Fatalf("docs/compat.md has no example %q", name)
		}
	}
	// No retry grace: the documented error comes from renewing one token
	// twice.
	e := newEnv(t, func(c *auth.Config) { c.RefreshReuseGrace = 0 })
	phone, _ := e.fleet()
	clientKey := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client"}).json(t)["key"].(string)

	// check compares a documented answer with a real one by shape.
	check := func(name string, r response, status int) map[string]any {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		var doc, got any
		if err := json.Unmarshal([]byte(ex[name]), &doc); err != nil {
			t.Fatalf("%s in the docs is not JSON: %v", name, err)
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("%s: answer is not JSON: %s", name, r.body)
		}
		sameShape(t, name, doc, got)
		m, _ := got.(map[string]any)
		return m
	}
	fill := func(s string, vars map[string]string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}

	check("get-user-token answer", e.do("POST", "/api/User/GetUserToken", "", ex["get-user-token request"]), 200)

	token := check("renew-login-token answer", e.do("POST", "/api/Login", "", ex["command-login request"]), 200)["token"].(string)
	renew := fill(ex["renew-login-token request"], map[string]string{"$TOKEN": token})
	check("renew-login-token answer", e.do("POST", "/api/RenewLoginToken", "", renew, "Authtoken", token), 200)
	check("renew-login-token error", e.do("POST", "/api/RenewLoginToken", "", renew, "Authtoken", token), 401)

	got := check("token-login answer", e.do("POST", "/api/v1/Authentication/Login?APIKey="+clientKey, "", ex["token-login request"], "X-Device-Id", phone), 200)
	reauth := fill(ex["token-login-reauth request"], map[string]string{"$REFRESH": got["ReAuthenticationToken"].(string)})
	check("token-login answer", e.do("POST", "/api/v1/Authentication/TokenLogin?APIKey="+clientKey, "", reauth, "X-Device-Id", phone), 200)

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("walter:correct horse"))
	session := check("auth-login-session answer", e.do("POST", "/Auth/Login", "", nil, "Authorization", basic, "X-Device-Id", phone), 200)

	regen := fill(ex["regenerate-token request"], map[string]string{"$TOKEN": session["userToken"].(string)})
	r := e.do("POST", "/api/session/regeneratetoken", "", regen, "X-Device-Id", phone)
	check("regenerate-token answer", r, 200)
	events := e.do("GET", "/v1/audit?action=renew", e.manager, nil).json(t)["items"].([]any)
	detail := events[len(events)-1].(map[string]any)["detail"].(map[string]any)
	if detail["client.machineName"] != "DEPOT-PC-3" {
		t.Fatalf("the documented client details are not audited: %v", detail)
	}
}
