package api_test

import (
	"strings"
	"testing"
)

func TestUsers(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/users", e.manager, map[string]any{
		"username": "Alice", "password": "correct horse", "firstName": "Alice", "lastName": "Smith",
		"email": "alice@example.com", "features": []string{"scan"}, "profile": map[string]any{"dealerList": []any{}},
	})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	u := r.json(t)
	id := u["id"].(string)
	if u["role"] != "worker" || u["username"] != "Alice" || u["key"] != float64(1) || r.header.Get("Location") != "/v1/users/"+id {
		t.Fatalf("create answer: %s", r.body)
	}
	if strings.Contains(string(r.body), "argon2") || strings.Contains(string(r.body), "correct horse") || u["passwordHash"] != nil {
		t.Fatal("the answer shows the password or its hash")
	}

	wantProblem(t, e.do("POST", "/v1/users", e.manager, map[string]any{"username": "ALICE", "password": "another one"}), 409, "conflict")
	wantProblem(t, e.do("POST", "/v1/users", e.manager, map[string]any{"username": "ａｌｉｃｅ", "password": "another one"}), 409, "conflict")
	wantProblem(t, e.do("POST", "/v1/users", e.manager, map[string]any{"username": "boss", "password": "long enough", "role": "admin"}), 403, "forbidden")
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "boss", "password": "long enough", "role": "admin"}); r.status != 201 {
		t.Fatalf("admin creating an admin: %d %s", r.status, r.body)
	}

	p := wantProblem(t, e.do("POST", "/v1/users", e.manager, map[string]any{
		"username": "with space", "password": "short", "role": "root", "email": "nope", "imageUrl": "ftp://x",
	}), 400, "validation_failed")
	got := fieldCodes(t, p)
	for f, c := range map[string]string{"username": "username_invalid", "password": "password_length", "role": "role_invalid", "email": "email_invalid", "imageUrl": "image_url_invalid"} {
		if got[f] != c {
			t.Errorf("%s: %q; want %q (all %v)", f, got[f], c, got)
		}
	}
	if n := e.userCount(); n != 2 {
		t.Fatalf("%d users; want 2", n)
	}

	if r := e.do("GET", "/v1/users/"+id, e.manager, nil); r.status != 200 || r.json(t)["email"] != "alice@example.com" {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/users/usr_missing", e.manager, nil), 404, "not_found")

	r = e.do("PATCH", "/v1/users/"+id, e.manager, map[string]any{"disabled": true, "lastName": "Jones"})
	if r.status != 200 || r.json(t)["disabled"] != true || r.json(t)["lastName"] != "Jones" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("PATCH", "/v1/users/"+id, e.manager, map[string]any{"username": "bob"}), 400, "invalid_request")
	wantProblem(t, e.do("PATCH", "/v1/users/"+id, e.manager, map[string]any{"role": "admin"}), 403, "forbidden")

	r = e.do("GET", "/v1/users?role=worker&disabled=true", e.manager, nil)
	if items := r.json(t)["items"].([]any); r.status != 200 || len(items) != 1 {
		t.Fatalf("list disabled workers: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/users?role=admin", e.manager, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("list admins: %s", r.body)
	}
	wantProblem(t, e.do("GET", "/v1/users?disabled=maybe", e.manager, nil), 400, "invalid_request")
	wantProblem(t, e.do("GET", "/v1/users?role=owner", e.manager, nil), 400, "validation_failed")

	if r := e.do("POST", "/v1/users/"+id+"/password", e.manager, map[string]any{"password": "a new password"}); r.status != 204 {
		t.Fatalf("set password: %d %s", r.status, r.body)
	}
	p = wantProblem(t, e.do("POST", "/v1/users/"+id+"/password", e.manager, map[string]any{"password": "short"}), 400, "validation_failed")
	if fieldCodes(t, p)["password"] != "password_length" {
		t.Fatal(p)
	}
	wantProblem(t, e.do("POST", "/v1/users/usr_missing/password", e.manager, map[string]any{"password": "long enough"}), 404, "not_found")
	if strings.Contains(e.logs.String(), "a new password") || strings.Contains(e.logs.String(), "correct horse") {
		t.Fatal("a password was logged")
	}
}

func TestAPIKeyRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "manager", "name": "ci"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	k := r.json(t)
	secret, _ := k["key"].(string)
	if !strings.HasPrefix(secret, "tak_") || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create answer: %s", r.body)
	}
	if r := e.do("GET", "/v1/devices", secret, nil); r.status != 200 {
		t.Fatalf("new key does not work: %d", r.status)
	}
	r = e.do("GET", "/v1/api-keys", e.admin, nil)
	if strings.Contains(string(r.body), secret) || len(r.json(t)["items"].([]any)) != 4 {
		t.Fatalf("list: %s", r.body)
	}
	p := wantProblem(t, e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "worker"}), 400, "validation_failed")
	if fieldCodes(t, p)["role"] != "role_invalid" {
		t.Fatal(p)
	}
	if r := e.do("DELETE", "/v1/api-keys/"+k["id"].(string), e.admin, nil); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	wantProblem(t, e.do("GET", "/v1/devices", secret, nil), 401, "token_invalid")
	wantProblem(t, e.do("DELETE", "/v1/api-keys/"+k["id"].(string), e.admin, nil), 404, "not_found")
}

// TestUsernamesDifferingOnlyInForm: usernames that differ only by case,
// width or Unicode composition are one account: they cannot be created
// twice, each logs in to the same user, and failures under any of them
// count against that one account's throttle.
func TestUsernamesDifferingOnlyInForm(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "Jos\u00e9", "password": "correct horse", "role": "manager"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"]
	variants := []string{"JOS\u00c9", "jose\u0301", "\uff2a\uff4f\uff53\u00e9", "JOSE\u0301"}
	for _, name := range variants {
		wantProblem(t, e.do("POST", "/v1/users", e.admin, map[string]any{"username": name, "password": "another horse", "role": "manager"}), 409, "conflict")
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": name, "password": "correct horse"})
		if r.status != 200 {
			t.Fatalf("login as %q: %d %s", name, r.status, r.body)
		}
		if got := r.json(t)["user"].(map[string]any)["id"]; got != id {
			t.Fatalf("login as %q reached user %v; want %v", name, got, id)
		}
	}
	// A different name is a different account.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "Josef", "password": "another horse", "role": "manager"}); r.status != 201 {
		t.Fatalf("Josef: %d %s", r.status, r.body)
	}
	for i := range 5 {
		wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": variants[i%len(variants)], "password": "wrong"}), 401, "invalid_credentials")
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "José", "password": "correct horse"}), 429, "too_many_attempts")
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "Josef", "password": "another horse"}); r.status != 200 {
		t.Fatalf("another account after the lock: %d %s", r.status, r.body)
	}
}

// TestConfusableUsernames is the attack of an impostor account: a
// username that differs from a real one only by look-alike characters
// (Cyrillic for Latin, "rn" for "m", a digit for a letter) is refused, and
// is no way into the real account either.
func TestConfusableUsernames(t *testing.T) {
	e := newEnv(t)
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mike.k", "password": "correct horse"}); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for _, name := range []string{"mikе.k" /* Cyrillic е */, "rnike.k", "MIKE.K" /* the same account */, "mіke.k" /* Ukrainian і */} {
		p := wantProblem(t, e.do("POST", "/v1/users", e.admin, map[string]any{"username": name, "password": "another horse"}), 409, "conflict")
		if !strings.Contains(p["detail"].(string), name) {
			t.Errorf("%q refused with %q; want the name in it", name, p["detail"])
		}
	}
	if n := e.userCount(); n != 1 {
		t.Fatalf("%d users; want 1", n)
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "mikе.k", "password": "correct horse"}), 401, "invalid_credentials")
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mike.kr", "password": "another horse"}); r.status != 201 {
		t.Fatalf("a name that only starts alike: %d %s", r.status, r.body)
	}
}

// TestSameMemberInTwoObjects: a member name may appear once in each of
// several objects; only a repeat within one object is refused.
func TestSameMemberInTwoObjects(t *testing.T) {
	e := newEnv(t)
	body := `{"username":"dora","password":"correct horse","profile":{"username":"dora.w","team":{"username":"north","Username":"x"}}}`
	p := wantProblem(t, e.do("POST", "/v1/users", e.manager, body), 400, "invalid_request")
	if want := `member "Username" repeats "username"`; !strings.Contains(p["detail"].(string), want) {
		t.Fatalf("detail %q; want %q in it", p["detail"], want)
	}
	body = `{"username":"dora","password":"correct horse","profile":{"username":"dora.w","team":{"username":"north"},"teams":[{"username":"a"},{"username":"b"}]}}`
	r := e.do("POST", "/v1/users", e.manager, body)
	if r.status != 201 {
		t.Fatalf("create: %d %s; want 201", r.status, r.body)
	}
	if p := r.json(t)["profile"].(map[string]any); p["username"] != "dora.w" || p["team"].(map[string]any)["username"] != "north" {
		t.Fatalf("profile %v", p)
	}
}
