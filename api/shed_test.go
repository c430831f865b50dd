package api_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"tether/auth"
)

// TestLoginShedsLoad: logins arriving faster than passwords can be checked
// are not queued for seconds: those that would wait past the limit are
// answered at once with 503 server_busy and a Retry-After, and the rest
// log in. Nothing else fails, and a shed login costs its account no
// throttle failure: once the flood is over, each account logs in.
func TestLoginShedsLoad(t *testing.T) {
	// Hashes of a few milliseconds, one at a time, and a limit of one:
	// the flood queues past it at once.
	e := newEnv(t, auth.Params{Memory: 4096, Time: 2, Threads: 1, KeyLen: 32, SaltLen: 16}, func(c *auth.Config) {
		c.HashConcurrency, c.HashQueue, c.HashMaxWait = 1, 64, time.Millisecond
	})
	const n = 48
	for i := range n {
		if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "m" + strconv.Itoa(i), "password": "correct horse", "role": "manager"}); r.status != 201 {
			t.Fatalf("user: %d %s", r.status, r.body)
		}
	}
	// One login first: the server measures what a check takes.
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "m0", "password": "correct horse"}); r.status != 200 {
		t.Fatalf("first login: %d %s", r.status, r.body)
	}
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "m" + strconv.Itoa(i), "password": "correct horse"})
			statuses[i], retry[i] = r.status, r.header.Get("Retry-After")
			if r.status == http.StatusServiceUnavailable {
				wantProblem(t, r, 503, "server_busy")
			}
		})
	}
	close(start)
	wg.Wait()
	ok, shed := 0, 0
	for i, s := range statuses {
		switch s {
		case 200:
			ok++
		case 503:
			shed++
			if secs, err := strconv.Atoi(retry[i]); err != nil || secs < 1 {
				t.Errorf("a shed login's Retry-After %q", retry[i])
			}
		default:
			t.Errorf("login %d: %d", i, s)
		}
	}
	if ok == 0 || shed == 0 {
		t.Fatalf("%d logged in, %d shed: want both", ok, shed)
	}
	t.Logf("%d logged in, %d shed", ok, shed)
	// Shed logins were no failed attempts: each account logs in now.
	for i := range n {
		if statuses[i] != 503 {
			continue
		}
		for {
			r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "m" + strconv.Itoa(i), "password": "correct horse"})
			if r.status == 200 {
				break
			}
			if r.status != 503 {
				t.Fatalf("m%d after the flood: %d %s", i, r.status, r.body)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
