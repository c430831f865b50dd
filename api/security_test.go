package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPasswordEndpoints: a manager's reset ends every session of the
// account at once; a user's own change ends every other one and keeps
// theirs; the change takes only well-formed bodies.
func TestPasswordEndpoints(t *testing.T) {
	e := newEnv(t)
	_, other := e.fleet()
	first := e.loginWorker()
	walter := first["user"].(map[string]any)["id"].(string)

	r := e.do("POST", "/v1/users/"+walter+"/password", e.manager, map[string]any{"password": "reset by the boss"})
	if r.status != 204 {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", first["accessToken"].(string), nil), 401, "session_revoked")
	wantProblem(t, e.do("POST", "/v1/auth/renew", "", map[string]any{"accessToken": first["accessToken"], "deviceId": first["deviceId"]}), 401, "session_revoked")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": first["refreshToken"], "deviceId": first["deviceId"]}), 401, "session_revoked")

	login := func(imei, pw string) map[string]any {
		t.Helper()
		r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": pw, "device": handset(imei)})
		if r.status != 200 {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	here := login("490154203237518", "reset by the boss")
	elsewhere := login("356938035643809", "reset by the boss")
	token := here["accessToken"].(string)
	for _, c := range []struct {
		name, body, code string
		status           int
	}{
		{"wrong current password", `{"currentPassword":"a guess","newPassword":"my very own password"}`, "validation_failed", 400},
		{"too short", `{"currentPassword":"reset by the boss","newPassword":"short"}`, "validation_failed", 400},
		{"wrong type", `{"currentPassword":"reset by the boss","newPassword":12345678901}`, "invalid_request", 400},
		{"unknown field", `{"currentPassword":"reset by the boss","newPassword":"my very own password","admin":true}`, "invalid_request", 400},
		{"not JSON", `currentPassword=x`, "invalid_request", 400},
	} {
		wantProblem(t, e.do("POST", "/v1/auth/password", token, c.body), c.status, c.code)
	}
	wantProblem(t, e.do("POST", "/v1/auth/password", e.manager, `{"currentPassword":"x","newPassword":"my very own password"}`), 403, "forbidden")
	if r := e.do("POST", "/v1/auth/password", token, `{"currentPassword":"reset by the boss","newPassword":"my very own password"}`); r.status != 204 {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/auth/me", token, nil); r.status != 200 {
		t.Fatalf("the session the change was made from: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", elsewhere["accessToken"].(string), nil), 401, "session_revoked")
	if elsewhere["deviceId"] != other {
		t.Fatalf("second login on %v; want %s", elsewhere["deviceId"], other)
	}
	login("356938035643809", "my very own password")
}

// TestLockoutsOverHTTP: a burst of wrong passwords from real clients at
// once gets exactly the five free attempts hashed; managers see the
// account held back and clear it.
func TestLockoutsOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	base := e.url()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 50}}
	device, err := json.Marshal(handset("490154203237518"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 40 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"username":"walter","password":"guess %d","device":%s}`, i, device)
			resp, err := client.Post(base+"/v1/auth/login", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if n, most := statuses[401], 5+waitsWithin(time.Since(start)); n < 5 || n > most || statuses[401]+statuses[429] != 40 {
		t.Fatalf("answers %v; want 5 to %d 401, the rest 429", statuses, most)
	}

	// The right password from the same address waits too; from another
	// address it would not.
	right := func() int {
		t.Helper()
		resp, err := client.Post(base+"/v1/auth/login", "application/json",
			strings.NewReader(fmt.Sprintf(`{"username":"walter","password":"correct horse","device":%s}`, device)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := right(); status != 429 {
		t.Fatalf("the right password from the guessing address: %d; want 429", status)
	}
	r := e.do("GET", "/v1/lockouts?account=WALTER", e.manager, nil)
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	items := r.json(t)["items"].([]any)
	held := false
	for _, it := range items {
		m := it.(map[string]any)
		if m["account"] != "walter" {
			t.Fatalf("lockout of %v listed for walter", m["account"])
		}
		if m["blockedUntil"] != nil && m["failures"] == float64(5) {
			held = true
		}
	}
	if !held {
		t.Fatalf("walter is not shown held back: %s", r.body)
	}
	if r := e.do("GET", "/v1/lockouts?limit=0", e.manager, nil); r.status != 400 {
		t.Fatalf("limit=0: %d", r.status)
	}
	wantProblem(t, e.do("DELETE", "/v1/lockouts", e.manager, nil), 400, "validation_failed")
	r = e.do("DELETE", "/v1/lockouts?account="+url.QueryEscape("Walter"), e.manager, nil)
	if r.status != 200 || r.json(t)["cleared"].(float64) < 1 {
		t.Fatalf("clear: %d %s", r.status, r.body)
	}
	if status := right(); status != 200 {
		t.Fatalf("the right password from that address after clearing: %d; want 200", status)
	}
	audit := e.do("GET", "/v1/audit?action=throttle.clear", e.manager, nil)
	if n := len(audit.json(t)["items"].([]any)); n != 1 {
		t.Fatalf("%d audit events of the clearing; want 1", n)
	}
}

// TestEmergencyRotationOverHTTP: POST /v1/admin/keys/rotate with revoke
// cuts off every token the old key signed at once; the app's refresh gets
// it going again.
func TestEmergencyRotationOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	tok := e.loginWorker()
	wantProblem(t, e.do("POST", "/v1/admin/keys/rotate", e.admin, `{"revoke":"yes"}`), 400, "invalid_request")
	wantProblem(t, e.do("POST", "/v1/admin/keys/rotate", e.manager, `{"revoke":true}`), 403, "forbidden")
	if r := e.do("GET", "/v1/auth/me", tok["accessToken"].(string), nil); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	r := e.do("POST", "/v1/admin/keys/rotate", e.admin, `{"revoke":true}`)
	if r.status != 200 || r.json(t)["revoked"] != true {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", tok["accessToken"].(string), nil), 401, "token_invalid")
	next := e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": tok["refreshToken"], "deviceId": tok["deviceId"]})
	if next.status != 200 {
		t.Fatalf("refresh: %d %s", next.status, next.body)
	}
	if r := e.do("GET", "/v1/auth/me", next.json(t)["accessToken"].(string), nil); r.status != 200 {
		t.Fatalf("the refreshed token: %d %s", r.status, r.body)
	}
	// Without a body it is the usual rotation: the old token still works.
	if r := e.do("POST", "/v1/admin/keys/rotate", e.admin, nil); r.status != 200 || r.json(t)["revoked"] != false {
		t.Fatalf("plain rotate: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/auth/me", next.json(t)["accessToken"].(string), nil); r.status != 200 {
		t.Fatalf("a token of the retired key: %d %s", r.status, r.body)
	}
}
