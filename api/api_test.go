package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether/api"
	"tether/auth"
	"tether/device"
	"tether/events"
	"tether/oauth"
	"tether/storage"
	"tether/storage/bolt"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
)

const bodyLimit = 64 << 10

// env is a whole server on a real bbolt file, with one API key per role.
type env struct {
	t     testing.TB
	app   *fiber.App
	store *bolt.Store
	// db is the store the server runs on: store, or a PostgreSQL one
	// (onPostgres), for which store is nil.
	db         storage.Store
	admin      string
	manager    string
	introspect string
	logs       *bytes.Buffer
	// root is the test that made the env, which outlives its subtests.
	root testing.TB
	// listen starts the app on a real loopback port, once, for sendRaw.
	listen *sync.Once
	addr   *string
	// auth is the server's auth service, for what no route starts (a
	// directory sync).
	auth *auth.Service
	// ln is the listener opened before the app, when its URL had to be
	// known first (the OAuth issuer); oauth the provider then.
	ln    net.Listener
	oauth *oauth.Provider
}

// onPostgres makes newEnv run the server on an empty schema of the
// PostgreSQL test server (pgtest) instead of a bbolt file.
type onPostgres struct{}

// oauthOn makes newEnv serve OAuth 2.0 and OpenID Connect: the app's
// loopback port is chosen first, and its URL is the issuer (and the
// public URL). Config tunes the provider (short TTLs; its Issuer is
// ignored), and Now, if set, is the provider's clock.
type oauthOn struct {
	Config oauth.Config
	Now    func() time.Time
}

// withT returns a copy of e that reports to t, for subtests.
func (e *env) withT(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// sendRaw sends req's head over a real loopback connection without its body
// and reads the answer. It shows a server that refuses an oversized body from
// its Content-Length alone, before reading it; a client that insists on
// writing the body first would only see the connection close under it.
func (e *env) sendRaw(req *http.Request) (*http.Response, error) {
	e.t.Helper()
	e.url() // starts the listener
	conn, err := net.DialTimeout("tcp", *e.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: tether\r\nContent-Length: %d\r\n", req.Method, req.URL.RequestURI(), req.ContentLength)
	for k, vs := range req.Header {
		for _, v := range vs {
			head += k + ": " + v + "\r\n"
		}
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		return nil, err
	}
	return http.ReadResponse(bufio.NewReader(conn), req)
}

// newEnv takes options: func(*auth.Config) for the policies, a
// *stepClock for the auth service's clock,
// func(*api.Options) for the server, func(device.Store) device.Store to
// wrap the store the device service sees, oauthOn to serve OAuth and
// func(*oauth.Config) to tune it.
func newEnv(t testing.TB, mutate ...any) *env {
	t.Helper()
	metrics := api.NewMetrics()
	metrics.StatsEvery = 0 // tests read the store's counts fresh
	var (
		store *bolt.Store
		db    storage.Store
		err   error
	)
	if slices.Contains(mutate, any(onPostgres{})) {
		pg, err := postgres.Open(context.Background(), pgtest.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		db = pg
	} else {
		if store, err = bolt.Open(filepath.Join(t.TempDir(), "tether.db"), bolt.WithTxObserver(metrics.ObserveTx)); err != nil {
			t.Fatal(err)
		}
		db = store
	}
	t.Cleanup(func() { db.Close() })

	v, err := auth.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	logger := slog.New(api.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	keys := auth.NewAPIKeys(db)
	params := auth.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}
	for _, m := range mutate {
		if p, ok := m.(auth.Params); ok {
			params = p
		}
	}
	hasher := auth.NewHasher(params)
	cfg := auth.DefaultConfig()
	// Logins are not shed for their wait here, however loaded the machine
	// running the tests: the throttle's tests count every answer.
	// TestLoginShedsLoad sets its own.
	cfg.HashMaxWait = time.Hour
	opts := api.Options{BodyLimit: bodyLimit}
	var devices device.Store = db
	var authOpts []auth.ServiceOption
	var ln net.Listener
	issuer := ""
	var oauthCfg oauth.Config
	var on oauthOn
	var evCfg *events.Config
	for _, m := range mutate {
		if o, ok := m.(oauthOn); ok {
			on = o
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			issuer = "http://" + ln.Addr().String()
			opts.PublicURL, cfg.OAuthIssuer = issuer, issuer
		}
	}
	for _, m := range mutate {
		switch f := m.(type) {
		case func(*auth.Config):
			f(&cfg)
		case func(*api.Options):
			f(&opts)
		case func(device.Store) device.Store:
			devices = f(devices)
		case auth.Directory:
			authOpts = append(authOpts, auth.WithDirectory(f))
		case *stepClock:
			authOpts = append(authOpts, auth.WithClock(f.Now))
		case func(*oauth.Config):
			f(&oauthCfg)
		case events.Config:
			evCfg = &f
		case auth.Params:
		case oauthOn, onPostgres:
		default:
			t.Fatalf("newEnv option %T", m)
		}
	}
	authSvc, err := auth.NewService(context.Background(), cfg, db, hasher, v, append(authOpts, auth.WithLogger(logger), auth.WithObserver(metrics.ObserveEvent))...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: t, store: store, db: db, logs: logs, listen: &sync.Once{}, addr: new(string), auth: authSvc, ln: ln}
	if issuer != "" {
		ocfg := on.Config
		if ocfg == (oauth.Config{}) {
			ocfg = oauthCfg
		}
		ocfg.Issuer = issuer
		oopts := []oauth.Option{oauth.WithLogger(logger)}
		if on.Now != nil {
			oopts = append(oopts, oauth.WithClock(on.Now))
		}
		if e.oauth, err = oauth.New(ocfg, authSvc, db, oopts...); err != nil {
			t.Fatal(err)
		}
	}
	var dispatcher *events.Dispatcher
	if evCfg != nil {
		if dispatcher, err = events.New(context.Background(), db, *evCfg, events.Options{
			Poll: 5 * time.Millisecond, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Observer: metrics,
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { dispatcher.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	e.app = api.New(api.Deps{
		Store:   db,
		Devices: device.NewService(devices, v),
		Users:   auth.NewUsers(db, hasher, v),
		APIKeys: keys,
		Auth:    authSvc,
		OAuth:   e.oauth,
		Logger:  logger,
		Metrics: metrics,
		Events:  dispatcher,
	}, opts)
	for _, k := range []struct {
		dst  *string
		role storage.Role
	}{{&e.admin, storage.RoleAdmin}, {&e.manager, storage.RoleManager}, {&e.introspect, storage.RoleIntrospect}} {
		secret, _, err := keys.Create(context.Background(), auth.CLI, k.role, string(k.role))
		if err != nil {
			t.Fatal(err)
		}
		*k.dst = secret
	}
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request. body may be a string (sent as is) or any value
// (encoded as JSON); key goes in Authorization: Bearer.
func (e *env) do(method, path, key string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	var resp *http.Response
	var err error
	if req.ContentLength > int64(bodyLimit) {
		// app.Test cannot carry a body over the limit: fasthttp refuses it
		// before Fiber answers. Send it over a real connection instead.
		resp, err = e.sendRaw(req)
	} else {
		resp, err = e.app.Test(req, -1)
	}
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// wantProblem checks a problem+json answer's status and code, and returns it.
func wantProblem(t testing.TB, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d; want %d\n%s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q; want application/problem+json\n%s", ct, r.body)
	}
	p := r.json(t)
	if p["code"] != code {
		t.Fatalf("code %v; want %s\n%s", p["code"], code, r.body)
	}
	if p["status"] != float64(status) || p["type"] != "urn:tether:problem:"+code || p["title"] == "" {
		t.Fatalf("malformed problem: %s", r.body)
	}
	if id, _ := p["requestId"].(string); id == "" || id != r.header.Get("X-Request-ID") {
		t.Fatalf("problem requestId %q, header %q; want the same, non-empty", id, r.header.Get("X-Request-ID"))
	}
	return p
}

// fieldCodes returns field -> code of a validation problem.
func fieldCodes(t testing.TB, p map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		m := e.(map[string]any)
		out[m["field"].(string)] = m["code"].(string)
		if m["message"] == "" {
			t.Errorf("field %v has no message", m["field"])
		}
	}
	return out
}

func (e *env) deviceCount() int {
	e.t.Helper()
	page, err := e.db.ListDevices(context.Background(), storage.DeviceFilter{Limit: storage.MaxPageSize})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(page.Items)
}

func (e *env) userCount() int {
	e.t.Helper()
	page, err := e.db.ListUsers(context.Background(), storage.UserFilter{Limit: storage.MaxPageSize})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(page.Items)
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		r := e.do("GET", path, "", nil)
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
	}
	e.store.Close()
	if r := e.do("GET", "/readyz", "", nil); r.status != 503 {
		t.Fatalf("/readyz with the store closed: %d; want 503", r.status)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/devices", "", nil)
	wantProblem(t, r, 401, "token_invalid")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	wantProblem(t, e.do("GET", "/v1/devices", "tak_wrong", nil), 401, "token_invalid")
	wantProblem(t, e.do("GET", "/v1/devices", e.manager+"x", nil), 401, "token_invalid")
	wantProblem(t, e.do("GET", "/v1/devices", "", nil, "Authorization", "Basic "+e.manager), 401, "token_invalid")

	// The same key through X-API-Key.
	if r := e.do("GET", "/v1/devices", "", nil, "X-API-Key", e.manager); r.status != 200 {
		t.Fatalf("X-API-Key: %d %s", r.status, r.body)
	}

	// Roles: an introspection key opens no manager route, a manager no admin route.
	for _, path := range []string{"/v1/devices", "/v1/users", "/v1/api-keys"} {
		wantProblem(t, e.do("GET", path, e.introspect, nil), 403, "forbidden")
	}
	wantProblem(t, e.do("GET", "/v1/api-keys", e.manager, nil), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/devices", e.introspect, map[string]any{"imei": "490154203237518"}), 403, "forbidden")
	if n := e.deviceCount(); n != 0 {
		t.Fatalf("a forbidden register wrote %d devices", n)
	}
	if r := e.do("GET", "/v1/api-keys", e.admin, nil); r.status != 200 {
		t.Fatalf("admin listing keys: %d", r.status)
	}

	// Keys never reach the log.
	if strings.Contains(e.logs.String(), e.manager) || strings.Contains(e.logs.String(), "tak_") {
		t.Fatal("an API key was logged")
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/healthz", "", nil)
	id := r.header.Get("X-Request-ID")
	if len(id) != 20 {
		t.Fatalf("request id %q; want 20 characters", id)
	}
	if again := e.do("GET", "/healthz", "", nil).header.Get("X-Request-ID"); again == id {
		t.Fatal("two requests got the same id")
	}
	if got := e.do("GET", "/healthz", "", nil, "X-Request-ID", "trace-42.a_b").header.Get("X-Request-ID"); got != "trace-42.a_b" {
		t.Fatalf("client id not kept: %q", got)
	}
	if got := e.do("GET", "/healthz", "", nil, "X-Request-ID", "bad id\"{}").header.Get("X-Request-ID"); got == "bad id\"{}" {
		t.Fatal("a hostile request id was adopted")
	}
	// Every log line of a request carries its id.
	p := wantProblem(t, e.do("GET", "/v1/devices/dev_missing", e.manager, nil), 404, "not_found")
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["request_id"] == p["requestId"] {
			lines++
		}
	}
	if lines < 2 {
		t.Fatalf("%d log lines carry the request id; want the refusal and the access line", lines)
	}
}

// TestUnknownRoute: an unknown path is 404; a known one with a method it
// does not take is 405 with Allow, on the native API and the dialects.
func TestUnknownRoute(t *testing.T) {
	e := newEnv(t)
	wantProblem(t, e.do("GET", "/nope", "", nil), 404, "not_found")
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/devices", "GET, POST"},
		{"GET", "/v1/auth/login", "POST"},
		{"PUT", "/api/Login", "POST"},
		{"GET", "/api/User/GetUserToken", "POST"},
	} {
		r := e.do(c.method, c.path, e.manager, nil)
		wantProblem(t, r, 405, "method_not_allowed")
		if allow := r.header.Get("Allow"); !strings.Contains(allow, "POST") || c.allow == "GET, POST" && !strings.Contains(allow, "GET") {
			t.Errorf("%s %s: Allow %q; want %s", c.method, c.path, allow, c.allow)
		}
	}
}

// TestInternalErrorsSayNothing closes the store under a running server: the
// answer is a bare 500 with a request id, and the detail goes to the log.
func TestInternalErrorsSayNothing(t *testing.T) {
	e := newEnv(t)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	p := wantProblem(t, e.do("GET", "/v1/devices", e.manager, nil), 500, "internal")
	if strings.Contains(string(p["detail"].(string)), "database") || strings.Contains(fmt.Sprint(p), "bolt") {
		t.Fatalf("the 500 leaks internals: %v", p)
	}
	if !strings.Contains(e.logs.String(), p["requestId"].(string)) || !strings.Contains(e.logs.String(), "database not open") {
		t.Fatalf("the log lacks the failure or its request id:\n%s", e.logs.String())
	}
}

func TestBackupRoute(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	wantProblem(t, e.do("GET", "/v1/admin/backup", e.manager, nil), 403, "forbidden")
	resp, err := e.client().Get(e.url() + "/v1/admin/backup?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("backup without a key: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", e.url()+"/v1/admin/backup", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err = e.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "tether-") {
		t.Fatalf("backup: %d %v", resp.StatusCode, resp.Header)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := bolt.Verify(path); err != nil {
		t.Fatalf("streamed backup: %v", err)
	}
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.GetDeviceByIMEI(t.Context(), "490154203237518"); err != nil {
		t.Fatalf("the backup lacks a device: %v", err)
	}
}

func (e *env) client() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

// metric returns the value of one series in a /metrics answer, or -1.
func metric(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	before := e.do("GET", "/metrics", "", nil)
	if before.status != 200 || !strings.Contains(before.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %v", before.status, before.header)
	}
	login := `tether_auth_events_total{action="login",outcome="success",reason=""}`
	if v := metric(t, before.body, login); v > 0 {
		t.Fatalf("logins before any login: %v", v)
	}
	e.loginWorker()
	e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "wrong password", "device": handset("490154203237518")})
	after := e.do("GET", "/metrics", "", nil).body
	for series, want := range map[string]float64{
		login: 1,
		`tether_auth_events_total{action="login",outcome="failure",reason="invalid_credentials"}`: 1,
		`tether_http_requests_total{method="POST",route="/v1/auth/login",status="200"}`:           1,
		`tether_http_requests_total{method="POST",route="/v1/auth/login",status="401"}`:           1,
		`tether_devices{status="enrolled"}`:                                                       2,
		`tether_sessions`:                                                                         1,
		`tether_password_hash_queue`:                                                              0,
	} {
		if got := metric(t, after, series); got != want {
			t.Errorf("%s = %v; want %v", series, got, want)
		}
	}
	for _, name := range []string{"tether_http_request_duration_seconds_bucket", "tether_store_transaction_seconds_bucket", "tether_store_size_bytes", "go_goroutines"} {
		if !strings.Contains(string(after), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// Routes are counted by pattern, not by id.
	e.do("GET", "/v1/devices/490154203237518", e.manager, nil)
	if strings.Contains(string(e.do("GET", "/metrics", "", nil).body), "490154203237518") {
		t.Fatal("a device id became a metric label")
	}
}

// TestSilentReadTimeout: a connection that sends no whole request within the
// read timeout is closed without an answer (an answer could be read later as
// the answer to a request the client has not sent yet).
func TestSilentReadTimeout(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.ReadTimeout = 200 * time.Millisecond })
	base := e.url()
	for name, send := range map[string]string{
		"nothing":       "",
		"half a header": "GET /healthz HTTP/1.1\r\nHost: t",
		"half a body":   "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		if send != "" {
			io.WriteString(conn, send)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		conn.Close()
		if len(got) != 0 {
			t.Errorf("%s: the server wrote %q on a timed-out connection", name, got)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open past its read timeout", name)
		}
	}
	// A normal request still works.
	if r := e.do("GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
}

// TestHugeHeaders: headers past the read buffer are refused before any
// handler runs.
func TestHugeHeaders(t *testing.T) {
	e := newEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		// Closing the connection is a refusal too.
		return
	}
	resp.Body.Close()
	t.Logf("64 KiB of headers: %d", resp.StatusCode)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d; want 431", resp.StatusCode)
	}
}

// TestOversizedBodyRefusedUnread: a body announced larger than the limit
// is refused with a 413 problem on the strength of its Content-Length,
// before it is sent, let alone read: the client here sends only a few
// bytes of its gigabyte. One sent in chunks is cut off at the limit.
func TestOversizedBodyRefusedUnread(t *testing.T) {
	e := newEnv(t)
	for name, head := range map[string]string{
		"announced": "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{\"username\":",
		"chunked":   "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.url(), "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, head)
			if name == "chunked" {
				// Twice the limit in 8 KiB chunks, then no end: the server
				// must answer without waiting for one.
				chunk := fmt.Sprintf("2000\r\n%s\r\n", strings.Repeat("x", 0x2000))
				for range 2 * bodyLimit / 0x2000 {
					if _, err := io.WriteString(conn, chunk); err != nil {
						break // the server has answered and closed
					}
				}
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to an oversized body: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(string(body), `"payload_too_large"`) {
				t.Fatalf("%d %s %s; want a 413 payload_too_large problem", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		})
	}
}

// TestLoginFlood: thousands of wrong logins at once from one address, each
// under another username, over real connections. Every answer is a clean
// 401, a 429 with Retry-After, or a 503 server_busy with Retry-After (a
// login shed: it would have waited over a second), never another 5xx;
// once the address has failed
// often enough the rest are turned away without a hash; the server's heap
// stays bounded; and the address stays locked even for a right password.
func TestLoginFlood(t *testing.T) {
	e := newEnv(t)
	e.do("POST", "/v1/users", e.admin, map[string]any{"username": "boss", "password": "correct horse", "role": "manager"})
	base := e.url()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const attempts, clients = 3000, 100
	start := time.Now()
	var mu sync.Mutex
	statuses := map[int]int{}
	work := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range work {
				body := fmt.Sprintf(`{"username":"guess%d","password":"%s"}`, i, strings.Repeat("x", 1000))
				resp, err := client.Post(base+"/v1/auth/login", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && resp.Header.Get("Retry-After") == "" {
					t.Errorf("%d without Retry-After", resp.StatusCode)
				}
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	for i := range attempts {
		work <- i
	}
	close(work)
	wg.Wait()

	// 503: shed, when the checks queued would keep it waiting past a
	// second (it costs nothing, not even a count).
	if statuses[401]+statuses[429]+statuses[503] != attempts {
		t.Fatalf("answers %v; want only 401, 429 and 503", statuses)
	}
	// The address throttle lets 50 failures through: each attempt is
	// counted before its hash, so however many arrive at once, 50 are
	// hashed, and then one more after each wait (1 s, 2 s, ...) that
	// passed while the flood lasted.
	if n, most := statuses[401], 50+waitsWithin(time.Since(start)); n < 50 || n > most {
		t.Fatalf("%d attempts were hashed and refused; want 50 to %d", n, most)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 32<<20 {
		t.Fatalf("the heap grew by %d MiB under the flood", grown>>20)
	}
	resp, err := client.Post(base+"/v1/auth/login", "application/json", strings.NewReader(`{"username":"boss","password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the right password from the flooding address: %d; want 429", resp.StatusCode)
	}
	// Another address is not locked out by this one's flood.
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "boss", "password": "correct horse"}); r.status != 200 {
		t.Fatalf("the right password from another address: %d %s", r.status, r.body)
	}
}

// waitsWithin is how many of the throttle's growing waits (1 s, 2 s, 4 s,
// ...) end within d: after the free failures, one more attempt each.
func waitsWithin(d time.Duration) int {
	n := 0
	for wait, total := time.Second, time.Second; total <= d; wait, total = wait*2, total+wait*2 {
		n++
	}
	return n
}

// TestEveryRouteChecksItsRole walks every route the app serves under /v1
// and sends it the credentials of each role below the one it needs: none
// at all, a worker's access token, an introspection key, a manager's key.
// Each must be refused before the handler runs. A route this test does
// not know fails it, so a new route cannot be added without its role.
func TestEveryRouteChecksItsRole(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	worker := e.loginWorker()["accessToken"].(string)
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"})
	if r.status != 200 {
		t.Fatalf("manager login: %d %s", r.status, r.body)
	}
	managerToken := r.json(t)["accessToken"].(string)

	const (
		open         = iota // no credentials needed
		self                // a user's own access token
		introspector        // an introspection (or admin) key
		manager             // a manager or admin
		admin               // an admin
		ownFactors          // a manager's or admin's own access token
	)
	need := func(path string) (int, bool) {
		switch {
		case slices.Contains([]string{"/v1/auth/login", "/v1/auth/refresh", "/v1/auth/renew", "/v1/enroll", "/v1/enroll/challenge",
			"/v1/auth/mfa", "/v1/auth/mfa/enroll", "/v1/auth/mfa/enroll/confirm",
			"/v1/auth/mfa/webauthn", "/v1/auth/mfa/webauthn/finish", "/v1/auth/mfa/enroll/webauthn", "/v1/auth/mfa/enroll/webauthn/confirm"}, path):
			return open, true
		case path == "/v1/auth/logout" || path == "/v1/auth/me" || path == "/v1/auth/password" || path == "/v1/auth/end-shift":
			return self, true
		case path == "/v1/auth/introspect":
			return introspector, true
		case strings.HasPrefix(path, "/v1/auth/factors") || path == "/v1/auth/recovery-codes":
			return ownFactors, true
		case strings.HasPrefix(path, "/v1/api-keys") || strings.HasPrefix(path, "/v1/admin/") || strings.HasPrefix(path, "/v1/oauth/") ||
			strings.HasSuffix(path, "/mfa/reset"):
			return admin, true
		}
		for _, p := range []string{"/v1/devices", "/v1/users", "/v1/sessions", "/v1/audit", "/v1/enrollment-codes", "/v1/lockouts", "/v1/directory", "/v1/events", "/v1/groups", "/v1/rack"} {
			if path == p || strings.HasPrefix(path, p+"/") {
				return manager, true
			}
		}
		return 0, false
	}
	type cred struct {
		name   string
		header []string
		role   storage.Role
		user   bool // a user's access token, not an API key
	}
	creds := []cred{
		{"no credentials", nil, "", false},
		{"a worker's token", []string{"Authorization", "Bearer " + worker}, storage.RoleWorker, true},
		{"an introspection key", []string{"Authorization", "Bearer " + e.introspect}, storage.RoleIntrospect, false},
		{"a manager's token", []string{"Authorization", "Bearer " + managerToken}, storage.RoleManager, true},
		{"a manager's key", []string{"X-API-Key", e.manager}, storage.RoleManager, false},
	}
	allowed := func(class int, c cred) bool {
		switch class {
		case open:
			return true
		case self:
			return c.user
		case introspector:
			return c.role == storage.RoleIntrospect
		case manager:
			return c.role == storage.RoleManager
		case ownFactors:
			return c.role == storage.RoleManager && c.user
		}
		return false
	}
	seen := 0
	for _, rt := range e.app.GetRoutes(true) {
		if !strings.HasPrefix(rt.Path, "/v1/") || rt.Method == "HEAD" {
			continue
		}
		class, ok := need(rt.Path)
		if !ok {
			t.Errorf("%s %s: this test does not know the role it needs", rt.Method, rt.Path)
			continue
		}
		seen++
		path := strings.ReplaceAll(rt.Path, ":id", "dev_x")
		for _, c := range creds {
			if allowed(class, c) {
				continue
			}
			r := e.do(rt.Method, path, "", `{}`, append([]string{"Content-Type", "application/json"}, c.header...)...)
			want := "forbidden"
			if c.header == nil {
				want = "token_invalid"
			}
			if p := r.json(t); p["code"] != want {
				t.Errorf("%s %s with %s: %d %s; want it refused with %s", rt.Method, rt.Path, c.name, r.status, r.body, want)
			}
		}
	}
	if seen < 30 {
		t.Fatalf("only %d routes checked", seen)
	}
	// Dynamic client registration is the admins' too, answered in RFC
	// 6749 / 6750 terms.
	for _, c := range creds {
		r := e.do("POST", "/oauth2/register", "", `{"redirect_uris":["https://app.example.com/cb"]}`, append([]string{"Content-Type", "application/json"}, c.header...)...)
		want, status := "insufficient_scope", 403
		if c.header == nil {
			want, status = "invalid_token", 401
		}
		if r.status != status || r.json(t)["error"] != want {
			t.Errorf("POST /oauth2/register with %s: %d %s; want %d %s", c.name, r.status, r.body, status, want)
		}
	}
	if r := e.do("POST", "/oauth2/register", e.admin, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}}); r.status != 201 {
		t.Errorf("POST /oauth2/register with the admin key: %d %s", r.status, r.body)
	}
}
