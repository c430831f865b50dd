package events_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether/events"
	"tether/storage"
	"tether/storage/bolt"
)

// secret is a webhook secret as an operator would write it.
var secret = events.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func openStore(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "tether.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func secretFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// delivery is one request a receiver got.
type delivery struct {
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// receiver is a webhook receiver: it answers with status (200 unless set)
// and keeps what it took.
type receiver struct {
	*httptest.Server
	status atomic.Int32
	// refuse answers 400 to the event with this action.
	refuse atomic.Value
	mu     sync.Mutex
	got    []delivery
	tries  int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.status.Store(200)
	r.refuse.Store("")
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.tries++
		var ce events.CloudEvent
		if err := json.Unmarshal(body, &ce); err == nil && ce.Data.Action == r.refuse.Load().(string) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		code := int(r.status.Load())
		if code == 200 {
			h := map[string]string{}
			for _, k := range []string{"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"} {
				h[k] = req.Header.Get(k)
			}
			r.got = append(r.got, delivery{Headers: h, Body: string(body)})
		}
		w.WriteHeader(code)
		fmt.Fprint(w, "thanks")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) events(t *testing.T) []events.CloudEvent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.CloudEvent
	for _, d := range r.got {
		var ce events.CloudEvent
		if err := json.Unmarshal([]byte(d.Body), &ce); err != nil {
			t.Fatalf("a body that is no JSON: %q", d.Body)
		}
		out = append(out, ce)
	}
	return out
}

// fast are options for tests: short polls, leases and backoff.
func fast(o events.Options) events.Options {
	o.Poll, o.Lease = 5*time.Millisecond, time.Second
	o.BackoffBase, o.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	return o
}

// start runs d until the test ends.
func start(t *testing.T, d *events.Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return sync.OnceFunc(stop)
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendEvents(t *testing.T, s storage.Audit, evs ...storage.Event) {
	t.Helper()
	if err := s.AppendEvents(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
}

func newEvent(action, session string) storage.Event {
	return storage.Event{
		ID: storage.NewID(storage.PrefixEvent), Time: time.Now().UTC(), Action: action,
		Outcome: "success", SessionID: session, Actor: "user:usr_1",
	}
}

func webhookConfig(t *testing.T, r *receiver) events.Config {
	return events.Config{Source: "https://tether.example", Sinks: []events.Sink{{
		Name: "hooks", Type: events.TypeWebhook, URL: r.URL + "/in?token=receiver-secret", SecretFile: secretFile(t),
	}}}
}

// TestWebhookSignedAsStandardWebhooks: every delivery is a CloudEvent that
// the Standard Webhooks library accepts with the sink's secret, and one
// whose body, timestamp or secret is changed it refuses.
func TestWebhookSignedAsStandardWebhooks(t *testing.T) {
	node, dir := nodePackage(t, "standardwebhooks", "standardwebhooks")
	s := openStore(t)
	r := newReceiver(t)
	d, err := events.New(context.Background(), s, webhookConfig(t, r), fast(events.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	sent := []storage.Event{newEvent("login", "ses_1"), newEvent("refresh", "ses_1"), newEvent("device.suspend", "")}
	sent[2].DeviceID = "dev_1"
	sent[2].Detail = map[string]string{"note": "naïve ✓ \"quoted\"\n"}
	appendEvents(t, s, sent...)
	waitFor(t, "three deliveries acknowledged", func() bool {
		st, _ := d.Status(context.Background())
		return len(r.events(t)) == 3 && st[0].Pending == 0
	})

	got := r.events(t)
	for i, ce := range got {
		e := sent[i]
		if ce.ID != e.ID || ce.SpecVersion != "1.0" || ce.Source != "https://tether.example" ||
			ce.Type != "tether.audit.v1."+e.Action || ce.DataContentType != "application/json" || ce.Data.ID != e.ID {
			t.Errorf("delivery %d: %+v", i, ce)
		}
		if ce.Time != e.Time.Format(time.RFC3339Nano) {
			t.Errorf("time %s, want %s", ce.Time, e.Time.Format(time.RFC3339Nano))
		}
		if i > 0 && ce.Sequence <= got[i-1].Sequence {
			t.Errorf("sequence %s after %s", ce.Sequence, got[i-1].Sequence)
		}
	}
	if got[0].Subject != "ses_1" || got[2].Subject != "dev_1" || got[2].Data.Detail["note"] != sent[2].Detail["note"] {
		t.Errorf("subjects or detail: %q %q %q", got[0].Subject, got[2].Subject, got[2].Data.Detail["note"])
	}
	r.mu.Lock()
	deliveries := slices.Clone(r.got)
	r.mu.Unlock()
	if h := deliveries[0].Headers; h["webhook-id"] != sent[0].ID || h["content-type"] != "application/cloudevents+json" {
		t.Errorf("headers %v", h)
	}
	// Three changed copies: the body, the timestamp, and a signature by
	// another secret.
	body := deliveries[0]
	body.Body = strings.Replace(body.Body, `"login"`, `"logout"`, 1)
	stamp := deliveries[1]
	stamp.Headers = map[string]string{}
	for k, v := range deliveries[1].Headers {
		stamp.Headers[k] = v
	}
	stamp.Headers["webhook-timestamp"] = fmt.Sprint(time.Now().Unix() + 1)
	other := deliveries[2]
	other.Headers = map[string]string{}
	for k, v := range deliveries[2].Headers {
		other.Headers[k] = v
	}
	other.Headers["webhook-signature"] = events.Sign([]byte("another secret of thirty-two byte"), other.Headers["webhook-id"], other.Headers["webhook-timestamp"], []byte(other.Body))
	results := verifyWebhooks(t, node, dir, append(deliveries, body, stamp, other))
	for i, res := range results {
		if want := i < 3; res.OK != want {
			t.Errorf("delivery %d verified %v, want %v (%s)", i, res.OK, want, res.Error)
		}
	}
	if id, _ := results[0].Payload["id"].(string); id != sent[0].ID {
		t.Errorf("the verified payload's id %q", id)
	}
	st, err := d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Pending != 0 || st[0].Delivered != 3 || !st[0].Delivering || strings.Contains(st[0].Target, "receiver-secret") {
		t.Errorf("status %+v", st)
	}
}

type verified struct {
	OK      bool           `json:"ok"`
	Payload map[string]any `json:"payload"`
	Error   string         `json:"error"`
}

func verifyWebhooks(t *testing.T, node, dir string, ds []delivery) []verified {
	t.Helper()
	file := filepath.Join(t.TempDir(), "deliveries.json")
	data, _ := json.Marshal(ds)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, filepath.Join(dir, "verify.mjs"), secret, file).Output()
	if err != nil {
		t.Fatalf("verify.mjs: %v", err)
	}
	var res []verified
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(ds) {
		t.Fatalf("verify.mjs answered %s", out)
	}
	return res
}

// TestReceiverDownThenUp: a receiver that fails every request while
// events pile up gets them all once it is back, in the order of each
// session, each id once.
func TestReceiverDownThenUp(t *testing.T) {
	s := openStore(t)
	r := newReceiver(t)
	r.status.Store(503)
	d, err := events.New(context.Background(), s, webhookConfig(t, r), fast(events.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	const sessions, each = 4, 30
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			for j := range each {
				appendEvents(t, s, newEvent(fmt.Sprintf("step.%02d", j), fmt.Sprintf("ses_%d", i)))
			}
		})
	}
	wg.Wait()
	waitFor(t, "failed attempts", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.tries >= 5 })
	if st, _ := d.Status(context.Background()); st[0].Pending != sessions*each || st[0].LastError == "" || st[0].Failed == 0 {
		t.Fatalf("while down: %+v", st[0])
	}
	r.status.Store(200)
	waitFor(t, "the backlog to drain", func() bool {
		st, _ := d.Status(context.Background())
		return len(r.events(t)) == sessions*each && st[0].Pending == 0
	})
	last := map[string]string{}
	seen := map[string]bool{}
	for _, ce := range r.events(t) {
		if seen[ce.ID] {
			t.Errorf("%s delivered twice", ce.ID)
		}
		seen[ce.ID] = true
		if prev := last[ce.Subject]; ce.Data.Action < prev {
			t.Errorf("session %s: %s after %s", ce.Subject, ce.Data.Action, prev)
		}
		last[ce.Subject] = ce.Data.Action
	}
	if st, _ := d.Status(context.Background()); st[0].Pending != 0 || st[0].Dead != 0 {
		t.Errorf("after: %+v", st[0])
	}
}

// TestRefusedEventDeadLetter: an event the receiver refuses for good
// becomes a dead letter and the rest go on; replayed once the receiver
// takes it, it is delivered.
func TestRefusedEventDeadLetter(t *testing.T) {
	s := openStore(t)
	r := newReceiver(t)
	r.refuse.Store("poison")
	obs := &counter{}
	d, err := events.New(context.Background(), s, webhookConfig(t, r), fast(events.Options{Observer: obs}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	poison := newEvent("poison", "ses_1")
	appendEvents(t, s, newEvent("login", "ses_1"), poison, newEvent("logout", "ses_1"))
	waitFor(t, "two deliveries acknowledged", func() bool { return len(r.events(t)) == 2 && obs.delivered.Load() == 2 })
	page, err := s.ListDeadLetters(context.Background(), "hooks", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Event.ID != poison.ID || !strings.Contains(page.Items[0].Reason, "400") {
		t.Fatalf("dead letters %+v", page.Items)
	}
	if obs.dead.Load() != 1 || obs.delivered.Load() != 2 {
		t.Errorf("observed %d dead, %d delivered", obs.dead.Load(), obs.delivered.Load())
	}
	r.refuse.Store("")
	if n, err := s.ReplayDeadLetters(context.Background(), "hooks", nil, time.Now()); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	waitFor(t, "the replayed event", func() bool { return len(r.events(t)) == 3 })
	if got := r.events(t)[2]; got.ID != poison.ID {
		t.Errorf("third delivery %s", got.Data.Action)
	}
}

type counter struct{ delivered, failed, dead atomic.Int64 }

func (c *counter) Delivered(_ string, n int)    { c.delivered.Add(int64(n)) }
func (c *counter) Failed(string)                { c.failed.Add(1) }
func (c *counter) DeadLettered(_ string, n int) { c.dead.Add(int64(n)) }

// TestMaxAgeAndBacklogLimit: events older than the sink's max age become
// dead letters when delivery fails; a backlog past its limit loses its
// oldest to the dead letters, and the status says so.
func TestMaxAgeAndBacklogLimit(t *testing.T) {
	s := openStore(t)
	r := newReceiver(t)
	r.status.Store(500)
	cfg := webhookConfig(t, r)
	cfg.Sinks[0].MaxAge = events.Duration(time.Hour)
	cfg.Sinks[0].BacklogLimit = 5
	d, err := events.New(context.Background(), s, cfg, fast(events.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	old := newEvent("login", "ses_old")
	old.Time = time.Now().Add(-2 * time.Hour).UTC()
	var fresh []storage.Event
	for i := range 8 {
		fresh = append(fresh, newEvent(fmt.Sprintf("step.%d", i), "ses_new"))
	}
	appendEvents(t, s, append([]storage.Event{old}, fresh...)...)
	start(t, d)
	waitFor(t, "the old event and the backlog past 5 to become dead letters", func() bool {
		st, _ := d.Status(context.Background())
		return st[0].Dead == 4 && st[0].Pending == 5
	})
	st, _ := d.Status(context.Background())
	if !st[0].OverLimit {
		t.Errorf("status %+v", st[0])
	}
	page, _ := s.ListDeadLetters(context.Background(), "hooks", "", 10)
	var dead []string
	for _, l := range page.Items {
		dead = append(dead, l.Event.Action)
	}
	if !slices.Contains(dead, "login") || slices.Contains(dead, "step.7") {
		t.Errorf("dead letters %v: want the old one and the oldest of the backlog", dead)
	}
	if len(r.events(t)) != 0 {
		t.Error("delivered while the receiver fails")
	}
}

// TestConfigRefused: configurations an operator could get wrong are
// refused with a message naming the setting.
func TestConfigRefused(t *testing.T) {
	write := func(body string) string {
		path := filepath.Join(t.TempDir(), "events.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct{ body, want string }{
		{`{"sinks":[{"name":"a","type":"webhook","url":"https://x.example","secretFile":"/s","maxAge":"1d"}]}`, `duration "1d"`},
		{`{"sinks":[{"name":"a","type":"webhook","url":"http://x.example","secretFile":"/s"}]}`, "plain http"},
		{`{"sinks":[{"name":"a","type":"webhook","url":"https://u:p@x.example","secretFile":"/s"}]}`, "credentials"},
		{`{"sinks":[{"name":"a","type":"webhook","url":"https://x.example"}]}`, "secretFile"},
		{`{"sinks":[{"name":"A","type":"file","path":"/tmp/x"}]}`, "name"},
		{`{"sinks":[{"name":"a","type":"file","path":"/tmp/x"},{"name":"a","type":"file","path":"/tmp/y"}]}`, "twice"},
		{`{"sinks":[{"name":"a","type":"syslog","address":"h:514","facility":"kern"}]}`, "facility"},
		{`{"sinks":[{"name":"a","type":"smtp"}]}`, "type"},
		{`{"sinks":[{"name":"a","type":"file","path":"/tmp/x","filter":{"outcomes":["maybe"]}}]}`, "outcome"},
		{`{"sinks":[{"name":"a","type":"file","path":"/tmp/x","pth":"/tmp/y"}]}`, "unknown field"},
		{`{"sinks":[]} {}`, "more than one"},
		{`{"sinks":[{"name":"a","type":"file","path":"/tmp/x","backlogLimit":-1}]}`, "backlogLimit"},
	} {
		_, err := events.LoadConfig(write(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.body, err, c.want)
		}
	}
	if _, err := events.LoadConfig(write(`{"sinks":[{"name":"a","type":"file","path":"/tmp/x","maxAge":"36h"}]}`)); err != nil {
		t.Errorf("a good file: %v", err)
	}
	for _, bad := range []string{"whsec_", "whsec_!!!", "secret", events.SecretPrefix + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := events.ParseSecret(bad); err == nil {
			t.Errorf("secret %q accepted", bad)
		}
	}
}
