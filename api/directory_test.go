package api_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"tether/directory"
	"tether/directory/ldaptest"
)

// directoryEnv is a server with directory sign-in against a real slapd:
// alice is a worker there, bob a manager.
func directoryEnv(t *testing.T) (*env, *ldaptest.Server) {
	t.Helper()
	srv := ldaptest.Start(t)
	alice := srv.AddPerson(t, ldaptest.Person{UID: "alice", Password: "alice's secret", GivenName: "Alice", SN: "Able"})
	bob := srv.AddPerson(t, ldaptest.Person{UID: "bob", Password: "bob's secret"})
	d, err := directory.New(directory.Config{
		URLs: []string{srv.URL}, BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword,
		UserBase: ldaptest.PeopleDN, GroupBase: ldaptest.GroupsDN,
		WorkerGroup: srv.AddGroup(t, "field", alice), ManagerGroup: srv.AddGroup(t, "office", bob),
		ConnectTimeout: time.Second, OperationTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e := newEnv(t, d)
	e.fleet()
	return e, srv
}

// TestDirectorySignInEverywhere: a directory user signs in through every
// entry point: the native API, each dialect that takes a password, and
// the manager API; what the directory owns answers 409; the directory down
// answers 503 with Retry-After to its users, and local users go on.
func TestDirectorySignInEverywhere(t *testing.T) {
	e, srv := directoryEnv(t)
	device := handset("490154203237518")
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "alice's secret", "device": device}); r.status != 200 {
		t.Fatalf("native login: %d %s", r.status, r.body)
	}
	clientKey := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client"}).json(t)["key"].(string)
	for name, r := range map[string]response{
		"get-user-token":    e.do("POST", "/api/User/GetUserToken", "", fixture(t, "get-user-token.request.json", map[string]string{"username": "alice", "password": "alice's secret"})),
		"renew-login-token": e.do("POST", "/api/Login", "", map[string]any{"username": "alice", "password": "alice's secret", "deviceId": "490154203237518"}),
		"token-login": e.do("POST", "/api/v1/Authentication/Login?APIKey="+clientKey, "", map[string]any{"username": "alice", "password": "alice's secret"},
			"X-Device-Id", "490154203237518"),
		"auth-login-session": e.do("POST", "/Auth/Login", "", nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice's secret")),
			"X-Device-Id", "490154203237518"),
	} {
		if r.status != 200 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// A manager from the directory reaches the manager API with their token.
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "bob", "password": "bob's secret"})
	if r.status != 200 {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	bob := r.json(t)["accessToken"].(string)
	users := e.do("GET", "/v1/users?source=ldap", bob, nil)
	if users.status != 200 {
		t.Fatalf("the manager API with a directory manager's token: %d %s", users.status, users.body)
	}
	var aliceID string
	for _, it := range users.json(t)["items"].([]any) {
		u := it.(map[string]any)
		if u["source"] != "ldap" || u["directory"].(map[string]any)["dn"] == "" {
			t.Fatalf("a directory user as the API shows it: %v", u)
		}
		if u["username"] == "alice" {
			aliceID = u["id"].(string)
		}
	}
	wantProblem(t, e.do("PATCH", "/v1/users/"+aliceID, bob, map[string]any{"lastName": "Other"}), 409, "directory_managed")
	wantProblem(t, e.do("POST", "/v1/users/"+aliceID+"/password", bob, map[string]any{"password": "a local one"}), 409, "directory_managed")
	if r := e.do("PATCH", "/v1/users/"+aliceID, bob, map[string]any{"features": []string{"scan"}}); r.status != 200 {
		t.Fatalf("Tether's own fields of a directory user: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "wrong", "device": device}), 401, "invalid_credentials")

	status := e.do("GET", "/v1/directory", bob, nil).json(t)
	if status["configured"] != true || status["up"] != true {
		t.Fatalf("directory status: %v", status)
	}

	srv.Stop(t)
	r = e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "alice's secret", "device": device})
	wantProblem(t, r, 503, "directory_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"}); r.status != 200 {
		t.Fatalf("a local manager with the directory down: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/readyz", "", nil); r.status != 200 {
		t.Fatalf("readyz with the directory down: %d", r.status)
	}
	if status := e.do("GET", "/v1/directory", e.manager, nil).json(t); status["up"] != false {
		t.Fatalf("directory status with it down: %v", status)
	}
	metrics := string(e.do("GET", "/metrics", "", nil).body)
	if !strings.Contains(metrics, "tether_directory_up 0") {
		t.Fatal("tether_directory_up is not 0 with the directory down")
	}
}
