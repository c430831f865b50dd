package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tether/auth"
	"tether/storage"
	"tether/storage/bolt"
)

// cheapHash are password-hash costs for tests.
var cheapHash = auth.Params{Memory: 64, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}

// TestMain lets the test binary stand in for the tether binary: with
// TETHER_TEST_MAIN=1 it runs main, so the end-to-end tests exercise the real
// process (signals, file locks, exit codes) without a separate build. With
// TETHER_TEST_CHEAP_HASH=1 too, its new password hashes are cheap.
func TestMain(m *testing.M) {
	if os.Getenv("TETHER_TEST_MAIN") == "1" {
		if os.Getenv("TETHER_TEST_CHEAP_HASH") == "1" {
			hashParams = cheapHash
		}
		main()
		return
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs a command in-process with the given stdin and environment.
func runCLI(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{
		stdin:            strings.NewReader(stdin),
		stdout:           &out,
		stderr:           &errb,
		getenv:           func(k string) string { return env[k] },
		isTerminal:       func() bool { return false },
		stderrIsTerminal: func() bool { return env["TERM_FOR_TEST"] == "1" },
		readPassword:     func() ([]byte, error) { return nil, errors.New("no terminal") },
		hashParams:       cheapHash,
	}
	code := c.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

func openTestStore(t *testing.T, dir string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAPIKeyCreatePrintsSecretAlone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager", "--name", "ci")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	secret := strings.TrimSuffix(r.stdout, "\n")
	if !regexp.MustCompile(`^tak_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		t.Fatalf("stdout %q; want the secret alone", r.stdout)
	}
	if strings.Contains(r.stderr, secret) {
		t.Fatal("the secret is on stderr too")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	fi, err = os.Stat(filepath.Join(dir, dbFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	s := openTestStore(t, dir)
	defer s.Close()
	keys := auth.NewAPIKeys(s)
	p, err := keys.Authenticate(context.Background(), secret)
	if err != nil || p.Role != storage.RoleManager {
		t.Fatalf("printed key does not authenticate: %+v, %v", p, err)
	}
	s.Close()

	// --allow-from limits the key to networks, every bad one refused.
	r = runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager", "--allow-from", "10.0.0.0/8,192.168.1.7", "--allow-from", "2001:db8::/32")
	if r.code != 0 {
		t.Fatalf("--allow-from: exit %d: %s", r.code, r.stderr)
	}
	s = openTestStore(t, dir)
	keys = auth.NewAPIKeys(s)
	list, err := keys.List(context.Background())
	if err != nil || len(list) != 2 {
		t.Fatalf("keys: %v, %v", list, err)
	}
	var nets []string
	for _, k := range list {
		if len(k.AllowFrom) > 0 {
			nets = k.AllowFrom
		}
	}
	if strings.Join(nets, " ") != "10.0.0.0/8 192.168.1.7/32 2001:db8::/32" {
		t.Fatalf("allowFrom %v", nets)
	}
	s.Close()
	if r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager", "--allow-from", "10.0.0.0/40"); r.code == 0 || !strings.Contains(r.stderr, "allowFrom[0]") {
		t.Fatalf("a bad network: exit %d: %s", r.code, r.stderr)
	}
}

func TestUserAdd(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, "s3cret-password\n", nil, "user", "add", "--data", dir, "--username", "Admin", "--role", "admin", "--password-stdin")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	s := openTestStore(t, dir)
	u, err := s.GetUserByUsername(context.Background(), "admin")
	s.Close()
	if err != nil || u.Role != storage.RoleAdmin {
		t.Fatalf("user: %+v, %v", u, err)
	}
	ok, err := auth.NewHasher(auth.DefaultParams).Verify("s3cret-password", u.PasswordHash)
	if !ok || err != nil {
		t.Fatalf("the password from stdin does not verify: %v %v", ok, err)
	}

	// Without --password-stdin and no terminal, it refuses rather than hangs.
	r = runCLI(t, "", nil, "user", "add", "--data", dir, "--username", "bob")
	if r.code != 1 || !strings.Contains(r.stderr, "--password-stdin") {
		t.Fatalf("no terminal: exit %d, %s", r.code, r.stderr)
	}
	// Bad input names every bad field.
	r = runCLI(t, "short\n", nil, "user", "add", "--data", dir, "--username", "has space", "--role", "boss", "--password-stdin")
	for _, want := range []string{"username_invalid", "role_invalid", "password_length"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %s: %s", want, r.stderr)
		}
	}
	r = runCLI(t, "another-password\n", nil, "user", "add", "--data", dir, "--username", "ADMIN", "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("duplicate: exit %d, %s", r.code, r.stderr)
	}
	// The password is never a flag.
	r = runCLI(t, "", nil, "user", "add", "--data", dir, "--username", "carol", "--password", "x")
	if r.code != 2 {
		t.Fatalf("--password flag: exit %d; want 2", r.code)
	}
}

func TestDeviceAdd(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, "", nil, "device", "add", "--data", dir, "--imei", "490154203237518", "--label", "van 7", "--iccid", "89445001021983048261", "--mode", "shared")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	r = runCLI(t, "", nil, "device", "add", "--data", dir, "--imei", "490154203237519", "--iccid", "79445001021983048261", "--assign", "ghost", "--mode", "borrowed")
	if r.code != 1 {
		t.Fatalf("bad device: exit %d", r.code)
	}
	for _, want := range []string{"imei_checksum", "iccid_prefix", "user_unknown", "mode_invalid"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %s: %s", want, r.stderr)
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	page, err := s.ListDevices(context.Background(), storage.DeviceFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].Label != "van 7" || len(page.Items[0].IccIDs) != 1 || page.Items[0].Mode != storage.ModeShared {
		t.Fatalf("devices: %+v, %v", page.Items, err)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	// TETHER_DATA stands in for --data; a flag on the command line wins.
	r := runCLI(t, "", map[string]string{"TETHER_DATA": dir, "TETHER_ROLE": "admin"}, "apikey", "create", "--role", "introspect")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	s := openTestStore(t, dir)
	defer s.Close()
	keys, err := s.ListAPIKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].Role != storage.RoleIntrospect {
		t.Fatalf("keys in TETHER_DATA: %+v, %v", keys, err)
	}
	if got := envName("min-os-api"); got != "TETHER_MIN_OS_API" {
		t.Fatalf("envName = %s", got)
	}
	r = runCLI(t, "", map[string]string{"TETHER_READ_TIMEOUT": "soon"}, "serve", "--data", t.TempDir())
	if r.code != 1 || !strings.Contains(r.stderr, "TETHER_READ_TIMEOUT") {
		t.Fatalf("bad env value: exit %d, %s", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"user"}, {"user", "delete"}, {"serve", "--no-such-flag"}, {"device", "add"}, {"apikey", "create"}, {"serve", "extra"}, {"serve", "--device-proof-groups", "vault"}} {
		if r := runCLI(t, "", nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d; want 2 (%s)", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"serve", "--device-proof", "sometimes"}, {"serve", "--device-proof-groups", "vault=never"}} {
		if r := runCLI(t, "", nil, append(args, "--data", t.TempDir())...); r.code != 1 || !strings.Contains(r.stderr, "want off, optional or required") {
			t.Errorf("%v: exit %d; want 1 naming the policies (%s)", args, r.code, r.stderr)
		}
	}
	if r := runCLI(t, "", nil, "version"); r.code != 0 || r.stdout != "dev\n" {
		t.Fatalf("version: %d %q", r.code, r.stdout)
	}
	if r := runCLI(t, "", nil, "serve", "--help"); r.code != 0 || !strings.Contains(r.stderr, "-addr") {
		t.Fatalf("serve --help: %d %s", r.code, r.stderr)
	}
}

// server is a tether serve process.
type server struct {
	cmd       *exec.Cmd
	addr      string
	stderr    *bytes.Buffer
	done      chan error
	listening map[string]any
}

// startServer runs the real binary's serve on a free loopback port and
// waits until it listens.
func startServer(t *testing.T, dir string, extra ...string) *server {
	t.Helper()
	return startServerOut(t, nil, append([]string{"--data", dir}, extra...)...)
}

// startServerOut is startServer with the server's stdout going to out.
func startServerOut(t *testing.T, out io.Writer, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout = out
	cmd.Env = append(os.Environ(), "TETHER_TEST_MAIN=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	lines := bufio.NewScanner(pipe)
	addr := make(chan string, 1)
	go func() {
		for lines.Scan() {
			line := lines.Text()
			s.stderr.WriteString(line + "\n")
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
				s.listening = rec // before the send: the test reads it after
				addr <- rec["addr"].(string)
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case s.addr = <-addr:
		return s
	case err := <-s.done:
		t.Fatalf("server exited before listening: %v\n%s", err, s.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not listen\n%s", s.stderr)
	}
	return nil
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop on SIGTERM")
	}
}

func request(t *testing.T, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server process")
	}
	dir := filepath.Join(t.TempDir(), "data")
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	key := strings.TrimSpace(r.stdout)

	srv := startServer(t, dir)
	base := "http://" + srv.addr
	if code, _ := request(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if code, _ := request(t, "GET", base+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	code, dev := request(t, "POST", base+"/v1/devices", key, `{"imei":"490154203237518","label":"van 7"}`)
	if code != 201 {
		t.Fatalf("register: %d %v", code, dev)
	}
	if code, _ := request(t, "POST", base+"/v1/devices/"+dev["id"].(string)+"/suspend", key, ""); code != 200 {
		t.Fatalf("suspend: %d", code)
	}

	// A second server on the same data fails at once, and says why.
	start := time.Now()
	second := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--data", dir)
	second.Env = append(os.Environ(), "TETHER_TEST_MAIN=1")
	out, err := second.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "in use by another tether process") {
		t.Fatalf("second serve: %v\n%s", err, out)
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Fatalf("second serve took %v to fail", waited)
	}

	// Every log line about a request carries a request id; no key is logged.
	srv.stop(t)
	for _, line := range strings.Split(strings.TrimSpace(srv.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] == "request" && rec["request_id"] == nil {
			t.Fatalf("request line without request_id: %s", line)
		}
	}
	if strings.Contains(srv.stderr.String(), key) {
		t.Fatal("the API key was logged")
	}

	// Everything is still there after a restart.
	srv = startServer(t, dir)
	code, got := request(t, "GET", "http://"+srv.addr+"/v1/devices/490154203237518", key, "")
	if code != 200 || got["status"] != "suspended" || got["label"] != "van 7" {
		t.Fatalf("after restart: %d %v", code, got)
	}

	// A request in flight when SIGTERM arrives is finished, and what it
	// wrote is kept: send half a body, signal, then the rest.
	body := `{"imei":"356938035643809","label":"in flight"}`
	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /v1/devices HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		key, len(body), body[:10])
	time.Sleep(200 * time.Millisecond) // the server is now reading the body
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatalf("finishing the body after SIGTERM: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the request in flight: %v\n%s", err, srv.stderr)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("request in flight: %d; want 201", resp.StatusCode)
	}
	select {
	case err := <-srv.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop after finishing the request in flight")
	}
	s := openTestStore(t, dir)
	defer s.Close()
	if d, err := s.GetDeviceByIMEI(context.Background(), "356938035643809"); err != nil || d.Label != "in flight" {
		t.Fatalf("the acknowledged write is missing after shutdown: %+v, %v", d, err)
	}
}

func TestKeysRotate(t *testing.T) {
	dir := t.TempDir()
	for i := 1; i <= 2; i++ {
		r := runCLI(t, "", nil, "keys", "rotate", "--data", dir)
		if r.code != 0 || !strings.Contains(r.stderr, "new signing keys EdDSA key_") || !strings.Contains(r.stderr, ", RS256 key_") {
			t.Fatalf("keys rotate: exit %d, %s", r.code, r.stderr)
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	keys, err := s.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The first run made the first key of each algorithm and rotated to a
	// second; the next rotated to a third. Only the newest of each signs.
	active := map[string]int{}
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			active[k.Algorithm()]++
		}
	}
	if len(keys) != 9 || len(active) != 3 || active["EdDSA"] != 1 || active["ES256"] != 1 || active["RS256"] != 1 || !keys[8].RetiredAt.IsZero() {
		t.Fatalf("keys after two rotations: got %d, active %v; want 9, one active of each algorithm", len(keys), active)
	}
	events, err := s.ListEvents(context.Background(), storage.EventFilter{Action: "keys.rotate"})
	if err != nil || len(events.Items) != 2 || events.Items[0].Actor != "cli" {
		t.Fatalf("rotation events: %+v, %v", events.Items, err)
	}
	s.Close()

	// --revoke: only the new key is left.
	r := runCLI(t, "", nil, "keys", "rotate", "--revoke", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "every other key is deleted") {
		t.Fatalf("keys rotate --revoke: exit %d, %s", r.code, r.stderr)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	keys, err = s.ListSigningKeys(context.Background())
	if err != nil || len(keys) != 3 || !keys[0].RetiredAt.IsZero() || !keys[1].RetiredAt.IsZero() || !keys[2].RetiredAt.IsZero() {
		t.Fatalf("keys after revoking: %+v, %v; want three, active", keys, err)
	}
	events, err = s.ListEvents(context.Background(), storage.EventFilter{Action: "keys.rotate"})
	if err != nil || len(events.Items) != 3 || events.Items[2].Reason != "old keys revoked" {
		t.Fatalf("rotation events: %+v, %v", events.Items, err)
	}
}

// TestTokenAlgFlag: --token-alg (or TETHER_TOKEN_ALG) chooses the
// algorithm of access tokens, signed by a key the JWKS publishes beside
// those of the other algorithms; an algorithm Tether has no keys of stops
// the start, naming the three.
func TestTokenAlgFlag(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--data", dir, "--username", "boss", "--role", "manager", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	srv := startServer(t, dir, "--token-alg", "RS256")
	base := "http://" + srv.addr
	code, login := request(t, "POST", base+"/v1/auth/login", "", `{"username":"boss","password":"correct horse"}`)
	if code != 200 {
		t.Fatalf("login: %d %v", code, login)
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(login["accessToken"].(string), ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Alg, Kid string }
	if err := json.Unmarshal(header, &h); err != nil || h.Alg != "RS256" {
		t.Fatalf("access token header %s, %v; want RS256", header, err)
	}
	code, jwks := request(t, "GET", base+"/.well-known/jwks.json", "", "")
	algs := map[string]string{}
	for _, k := range jwks["keys"].([]any) {
		k := k.(map[string]any)
		algs[k["kid"].(string)] = k["alg"].(string)
	}
	if code != 200 || len(algs) != 3 || algs[h.Kid] != "RS256" {
		t.Fatalf("JWKS %d %v; want 3 keys, %s the RS256 one", code, algs, h.Kid)
	}
	srv.stop(t)

	for name, env := range map[string]map[string]string{
		"flag": nil, "environment": {"TETHER_TOKEN_ALG": "HS256"},
	} {
		args := []string{"serve", "--data", t.TempDir()}
		if env == nil {
			args = append(args, "--token-alg", "HS256")
		}
		if r := runCLI(t, "", env, args...); r.code != 1 || !strings.Contains(r.stderr, "want EdDSA, ES256 or RS256") {
			t.Errorf("%s HS256: exit %d, %s; want 1 naming the algorithms", name, r.code, r.stderr)
		}
	}
}

// TestServeWarnsWithoutPublicURL: with handset proofs on and no
// --public-url, proofs are checked against the Host each request names, and
// the server says so at start.
func TestServeWarnsWithoutPublicURL(t *testing.T) {
	const warning = "pass --public-url"
	srv := startServer(t, t.TempDir())
	srv.stop(t)
	if !strings.Contains(srv.stderr.String(), warning) {
		t.Fatalf("no warning without --public-url:\n%s", srv.stderr)
	}
	for _, extra := range [][]string{{"--public-url", "https://tether.example"}, {"--device-proof", "off"}} {
		srv := startServer(t, t.TempDir(), extra...)
		srv.stop(t)
		if strings.Contains(srv.stderr.String(), warning) {
			t.Fatalf("a warning with %v:\n%s", extra, srv.stderr)
		}
	}
}

func TestDeviceImport(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, "long enough\n", nil, "user", "add", "--data", dir, "--username", "walter", "--password-stdin"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	bad := filepath.Join("..", "..", "testdata", "import", "fleet-50-bad.csv")
	good := filepath.Join("..", "..", "testdata", "import", "fleet-50.csv")

	r := runCLI(t, "", nil, "device", "import", "--data", dir, "--dry-run", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "row 6: imei") || !strings.Contains(r.stderr, "row 21: iccIds[0]") ||
		!strings.Contains(r.stderr, "row 38: assignedUsers") || !strings.Contains(r.stderr, "3 of 50 rows") {
		t.Fatalf("dry run of the bad file: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, "", nil, "device", "import", bad, "--data", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "3 rows have errors: nothing was imported") {
		t.Fatalf("import of the bad file: exit %d\n%s", r.code, r.stderr)
	}
	// Told to, it imports the valid rows of the bad file and lists the others.
	other := t.TempDir()
	if r := runCLI(t, "long enough\n", nil, "user", "add", "--data", other, "--username", "walter", "--password-stdin"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = runCLI(t, "", nil, "device", "import", "--skip-invalid", bad, "--data", other)
	if r.code != 0 || !strings.Contains(r.stderr, "imported 47 handsets, 3 rows with errors left out") || !strings.Contains(r.stderr, "row 38: assignedUsers") {
		t.Fatalf("import of the bad file's valid rows: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, "", map[string]string{"TERM_FOR_TEST": "1"}, "device", "import", good, "--data", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "imported 50 handsets") || !strings.Contains(r.stderr, "[##############################] 50/50") {
		t.Fatalf("import: exit %d\n%s", r.code, r.stderr)
	}
	s := openTestStore(t, dir)
	defer s.Close()
	page, err := s.ListDevices(context.Background(), storage.DeviceFilter{Limit: 100})
	if err != nil || len(page.Items) != 50 {
		t.Fatalf("%d devices, %v", len(page.Items), err)
	}
	for _, args := range [][]string{{"device", "import"}, {"device", "import", "fleet.txt"}} {
		if r := runCLI(t, "", nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d", args, r.code)
		}
	}
}

func TestEnrollmentCodeCreate(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, "", nil, "enrollment-code", "create", "--data", dir, "--max-uses", "5", "--label", "spare", "--public-url", "https://tether.example.com")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	code := strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$`).MatchString(code) {
		t.Fatalf("stdout %q; want the code alone", r.stdout)
	}
	if !strings.Contains(r.stderr, "https://tether.example.com/v1/enroll?code="+code) || !strings.Contains(r.stderr, "█") {
		t.Fatalf("stderr lacks the QR or the URL:\n%s", r.stderr)
	}
	warnings := func(stderr string) []string {
		var out []string
		for _, line := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(line, "warning: ") {
				out = append(out, line)
			}
		}
		return out
	}
	// Like the server, the command takes self-enrollment to be off unless
	// told otherwise, and says so; the URL is fine.
	if w := warnings(r.stderr); len(w) != 1 || !strings.Contains(w[0], "self-enrollment is off") || !strings.Contains(w[0], "--enrollment-mode code") {
		t.Fatalf("warnings %q; want one, that self-enrollment is off\n%s", w, r.stderr)
	}
	// Without --public-url the QR points at localhost: a warning, not a failure.
	r = runCLI(t, "", map[string]string{"TETHER_ENROLLMENT_MODE": "code"}, "enrollment-code", "create", "--data", dir)
	if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Fatalf("without --public-url: exit %d: %s", r.code, r.stderr)
	}
	if w := warnings(r.stderr); len(w) != 1 || !strings.Contains(w[0], "point at localhost, which a handset cannot reach") || !strings.Contains(w[0], "--public-url") {
		t.Fatalf("warnings %q; want one, that a handset cannot reach localhost\n%s", w, r.stderr)
	}
	if r := runCLI(t, "", nil, "enrollment-code", "create", "--data", dir, "--max-uses", "-1", "--expires-in", "1s"); r.code != 1 ||
		!strings.Contains(r.stderr, "max_uses_range") || !strings.Contains(r.stderr, "expires_in_range") || r.stdout != "" {
		t.Fatalf("bad flags: exit %d: %s", r.code, r.stderr)
	}
	s := openTestStore(t, dir)
	defer s.Close()
	codes, err := s.ListEnrollmentCodes(context.Background(), storage.CodeFilter{})
	if err != nil || len(codes) != 2 || codes[0].MaxUses != 5 || codes[0].Label != "spare" {
		t.Fatalf("codes: %+v, %v", codes, err)
	}
}

func TestBackupRestore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if r := runCLI(t, "", nil, "device", "add", "--data", dir, "--imei", "490154203237518"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if r := runCLI(t, "", nil, "backup", "--data", dir, "--out", out); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	// A change after the backup is undone by the restore.
	if r := runCLI(t, "", nil, "device", "add", "--data", dir, "--imei", "356938035643809"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, "", nil, "restore", "--data", dir, out); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	s := openTestStore(t, dir)
	page, err := s.ListDevices(context.Background(), storage.DeviceFilter{})
	s.Close()
	if err != nil || len(page.Items) != 1 || page.Items[0].IMEI != "490154203237518" {
		t.Fatalf("after restore: %+v, %v", page.Items, err)
	}
	if _, err := os.Stat(filepath.Join(dir, dbFile+".before-restore")); err != nil {
		t.Fatalf("the replaced store was not kept: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, []byte("junk"), 0o600)
	if r := runCLI(t, "", nil, "restore", "--data", dir, junk); r.code != 1 || !strings.Contains(r.stderr, "not a sound Tether store") {
		t.Fatalf("restoring junk: exit %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", nil, "backup", "--data", dir); r.code != 2 {
		t.Fatalf("backup without --out: exit %d", r.code)
	}
}

// syncBuffer is a bytes.Buffer safe to write from the child's copier and
// read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServeDemo starts tether serve --demo and runs the commands it prints,
// as written, in a shell: each must answer 2xx.
func TestServeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server process")
	}
	var out syncBuffer
	srv := startServerOut(t, &out, "--demo")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "# 6.") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	script := out.String()
	if !strings.Contains(script, "TETHER=http://127.0.0.1:") || !strings.Contains(script, "KEY=tak_") {
		t.Fatalf("demo output:\n%s", script)
	}
	storeFile, _ := srv.listening["store"].(string)
	dataDir := filepath.Dir(storeFile)
	if storeFile == "" || !strings.Contains(dataDir, "tether-demo-") {
		t.Fatalf("demo store %q", storeFile)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the demo's commands: install curl")
		}
		t.Skip("no curl to run the demo's commands")
	}
	// Each curl is made to fail on an error status, and the script stops
	// at the first failure.
	checked := strings.ReplaceAll(script, "curl -s ", "curl -s -f -S ")
	got, err := exec.Command("bash", "-c", "set -e\n"+checked).CombinedOutput()
	if err != nil {
		t.Fatalf("the demo script failed: %v\n%s", err, got)
	}
	for _, want := range []string{`"imei":"359881234567899"`, `"username":"walter"`, `"items":[{"id":"ses_`} {
		if !strings.Contains(string(got), want) {
			t.Fatalf("the demo's answers lack %s:\n%s", want, got)
		}
	}
	if n := strings.Count(string(got), `"accessToken":"`); n != 3 {
		t.Fatalf("%d token answers (login, renew, refresh); want 3:\n%s", n, got)
	}
	srv.stop(t)
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("the demo store outlived the server: %v", err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial number, and returns a pool that trusts it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "tether test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestServeTLS serves HTTPS, reloads the certificate on SIGHUP, and keeps
// the old one when the new files are broken.
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server process")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, 1)
	srv := startServer(t, filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	serial := func(pool *x509.CertPool) (int64, error) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true,
		}}
		resp, err := client.Get("https://" + srv.addr + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	if n, err := serial(pool1); err != nil || n != 1 {
		t.Fatalf("HTTPS: serial %d, %v", n, err)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + srv.addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}

	pool2 := writeCert(t, certFile, keyFile, 2)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := serial(pool2)
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: serial %d, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken reload keeps the certificate in use.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n, err := serial(pool2); err != nil || n != 2 {
		t.Fatalf("after a broken reload: serial %d, %v", n, err)
	}
	srv.stop(t)
	if !strings.Contains(srv.stderr.String(), "keeping the one in use") {
		t.Fatalf("the failed reload was not logged:\n%s", srv.stderr)
	}
	r := runCLI(t, "", nil, "serve", "--data", filepath.Join(dir, "d2"), "--tls-cert", certFile)
	if r.code != 1 || !strings.Contains(r.stderr, "go together") {
		t.Fatalf("--tls-cert alone: %d %s", r.code, r.stderr)
	}
}

// TestScopesFlags: --scopes on tether user add and tether apikey create,
// checked as the API checks them.
func TestScopesFlags(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--data", dir, "--username", "north-boss", "--role", "manager", "--scopes", "north, depot-7", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add --scopes: exit %d: %s", r.code, r.stderr)
	}
	r := runCLI(t, "", nil, "apikey", "create", "--data", dir, "--role", "manager", "--scopes", "north", "--scopes", "depot-7")
	if r.code != 0 {
		t.Fatalf("apikey create --scopes: exit %d: %s", r.code, r.stderr)
	}
	secret := strings.TrimSpace(r.stdout)
	for _, bad := range [][]string{
		{"user", "add", "--username", "ada", "--role", "admin", "--scopes", "north"},
		{"apikey", "create", "--role", "admin", "--scopes", "north"},
		{"apikey", "create", "--role", "introspect", "--scopes", "north"},
	} {
		r := runCLI(t, "correct horse\n", nil, append(append(bad[:len(bad):len(bad)], "--data", dir), passwordFlag(bad)...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "scopes") {
			t.Errorf("%v: exit %d: %s", bad, r.code, r.stderr)
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	u, err := s.GetUserByUsername(context.Background(), "north-boss")
	if err != nil || strings.Join(u.Scopes, " ") != "depot-7 north" {
		t.Fatalf("user scopes %v, %v", u.Scopes, err)
	}
	p, err := auth.NewAPIKeys(s).Authenticate(context.Background(), secret)
	if err != nil || strings.Join(p.Scopes, " ") != "depot-7 north" {
		t.Fatalf("key principal %+v, %v", p, err)
	}
}

func passwordFlag(args []string) []string {
	if args[0] == "user" {
		return []string{"--password-stdin"}
	}
	return nil
}
