package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
)

// hookReceiver answers every webhook delivery with its status and counts
// the events it took, by id.
type hookReceiver struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	took   map[string]int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{took: map[string]int{}}
	r.status.Store(http.StatusUnprocessableEntity)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		code := int(r.status.Load())
		if code == 200 {
			var ce events.CloudEvent
			if json.Unmarshal(body, &ce) == nil {
				r.mu.Lock()
				r.took[ce.ID]++
				r.mu.Unlock()
			}
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.took)
}

func hookConfig(t *testing.T, url string) events.Config {
	path := filepath.Join(t.TempDir(), "secret")
	key := events.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("a webhook secret of 32 bytes....."))
	if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return events.Config{Sinks: []events.Sink{{
		Name: "hooks", Type: events.TypeWebhook, URL: url, SecretFile: path,
		Filter: events.Filter{Actions: []string{"device.*"}},
	}}}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventSinksAPI: managers see the sinks and their dead letters, and
// replay them, audited; bad requests are refused whole; replays fired at
// once put each dead letter back once.
func TestEventSinksAPI(t *testing.T) {
	r := newHookReceiver(t)
	e := newEnv(t, hookConfig(t, r.URL))
	const n = 6
	for i := range n {
		imei := imei(i + 1)
		if res := e.do("POST", "/v1/devices", e.manager, validDevice(imei)); res.status != 201 {
			t.Fatalf("register: %d %s", res.status, res.body)
		}
	}
	// The receiver refuses each for good (422): they become dead letters.
	sinks := func() map[string]any {
		res := e.do("GET", "/v1/events/sinks", e.manager, nil)
		if res.status != 200 {
			t.Fatalf("sinks: %d %s", res.status, res.body)
		}
		list := res.json(t)["sinks"].([]any)
		if len(list) != 1 {
			t.Fatalf("sinks: %s", res.body)
		}
		return list[0].(map[string]any)
	}
	eventually(t, "six dead letters", func() bool { return sinks()["deadLetters"] == float64(n) })
	st := sinks()
	if st["name"] != "hooks" || st["type"] != "webhook" || st["pending"] != float64(0) || !strings.Contains(st["lastError"].(string), "422") {
		t.Errorf("sink %v", st)
	}
	res := e.do("GET", "/v1/events/sinks/hooks/dead-letters?limit=4", e.manager, nil)
	if res.status != 200 {
		t.Fatalf("dead letters: %d %s", res.status, res.body)
	}
	page := res.json(t)
	items := page["items"].([]any)
	if len(items) != 4 || page["nextCursor"] == "" {
		t.Fatalf("first page: %s", res.body)
	}
	first := items[0].(map[string]any)
	if first["event"].(map[string]any)["action"] != "device.register" || !strings.Contains(first["reason"].(string), "422") {
		t.Errorf("dead letter %v", first)
	}
	seq := uint64(first["seq"].(float64))

	// Refused whole: nothing replayed.
	for _, c := range []struct {
		method, path, body, ctype string
		status                    int
		code                      string
	}{
		{"GET", "/v1/events/sinks/nope/dead-letters", "", "", 404, "not_found"},
		{"POST", "/v1/events/sinks/nope/replay", "", "", 404, "not_found"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":[]}`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":"all"}`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":[-1]}`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":[1],"also":2}`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":[1]`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `{"seqs":[` + strings.Repeat("1,", 1000) + `1]}`, "application/json", 400, "invalid_request"},
		{"POST", "/v1/events/sinks/hooks/replay", `seqs=1`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		{"GET", "/v1/events/sinks/hooks/dead-letters?limit=0", "", "", 400, "validation_failed"},
	} {
		var body any
		var headers []string
		if c.body != "" {
			body = c.body
			headers = []string{"Content-Type", c.ctype}
		}
		wantProblem(t, e.do(c.method, c.path, e.manager, body, headers...), c.status, c.code)
	}
	if got := sinks()["deadLetters"]; got != float64(n) {
		t.Fatalf("after refused replays: %v dead letters", got)
	}

	// The receiver mends; one named dead letter goes again, then the
	// rest, by replays fired at once: each goes back once.
	r.status.Store(200)
	res = e.do("POST", "/v1/events/sinks/hooks/replay", e.manager, map[string]any{"seqs": []uint64{seq}})
	if res.status != 200 || res.json(t)["replayed"] != float64(1) {
		t.Fatalf("replay one: %d %s", res.status, res.body)
	}
	eventually(t, "the replayed event", func() bool { return r.count() == 1 })
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			res := e.do("POST", "/v1/events/sinks/hooks/replay", e.manager, nil)
			if res.status != 200 {
				t.Errorf("replay all: %d %s", res.status, res.body)
				return
			}
			total.Add(int64(res.json(t)["replayed"].(float64)))
		})
	}
	wg.Wait()
	if total.Load() != n-1 {
		t.Errorf("concurrent replays put back %d, want %d", total.Load(), n-1)
	}
	eventually(t, "every event delivered", func() bool { return r.count() == n })
	// The replays are in the audit trail, with who did them.
	res = e.do("GET", "/v1/audit?action=events.replay", e.manager, nil)
	replays := res.json(t)["items"].([]any)
	if len(replays) < 2 {
		t.Fatalf("replays audited: %s", res.body)
	}
	if a := replays[0].(map[string]any); !strings.HasPrefix(fmt.Sprint(a["actor"]), "apikey:") {
		t.Errorf("replay event %v", a)
	}
	metrics := string(e.do("GET", "/metrics", "", nil).body)
	for _, want := range []string{`tether_events_delivered_total{sink="hooks"}`, `tether_events_dead_lettered_total{sink="hooks"} 6`, `tether_events_backlog{sink="hooks"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
