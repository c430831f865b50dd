package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"tether/storage/postgres/pgtest"
)

// TestTwoInstancesOneDatabase runs two servers on one PostgreSQL database,
// as behind a load balancer: a handset logs in on one and refreshes on the
// other; a token either signed verifies on both; a refresh sent to both at
// once rotates once; a manager's revocation on one is refused by the
// other at once; and a key rotated on one signs on the other.
func TestTwoInstancesOneDatabase(t *testing.T) {
	url := pgtest.Schema(t)
	r := runCLI(t, "", nil, "apikey", "create", "--store", url, "--role", "admin")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	admin := strings.TrimSpace(r.stdout)
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--store", url, "--username", "walter", "--role", "worker", "--password-stdin"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, "", nil, "device", "add", "--store", url, "--imei", "490154203237518"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// The instances' own data directories stay empty: the records are in
	// the database.
	a := startServer(t, t.TempDir(), "--store", url)
	b := startServer(t, t.TempDir(), "--store", url)
	onA, onB := "http://"+a.addr, "http://"+b.addr

	payload := `{"imei":"490154203237518","hasIccCard":true,"iccIds":["89445001021983048261"],"osVersion":{"api":34,"name":"14"},` +
		`"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}`
	code, login := request(t, "POST", onA+"/v1/auth/login", "", `{"username":"walter","password":"correct horse","persistent":true,"device":`+payload+`}`)
	if code != 200 {
		t.Fatalf("login on A: %d %v", code, login)
	}
	device := login["deviceId"].(string)
	if code, m := request(t, "GET", onB+"/v1/auth/me", login["accessToken"].(string), ""); code != 200 {
		t.Fatalf("A's token on B: %d %v", code, m)
	}

	// The same refresh token to both at once: one rotation, one pair.
	refresh := func(base, token string) (int, map[string]any) {
		return request(t, "POST", base+"/v1/auth/refresh", "", fmt.Sprintf(`{"refreshToken":%q,"deviceId":%q}`, token, device))
	}
	var wg sync.WaitGroup
	pairs := make([]map[string]any, 8)
	for i := range pairs {
		wg.Go(func() {
			base := []string{onA, onB}[i%2]
			code, m := refresh(base, login["refreshToken"].(string))
			if code != 200 {
				t.Errorf("refresh %d: %d %v", i, code, m)
			}
			pairs[i] = m
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, p := range pairs[1:] {
		if p["refreshToken"] != pairs[0]["refreshToken"] || p["accessToken"] != pairs[0]["accessToken"] {
			t.Fatal("a refresh sent to both instances at once rotated more than once")
		}
	}
	code, next := refresh(onB, pairs[0]["refreshToken"].(string))
	if code != 200 {
		t.Fatalf("refresh on B: %d %v", code, next)
	}

	// A manager revokes the session on A; B refuses its tokens at once.
	if code, m := request(t, "DELETE", onA+"/v1/sessions/"+next["sessionId"].(string), admin, ""); code != 204 {
		t.Fatalf("revoke on A: %d %v", code, m)
	}
	if code, m := request(t, "GET", onB+"/v1/auth/me", next["accessToken"].(string), ""); code != 401 || m["code"] != "session_revoked" {
		t.Fatalf("a revoked session's token on B: %d %v", code, m)
	}
	if code, m := refresh(onB, next["refreshToken"].(string)); code != 401 || m["code"] != "session_revoked" {
		t.Fatalf("a revoked session's refresh on B: %d %v", code, m)
	}

	// A key rotated on A: B verifies what A signs with it at once.
	if code, m := request(t, "POST", onA+"/v1/admin/keys/rotate", admin, ""); code != 200 {
		t.Fatalf("rotate on A: %d %v", code, m)
	}
	code, again := request(t, "POST", onA+"/v1/auth/login", "", `{"username":"walter","password":"correct horse","device":`+payload+`}`)
	if code != 200 {
		t.Fatalf("login on A after the rotation: %d %v", code, again)
	}
	if code, m := request(t, "GET", onB+"/v1/auth/me", again["accessToken"].(string), ""); code != 200 {
		t.Fatalf("a token of A's new key on B: %d %v", code, m)
	}
}
