package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/device"
	"tether/storage"
	"tether/storage/bolt"
)

// crashClient sends the crash test's requests. A request whose answer did
// not arrive (the server died under it) is not acknowledged: ok is false.
type crashClient struct {
	http *http.Client
	base string
}

func (c crashClient) post(path, key, body string) (status int, answer map[string]any, ok bool) {
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, false
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || json.Unmarshal(data, &answer) != nil {
		return 0, nil, false
	}
	return resp.StatusCode, answer, true
}

// acked is what clients saw acknowledged, shared by the writers.
type acked struct {
	mu         sync.Mutex
	registered []string  // IMEIs registered by a manager
	enrolled   []string  // IMEIs enrolled with a code
	logins     []string  // access tokens of logins
	users      []string  // usernames not yet logged in
	refresh    [4]string // the latest refresh token of each rotating session
	next       int
}

// imei returns a fresh, valid IMEI.
func (a *acked) imei() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	return luhnIMEI(a.next)
}

// TestCrashSafety runs the real server under concurrent writes (logins,
// refresh-token rotations, handset registrations and self-enrollments
// with a code), kills it with SIGKILL at random moments, restarts it on
// the same store, and checks that every write a client saw acknowledged
// is there, that every session's last acknowledged refresh token still
// works (no half-rotated session), that the enrollment code counted
// exactly the handsets it enrolled, and that the store passes bbolt's
// consistency check.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills server processes")
	}
	// Logins at the production hash cost, in a race-detector build, would
	// be too few between kills to show anything.
	t.Setenv("TETHER_TEST_CHEAP_HASH", "1")
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	// Long grace: a refresh that committed but whose answer was lost to the
	// kill is retried after the restart and must get the same answer.
	extra := []string{"--refresh-reuse-grace", "1h", "--enrollment-mode", "code"}

	// Managers log in without a handset, so sessions need no device setup:
	// four to rotate, and a pool to log in once each under the kills.
	var a acked
	const pool = 600
	for i := range len(a.refresh) + pool {
		name := fmt.Sprintf("boss%d", i)
		if r := runCLI(t, "crash test pw\n", nil, "user", "add", "--data", dir, "--username", name, "--role", "manager", "--password-stdin"); r.code != 0 {
			t.Fatalf("user add: %s", r.stderr)
		}
		if i >= len(a.refresh) {
			a.users = append(a.users, name)
		}
	}
	srv := startServer(t, dir, extra...)
	c := crashClient{http: &http.Client{Timeout: 5 * time.Second}, base: "http://" + srv.addr}
	for i := range a.refresh {
		code, m, _ := c.post("/v1/auth/login", "", fmt.Sprintf(`{"username":"boss%d","password":"crash test pw","persistent":true}`, i))
		if code != 200 {
			t.Fatalf("login: %d %v", code, m)
		}
		a.refresh[i] = m["refreshToken"].(string)
	}
	code, m, _ := c.post("/v1/enrollment-codes", key, `{"maxUses":10000,"group":"self-enrolled","expiresIn":"2h"}`)
	if code != 201 {
		t.Fatalf("enrollment code: %d %v", code, m)
	}
	enrollCode, codeID := m["code"].(string), m["id"].(string)

	writers := map[string]func(c crashClient){
		"register": func(c crashClient) {
			imei := a.imei()
			if code, _, ok := c.post("/v1/devices", key, `{"imei":"`+imei+`"}`); ok && code == 201 {
				a.mu.Lock()
				a.registered = append(a.registered, imei)
				a.mu.Unlock()
			}
		},
		"enroll": func(c crashClient) {
			imei := a.imei()
			body := `{"code":"` + enrollCode + `","device":{"imei":"` + imei + `","hasIccCard":true,"iccIds":["89445001021983048261"],` +
				`"osVersion":{"api":34,"name":"14"},"deviceInfo":{"manufacturer":"samsung","model":"SM-G991B"},"appVersion":"3.2.1"}}`
			if code, _, ok := c.post("/v1/enroll", "", body); ok && code == 201 {
				a.mu.Lock()
				a.enrolled = append(a.enrolled, imei)
				a.mu.Unlock()
			}
		},
		"login": func(c crashClient) {
			a.mu.Lock()
			if len(a.users) == 0 {
				a.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				return
			}
			name := a.users[0]
			a.users = a.users[1:]
			a.mu.Unlock()
			if code, m, ok := c.post("/v1/auth/login", "", `{"username":"`+name+`","password":"crash test pw"}`); ok && code == 200 {
				a.mu.Lock()
				a.logins = append(a.logins, m["accessToken"].(string))
				a.mu.Unlock()
			}
		},
	}
	for i := range a.refresh {
		writers[fmt.Sprintf("refresh %d", i)] = func(c crashClient) {
			a.mu.Lock()
			rt := a.refresh[i]
			a.mu.Unlock()
			if code, m, ok := c.post("/v1/auth/refresh", "", `{"refreshToken":"`+rt+`","deviceId":""}`); ok && code == 200 {
				a.mu.Lock()
				a.refresh[i] = m["refreshToken"].(string)
				a.mu.Unlock()
			}
		}
	}

	const rounds = 4
	for round := range rounds {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// One client per writer: a session's rotations are sequential, as
		// on a handset (two clients rotating one session would be a reuse).
		for _, write := range writers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						write(c)
					}
				}
			})
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		if err := srv.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-srv.done
		close(stop)
		wg.Wait()

		srv = startServer(t, dir, extra...)
		c.base = "http://" + srv.addr
		a.mu.Lock()
		for _, imei := range append(append([]string{}, a.registered...), a.enrolled...) {
			if code, _ := request(t, "GET", c.base+"/v1/devices/"+imei, key, ""); code != 200 {
				t.Fatalf("round %d: acknowledged handset %s is gone after SIGKILL (%d)", round, imei, code)
			}
		}
		for _, access := range a.logins {
			if code, m := request(t, "GET", c.base+"/v1/auth/me", access, ""); code != 200 {
				t.Fatalf("round %d: the session of an acknowledged login is gone after SIGKILL: %d %v", round, code, m)
			}
		}
		for i, rt := range a.refresh {
			code, m := request(t, "POST", c.base+"/v1/auth/refresh", "", `{"refreshToken":"`+rt+`","deviceId":""}`)
			if code != 200 {
				t.Fatalf("round %d: session %d's last acknowledged refresh token is refused after SIGKILL: %d %v", round, i, code, m)
			}
			a.refresh[i] = m["refreshToken"].(string)
		}
		t.Logf("round %d: %d registrations, %d enrollments, %d logins acknowledged and all there",
			round, len(a.registered), len(a.enrolled), len(a.logins))
		if len(a.registered) == 0 || len(a.enrolled) == 0 || len(a.logins) == 0 {
			t.Fatalf("round %d: a kind of write was never acknowledged; the test proves nothing about it", round)
		}
		a.mu.Unlock()
	}
	srv.stop(t)
	path := filepath.Join(dir, dbFile)
	if _, err := bolt.Verify(path); err != nil {
		t.Fatalf("the store after the kills: %v", err)
	}
	checkCodeUses(t, path, codeID, len(a.enrolled))
}

// checkCodeUses checks that the enrollment code counted exactly the
// handsets it enrolled: the use and the handset were one transaction.
func checkCodeUses(t *testing.T, path, codeID string, acknowledged int) {
	t.Helper()
	store, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	codes, err := store.ListEnrollmentCodes(t.Context(), storage.CodeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	uses := -1
	for _, c := range codes {
		if c.ID == codeID {
			uses = c.Uses
		}
	}
	enrolled := 0
	f := storage.DeviceFilter{Group: "self-enrolled", Limit: 1000}
	for {
		page, err := store.ListDevices(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		enrolled += len(page.Items)
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	if uses != enrolled || enrolled < acknowledged {
		t.Fatalf("the code counts %d uses, %d handsets were enrolled with it, %d acknowledged", uses, enrolled, acknowledged)
	}
}

// luhnIMEI makes a valid IMEI from n.
func luhnIMEI(n int) string {
	body := fmt.Sprintf("35%012d", n)
	return body + string(device.LuhnDigit(body))
}
