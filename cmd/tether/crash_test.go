package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/device"
	"tether/storage/bolt"
)

// TestCrashSafety runs the real server under concurrent writes (handset
// registrations and refresh-token rotations), kills it with SIGKILL at
// random moments, restarts it on the same store, and checks that every
// write a client saw acknowledged is there, that every session's last
// acknowledged refresh token still works (no half-rotated session), and
// that the store passes bbolt's consistency check.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills server processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	r = runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "admin")
	admin := strings.TrimSpace(r.stdout)
	// Long grace: a refresh that committed but whose answer was lost to the
	// kill is retried after the restart and must get the same answer.
	extra := []string{"--refresh-reuse-grace", "1h"}

	srv := startServer(t, dir, extra...)
	base := "http://" + srv.addr
	// Managers log in without a handset, so sessions need no device setup.
	const sessions = 4
	refresh := make([]string, sessions)
	for i := range sessions {
		name := fmt.Sprintf("boss%d", i)
		if code, m := request(t, "POST", base+"/v1/users", admin, fmt.Sprintf(`{"username":%q,"password":"crash test pw","role":"manager"}`, name)); code != 201 {
			t.Fatalf("user: %d %v", code, m)
		}
		code, m := request(t, "POST", base+"/v1/auth/login", "", fmt.Sprintf(`{"username":%q,"password":"crash test pw","persistent":true}`, name))
		if code != 200 {
			t.Fatalf("login: %d %v", code, m)
		}
		refresh[i] = m["refreshToken"].(string)
	}

	var mu sync.Mutex
	var registered []string // IMEIs whose registration was acknowledged
	next := 0
	client := &http.Client{Timeout: 5 * time.Second}
	for round := range 4 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() { // registrations
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					next++
					imeiStr := luhnIMEI(round*100_000 + w*10_000 + next)
					mu.Unlock()
					req, _ := http.NewRequest("POST", base+"/v1/devices", strings.NewReader(`{"imei":"`+imeiStr+`"}`))
					req.Header.Set("Authorization", "Bearer "+key)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						continue // the server died under this request: not acknowledged
					}
					resp.Body.Close()
					if resp.StatusCode == 201 {
						mu.Lock()
						registered = append(registered, imeiStr)
						mu.Unlock()
					}
				}
			}()
		}
		for i := range sessions {
			wg.Add(1)
			go func() { // rotations
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					rt := refresh[i]
					mu.Unlock()
					req, _ := http.NewRequest("POST", base+"/v1/auth/refresh", strings.NewReader(`{"refreshToken":"`+rt+`","deviceId":""}`))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					var body struct {
						RefreshToken string `json:"refreshToken"`
					}
					decodeErr := jsonDecode(resp, &body)
					if resp.StatusCode == 200 && decodeErr == nil {
						mu.Lock()
						refresh[i] = body.RefreshToken
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		if err := srv.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-srv.done
		close(stop)
		wg.Wait()

		srv = startServer(t, dir, extra...)
		base = "http://" + srv.addr
		mu.Lock()
		for _, imeiStr := range registered {
			if code, _ := request(t, "GET", base+"/v1/devices/"+imeiStr, key, ""); code != 200 {
				t.Fatalf("round %d: acknowledged handset %s is gone after SIGKILL (%d)", round, imeiStr, code)
			}
		}
		for i, rt := range refresh {
			code, m := request(t, "POST", base+"/v1/auth/refresh", "", `{"refreshToken":"`+rt+`","deviceId":""}`)
			if code != 200 {
				t.Fatalf("round %d: session %d's last acknowledged refresh token is refused after SIGKILL: %d %v", round, i, code, m)
			}
			refresh[i] = m["refreshToken"].(string)
		}
		t.Logf("round %d: %d acknowledged registrations survived", round, len(registered))
		mu.Unlock()
	}
	srv.stop(t)
	if _, err := bolt.Verify(filepath.Join(dir, dbFile)); err != nil {
		t.Fatalf("the store after the kills: %v", err)
	}
}

// luhnIMEI makes a valid IMEI from n.
func luhnIMEI(n int) string {
	body := fmt.Sprintf("35%012d", n)
	return body + string(device.LuhnDigit(body))
}
