package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/auth/dpop"
	"tether/storage/postgres/pgtest"
)

// pgSite makes an empty database schema with an admin API key and a
// worker, walter, with the password "correct horse", and returns its URL
// and the key.
func pgSite(t *testing.T) (url, admin string) {
	t.Helper()
	url = pgtest.Schema(t)
	r := runCLI(t, "", nil, "apikey", "create", "--store", url, "--role", "admin")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--store", url, "--username", "walter", "--role", "worker", "--password-stdin"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	return url, strings.TrimSpace(r.stdout)
}

// TestTwoInstancesOneDatabase runs two servers on one PostgreSQL database,
// as behind a load balancer: a handset logs in on one and refreshes on the
// other; a token either signed verifies on both; a refresh sent to both at
// once rotates once; a manager's revocation on one is refused by the
// other at once; and a key rotated on one signs on the other.
func TestTwoInstancesOneDatabase(t *testing.T) {
	url, admin := pgSite(t)
	if r := runCLI(t, "", nil, "device", "add", "--store", url, "--imei", "490154203237518"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// The instances' own data directories stay empty: the records are in
	// the database.
	// Not shed for their wait: every answer of the burst is counted.
	a := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
	b := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
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

// TestMigrateBothWays moves a store that has served logins from the
// embedded store to PostgreSQL and back, and a handset's tokens go on
// working on each: every record, signing key and session came along.
func TestMigrateBothWays(t *testing.T) {
	url := pgtest.Schema(t)
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "admin")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	admin := strings.TrimSpace(r.stdout)
	srv := startServer(t, dir)
	base := "http://" + srv.addr
	if code, m := request(t, "POST", base+"/v1/users", admin, `{"username":"boss","password":"correct horse","role":"manager"}`); code != 201 {
		t.Fatalf("user: %d %v", code, m)
	}
	for _, imei := range []string{"490154203237518", "356938035643809"} {
		if code, m := request(t, "POST", base+"/v1/devices", admin, `{"imei":"`+imei+`"}`); code != 201 {
			t.Fatalf("device: %d %v", code, m)
		}
	}
	code, login := request(t, "POST", base+"/v1/auth/login", "", `{"username":"boss","password":"correct horse","persistent":true}`)
	if code != 200 {
		t.Fatalf("login: %d %v", code, login)
	}
	srv.stop(t)

	hop := func(from, to string) {
		t.Helper()
		r := runCLI(t, "", nil, "migrate", "--from", from, "--to", to)
		if r.code != 0 || !strings.Contains(r.stderr, "2 devices, 1 users, 1 API keys, 1 sessions") || !strings.Contains(r.stderr, "the counts match") {
			t.Fatalf("migrate %s → %s: exit %d\n%s", from, to, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "password=") {
			t.Fatalf("migrate printed a password: %s", r.stderr)
		}
	}
	// The tokens issued on the old store work on the new one.
	works := func(base string, tokens map[string]any) map[string]any {
		t.Helper()
		if code, m := request(t, "GET", base+"/v1/auth/me", tokens["accessToken"].(string), ""); code != 200 {
			t.Fatalf("the access token after the move: %d %v", code, m)
		}
		code, next := request(t, "POST", base+"/v1/auth/refresh", "", `{"refreshToken":"`+tokens["refreshToken"].(string)+`","deviceId":""}`)
		if code != 200 {
			t.Fatalf("the refresh token after the move: %d %v", code, next)
		}
		return next
	}

	hop(dir, url)
	srv = startServer(t, t.TempDir(), "--store", url)
	login = works("http://"+srv.addr, login)
	srv.stop(t)

	backDir := t.TempDir()
	hop(url, filepath.Join(backDir, dbFile))
	srv = startServer(t, backDir)
	works("http://"+srv.addr, login)
	srv.stop(t)

	// Into a store that is not empty, or onto itself: refused.
	if r := runCLI(t, "", nil, "migrate", "--from", dir, "--to", url); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("migrate into a store that is not empty: exit %d\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, "", nil, "migrate", "--from", url, "--to", url); r.code != 2 {
		t.Fatalf("migrate onto itself: exit %d\n%s", r.code, r.stderr)
	}
}

// TestProofReplayedToAnotherInstance: behind one public address, a DPoP
// proof used on one instance is refused on the other.
func TestProofReplayedToAnotherInstance(t *testing.T) {
	url, admin := pgSite(t)
	const public = "https://tether.example"
	a := startServer(t, t.TempDir(), "--store", url, "--public-url", public)
	b := startServer(t, t.TempDir(), "--store", url, "--public-url", public)
	onA, onB := "http://"+a.addr, "http://"+b.addr
	k, err := dpop.NewKey("EC")
	if err != nil {
		t.Fatal(err)
	}
	if code, m := request(t, "POST", onA+"/v1/devices", admin, `{"imei":"490154203237518","publicKey":`+string(k.PublicJWK())+`}`); code != 201 {
		t.Fatalf("register: %d %v", code, m)
	}
	proven := func(base, path, body, proof string) (int, map[string]any) {
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	proof := func(path string) string {
		p, err := k.Proof("POST", public+path, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	payload := `{"imei":"490154203237518","hasIccCard":true,"iccIds":["89445001021983048261"],"osVersion":{"api":34,"name":"14"},` +
		`"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}`
	code, g := proven(onA, "/v1/auth/login", `{"username":"walter","password":"correct horse","persistent":true,"device":`+payload+`}`, proof("/v1/auth/login"))
	if code != 200 || g["tokenType"] != "DPoP" {
		t.Fatalf("login on A: %d %v", code, g)
	}
	p := proof("/v1/auth/refresh")
	code, next := proven(onA, "/v1/auth/refresh", fmt.Sprintf(`{"refreshToken":%q,"deviceId":%q}`, g["refreshToken"], g["deviceId"]), p)
	if code != 200 {
		t.Fatalf("refresh on A: %d %v", code, next)
	}
	body := fmt.Sprintf(`{"refreshToken":%q,"deviceId":%q}`, next["refreshToken"], g["deviceId"])
	if code, m := proven(onB, "/v1/auth/refresh", body, p); code != 401 || m["code"] != "proof_invalid" || !strings.Contains(fmt.Sprint(m["detail"]), "used before") {
		t.Fatalf("A's proof replayed to B: %d %v", code, m)
	}
	if code, m := proven(onB, "/v1/auth/refresh", body, proof("/v1/auth/refresh")); code != 200 {
		t.Fatalf("a fresh proof on B: %d %v", code, m)
	}
}

// TestDefencesAcrossInstances: the security defences hold for two servers
// on one database as for one: a burst of wrong passwords spread over both
// gets five hashed in all, not five on each; a manager on one sees and
// clears what the other counted; a password reset on one ends the tokens
// on the other; a signing key revoked on one stops verifying on the other
// at once.
func TestDefencesAcrossInstances(t *testing.T) {
	url, admin := pgSite(t)
	// Not shed for their wait: every answer of the burst is counted.
	a := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
	b := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
	onA, onB := "http://"+a.addr, "http://"+b.addr
	if code, m := request(t, "POST", onA+"/v1/users", admin, `{"username":"maria","password":"correct horse","role":"manager"}`); code != 201 {
		t.Fatalf("user: %d %v", code, m)
	}
	login := func(base, pw string) (int, map[string]any) {
		return request(t, "POST", base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"maria","password":%q}`, pw))
	}

	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 30 {
		wg.Go(func() {
			code, _ := login([]string{onA, onB}[i%2], fmt.Sprint("guess ", i))
			mu.Lock()
			statuses[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	// Five in all are hashed, and one more after each wait (1 s, 2 s, ...)
	// that ended while the burst lasted.
	most := 5
	for wait, total := time.Second, time.Second; total <= time.Since(start); wait, total = wait*2, total+wait*2 {
		most++
	}
	if statuses[401] < 5 || statuses[401] > most || statuses[401]+statuses[429] != 30 {
		t.Fatalf("a burst over two instances: %v; want 5 to %d hashed (and 401), the rest 429", statuses, most)
	}
	// Wait out and fail again until the wait is long enough to tell a
	// manager's clearing from its end (1 s, 2 s, then 4 s).
	guess := func(base, pw string) (int, int) {
		resp, err := http.Post(base+"/v1/auth/login", "application/json", strings.NewReader(fmt.Sprintf(`{"username":"maria","password":%q}`, pw)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return resp.StatusCode, retry
	}
	for deadline := time.Now().Add(time.Minute); ; {
		code, retry := guess([]string{onA, onB}[time.Now().Nanosecond()%2], "wrong again")
		if code == 429 && retry >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wait never grew to 4 s: last %d, Retry-After %d", code, retry)
		}
		if code == 429 {
			time.Sleep(time.Duration(retry) * time.Second)
		}
	}
	if code, _ := guess(onB, "correct horse"); code != 429 {
		t.Fatalf("the right password on B while held back: %d; want 429", code)
	}
	code, m := request(t, "GET", onA+"/v1/lockouts?account=maria", admin, "")
	if code != 200 || len(m["items"].([]any)) == 0 {
		t.Fatalf("lockouts on A: %d %v", code, m)
	}
	if code, m := request(t, "DELETE", onA+"/v1/lockouts?account=maria", admin, ""); code != 200 {
		t.Fatalf("clear on A: %d %v", code, m)
	}
	code, tok := login(onB, "correct horse")
	if code != 200 {
		t.Fatalf("the right password on B once A cleared it: %d %v", code, tok)
	}
	access := tok["accessToken"].(string)

	// A key revoked on A: B refuses what the old key signed, at once.
	if code, m := request(t, "POST", onA+"/v1/admin/keys/rotate", admin, `{"revoke":true}`); code != 200 {
		t.Fatalf("revoke on A: %d %v", code, m)
	}
	if code, m := request(t, "GET", onB+"/v1/auth/me", access, ""); code != 401 || m["code"] != "token_invalid" {
		t.Fatalf("a token of the revoked key on B: %d %v; want 401 token_invalid", code, m)
	}
	code, next := request(t, "POST", onB+"/v1/auth/refresh", "", fmt.Sprintf(`{"refreshToken":%q,"deviceId":""}`, tok["refreshToken"]))
	if code != 200 {
		t.Fatalf("refresh on B after the revocation: %d %v", code, next)
	}
	if code, m := request(t, "GET", onA+"/v1/auth/me", next["accessToken"].(string), ""); code != 200 {
		t.Fatalf("B's new token on A: %d %v", code, m)
	}

	// A password reset on A: B refuses the session's tokens at once.
	if code, m := request(t, "POST", onA+"/v1/users/"+next["user"].(map[string]any)["id"].(string)+"/password", admin, `{"password":"a new one for maria"}`); code != 204 {
		t.Fatalf("reset on A: %d %v", code, m)
	}
	if code, m := request(t, "GET", onB+"/v1/auth/me", next["accessToken"].(string), ""); code != 401 || m["code"] != "session_revoked" {
		t.Fatalf("a token from before the reset on B: %d %v; want 401 session_revoked", code, m)
	}
}

// TestSharedHandsetTwoInstances: workers log in on one shared handset at
// the same instant through two servers on one database: exactly one
// session remains, and every other app hears it was handed over.
func TestSharedHandsetTwoInstances(t *testing.T) {
	url, admin := pgSite(t)
	if r := runCLI(t, "", nil, "device", "add", "--store", url, "--imei", "490154203237518", "--mode", "shared"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	a := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
	b := startServer(t, t.TempDir(), "--store", url, "--login-max-wait", "1h")
	onA, onB := "http://"+a.addr, "http://"+b.addr
	const workers = 8
	for i := range workers {
		if code, m := request(t, "POST", onA+"/v1/users", admin, fmt.Sprintf(`{"username":"racer%d","password":"correct horse"}`, i)); code != 201 {
			t.Fatalf("user: %d %v", code, m)
		}
	}
	payload := `{"imei":"490154203237518","hasIccCard":true,"iccIds":["89445001021983048261"],"osVersion":{"api":34,"name":"14"},` +
		`"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}`
	tokens := make([]string, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-start
			base := []string{onA, onB}[i%2]
			code, m := request(t, "POST", base+"/v1/auth/login", "", fmt.Sprintf(`{"username":"racer%d","password":"correct horse","device":%s}`, i, payload))
			if code != 200 {
				t.Errorf("login %d: %d %v", i, code, m)
				return
			}
			tokens[i] = m["accessToken"].(string)
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	live := 0
	for i, tok := range tokens {
		code, m := request(t, "GET", []string{onB, onA}[i%2]+"/v1/auth/me", tok, "")
		switch {
		case code == 200:
			live++
		case code != 401 || m["code"] != "session_ended_by_handover":
			t.Fatalf("racer%d's token: %d %v; want 200 or session_ended_by_handover", i, code, m)
		}
	}
	code, sessions := request(t, "GET", onA+"/v1/sessions", admin, "")
	if code != 200 || live != 1 || len(sessions["items"].([]any)) != 1 {
		t.Fatalf("after %d logins at once through two servers: %d tokens work, sessions %d %v; want one", workers, live, code, sessions)
	}
}
