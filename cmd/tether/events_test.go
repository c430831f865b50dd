package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether/events"
	"tether/storage"
	"tether/storage/bolt"
)

// slowReceiver is a webhook receiver that takes its time, and counts
// every delivery by the event's id.
type slowReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  map[string]int
	down atomic.Bool
}

func newSlowReceiver(t *testing.T, delay time.Duration) *slowReceiver {
	r := &slowReceiver{got: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		time.Sleep(delay)
		if r.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.mu.Lock()
		r.got[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		var ce events.CloudEvent
		if json.Unmarshal(body, &ce) != nil || ce.ID != req.Header.Get("webhook-id") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func webhookSecret(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "webhook.secret")
	key := events.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("crash test webhook secret, 32 b."))
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEventsSurviveSIGKILL: a server pushing its audit trail to a slow
// webhook is killed with SIGKILL under load, twice; restarted, it delivers
// the rest. Then every event the store holds from the moment the sink was
// configured was delivered, and nothing else was: after deduplication by
// id, exactly the committed events.
func TestEventsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills server processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	recv := newSlowReceiver(t, 3*time.Millisecond)
	flags := []string{"--webhook-url", recv.URL + "/hook", "--webhook-secret-file", webhookSecret(t)}
	started := time.Now()

	var registered atomic.Int64
	var n atomic.Int64
	for round := range 2 {
		srv := startServer(t, dir, flags...)
		c := crashClient{http: &http.Client{Timeout: 5 * time.Second}, base: "http://" + srv.addr}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					imei := luhnIMEI(int(n.Add(1)) + 1000*round)
					if code, _, ok := c.post("/v1/devices", key, `{"imei":"`+imei+`","group":"north"}`); ok && code == 201 {
						registered.Add(1)
					}
				}
			})
		}
		time.Sleep(700 * time.Millisecond)
		if err := srv.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-srv.done
		close(stop)
		wg.Wait()
	}
	if registered.Load() == 0 {
		t.Fatal("no handset registered under load")
	}
	recv.mu.Lock()
	before := len(recv.got)
	recv.mu.Unlock()

	// Restarted, the server drains what the kills left.
	srv := startServer(t, dir, flags...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, m := request(t, "GET", "http://"+srv.addr+"/v1/events/sinks", key, "")
		if code != 200 {
			t.Fatalf("sinks: %d %v", code, m)
		}
		st := m["sinks"].([]any)[0].(map[string]any)
		if st["pending"] == float64(0) {
			if st["deadLetters"] != float64(0) {
				t.Fatalf("dead letters after the crash: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backlog did not drain: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop(t)

	store, err := bolt.Open(filepath.Join(dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	committed := map[string]bool{}
	after := ""
	for {
		page, err := store.ListEvents(context.Background(), storage.EventFilter{From: started, After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			committed[e.ID] = true
		}
		if after = page.Next; after == "" {
			break
		}
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	dupes := 0
	for id, times := range recv.got {
		if !committed[id] {
			t.Errorf("event %s was delivered but never committed", id)
		}
		dupes += times - 1
	}
	missing := 0
	for id := range committed {
		if recv.got[id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d committed events never delivered", missing)
	}
	if int64(len(committed)) < registered.Load() {
		t.Errorf("%d events for %d acknowledged registrations", len(committed), registered.Load())
	}
	t.Logf("%d events committed (%d acknowledged registrations), %d delivered before the restart, %d delivered again (receivers deduplicate by id)",
		len(committed), registered.Load(), before, dupes)
}

// TestEventsTestCommand: tether events test sends one event to the named
// sink and prints what the receiver answered; unknown sinks and a webhook
// without its secret are refused.
func TestEventsTestCommand(t *testing.T) {
	recv := newSlowReceiver(t, 0)
	secret := webhookSecret(t)
	r := runCLI(t, "", nil, "events", "test", "--sink", "webhook", "--webhook-url", recv.URL, "--webhook-secret-file", secret)
	if r.code != 0 || !strings.Contains(r.stdout, "webhook answered: 200 OK") {
		t.Fatalf("events test: %d %q %q", r.code, r.stdout, r.stderr)
	}
	recv.mu.Lock()
	n := len(recv.got)
	recv.mu.Unlock()
	if n != 1 {
		t.Errorf("the receiver got %d events", n)
	}
	recv.down.Store(true)
	r = runCLI(t, "", nil, "events", "test", "--sink", "webhook", "--webhook-url", recv.URL, "--webhook-secret-file", secret)
	if r.code != 1 || !strings.Contains(r.stdout, "503") {
		t.Errorf("a receiver answering 503: %d %q %q", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sink", "other", "--webhook-url", recv.URL, "--webhook-secret-file", secret}, `no sink named "other"`},
		{[]string{"--sink", "webhook", "--webhook-url", recv.URL}, "--webhook-secret-file"},
		{[]string{"--sink", "webhook", "--webhook-url", "http://example.com/", "--webhook-secret-file", secret}, "plain http"},
	} {
		r := runCLI(t, "", nil, append([]string{"events", "test"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: %d %q, want an error naming %s", c.args, r.code, r.stderr, c.want)
		}
	}
	if r := runCLI(t, "", nil, "events", "test"); r.code != 2 {
		t.Errorf("no --sink: exit %d", r.code)
	}
}
