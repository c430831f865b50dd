package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tether/storage"
)

var clientIDPattern = regexp.MustCompile(`^cli_[0-9A-Z]{26}$`)

// lines splits a command's stdout into its lines.
func lines(out string) []string {
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestClientCommands registers, lists, re-keys and deletes OAuth clients
// with tether client, on the store file, as an admin would before the
// server starts.
func TestClientCommands(t *testing.T) {
	dir := t.TempDir()
	const issuer = "https://tether.example.com"
	ctx := context.Background()

	// A public client: its id alone on stdout, no secret anywhere.
	r := runCLI(t, "", nil, "client", "create", "--data", dir, "--public-url", issuer,
		"--name", "Field app", "--public", "--redirect-uri", "com.example.field:/oauth2redirect", "--redirect-uri", "http://127.0.0.1/callback")
	if r.code != 0 {
		t.Fatalf("create public: exit %d: %s", r.code, r.stderr)
	}
	public := strings.TrimSpace(r.stdout)
	if !clientIDPattern.MatchString(public) || !strings.Contains(r.stderr, "created public client "+public) {
		t.Fatalf("create public: stdout %q, stderr %s; want the client_id alone", r.stdout, r.stderr)
	}

	// A confidential client, as JSON: RFC 7591 client information with the
	// secret, shown this once.
	r = runCLI(t, "", map[string]string{"TETHER_PUBLIC_URL": issuer}, "client", "create", "--data", dir, "--json",
		"--name", "Dispatch", "--redirect-uri", "https://dispatch.example.com/callback",
		"--grant", "authorization_code,refresh_token", "--grant", "client_credentials",
		"--scope", "openid profile", "--id-token-alg", "ES256", "--dpop-bound",
		"--post-logout-redirect-uri", "https://dispatch.example.com/bye")
	if r.code != 0 {
		t.Fatalf("create confidential: exit %d: %s", r.code, r.stderr)
	}
	var doc struct {
		ClientID               string   `json:"client_id"`
		ClientSecret           string   `json:"client_secret"`
		ClientSecretExpiresAt  *int64   `json:"client_secret_expires_at"`
		AuthMethod             string   `json:"token_endpoint_auth_method"`
		GrantTypes             []string `json:"grant_types"`
		Scope                  string   `json:"scope"`
		IDTokenAlg             string   `json:"id_token_signed_response_alg"`
		DPoPBound              bool     `json:"dpop_bound_access_tokens"`
		PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	confidential, secret := doc.ClientID, doc.ClientSecret
	if !clientIDPattern.MatchString(confidential) || len(secret) != 43 || doc.ClientSecretExpiresAt == nil || *doc.ClientSecretExpiresAt != 0 ||
		doc.AuthMethod != "client_secret_basic" || strings.Join(doc.GrantTypes, " ") != "authorization_code refresh_token client_credentials" ||
		doc.Scope != "openid profile" || doc.IDTokenAlg != "ES256" || !doc.DPoPBound || len(doc.PostLogoutRedirectURIs) != 1 {
		t.Fatalf("--json: got %+v", doc)
	}
	if strings.Contains(r.stderr, secret) {
		t.Fatal("the secret is on stderr too")
	}

	// Without --json: the id, then the secret, each on a line of its own.
	r = runCLI(t, "", nil, "client", "create", "--data", dir, "--public-url", issuer, "--name", "Reports",
		"--auth-method", "client_secret_post", "--grant", "client_credentials")
	if out := lines(r.stdout); r.code != 0 || len(out) != 2 || !clientIDPattern.MatchString(out[0]) || len(out[1]) != 43 {
		t.Fatalf("create with a secret: exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}
	reports := lines(r.stdout)[0]

	// private_key_jwt: the keys from --jwks-file; no secret.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
		"x": b64(key.X.FillBytes(make([]byte, 32))), "y": b64(key.Y.FillBytes(make([]byte, 32))),
	}}})
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "", nil, "client", "create", "--data", dir, "--public-url", issuer, "--name", "Batch",
		"--grant", "client_credentials", "--jwks-file", jwksFile)
	if r.code != 0 || len(lines(r.stdout)) != 1 || !strings.Contains(r.stderr, "private_key_jwt") {
		t.Fatalf("create private_key_jwt: exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}

	s := openTestStore(t, dir)
	for id, want := range map[string]struct {
		method string
		secret string
	}{public: {"none", ""}, confidential: {"client_secret_basic", secret}} {
		c, err := s.GetOAuthClient(ctx, id)
		if err != nil || c.TokenEndpointAuthMethod != want.method || c.Public != (want.method == "none") || c.CreatedBy != "cli" {
			t.Fatalf("client %s in the store: %+v, %v", id, c, err)
		}
		if want.secret == "" && len(c.SecretHash) != 0 || want.secret != "" && string(c.SecretHash) != string(sha256Of(want.secret)) {
			t.Fatalf("client %s: the store does not hold the SHA-256 of the secret printed", id)
		}
	}
	c, _ := s.GetOAuthClient(ctx, public)
	if strings.Join(c.GrantTypes, " ") != "authorization_code refresh_token" || len(c.RedirectURIs) != 2 {
		t.Fatalf("public client's defaults: %+v", c)
	}
	events, err := s.ListEvents(ctx, storage.EventFilter{Action: "oauth.client.create"})
	if err != nil || len(events.Items) != 4 || events.Items[0].Actor != "cli" {
		t.Fatalf("audit: %+v, %v", events.Items, err)
	}
	s.Close()

	// list: a table, or the manager API's JSON; never a secret.
	r = runCLI(t, "", nil, "client", "list", "--data", dir, "--public-url", issuer)
	if r.code != 0 || len(lines(r.stdout)) != 5 || !strings.Contains(r.stdout, public) || !strings.Contains(r.stdout, "Dispatch") || strings.Contains(r.stdout, secret) {
		t.Fatalf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", nil, "client", "list", "--data", dir, "--public-url", issuer, "--json")
	var listed struct {
		Items []map[string]any `json:"items"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &listed) != nil || len(listed.Items) != 4 || strings.Contains(r.stdout, "client_secret\"") {
		t.Fatalf("list --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// rotate-secret: a new secret alone on stdout; the old one is gone.
	r = runCLI(t, "", nil, "client", "rotate-secret", confidential, "--data", dir, "--public-url", issuer)
	fresh := strings.TrimSpace(r.stdout)
	if r.code != 0 || len(fresh) != 43 || fresh == secret {
		t.Fatalf("rotate-secret: exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}
	s = openTestStore(t, dir)
	c, err = s.GetOAuthClient(ctx, confidential)
	s.Close()
	if err != nil || string(c.SecretHash) != string(sha256Of(fresh)) {
		t.Fatalf("after rotate-secret the store holds another hash: %v", err)
	}
	if r := runCLI(t, "", nil, "client", "rotate-secret", public, "--data", dir, "--public-url", issuer); r.code != 1 || !strings.Contains(r.stderr, "without a secret") || r.stdout != "" {
		t.Fatalf("rotate-secret of a public client: exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}

	// delete: gone at once; a second delete names what is missing.
	if r := runCLI(t, "", nil, "client", "delete", "--data", dir, "--public-url", issuer, reports); r.code != 0 || !strings.Contains(r.stderr, "deleted client "+reports) {
		t.Fatalf("delete: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", nil, "client", "delete", reports, "--data", dir, "--public-url", issuer); r.code != 1 || !strings.Contains(r.stderr, `no client "`+reports+`"`) {
		t.Fatalf("delete again: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", nil, "client", "list", "--data", dir, "--public-url", issuer); strings.Contains(r.stdout, reports) || len(lines(r.stdout)) != 4 {
		t.Fatalf("list after delete:\n%s", r.stdout)
	}
}

// TestClientCommandErrors: a bad command line exits 2, bad metadata 1 with
// the reason; nothing is written.
func TestClientCommandErrors(t *testing.T) {
	dir := t.TempDir()
	const issuer = "https://tether.example.com"
	// --public-url is required by every client command, and named.
	for _, args := range [][]string{
		{"client", "create", "--name", "x", "--redirect-uri", "https://a.example/cb"},
		{"client", "list"},
		{"client", "delete", "cli_x"},
		{"client", "rotate-secret", "cli_x"},
	} {
		r := runCLI(t, "", nil, append(args, "--data", dir)...)
		if r.code != 2 || !strings.Contains(r.stderr, "--public-url (or TETHER_PUBLIC_URL) is required") {
			t.Errorf("%v without --public-url: exit %d: %s", args, r.code, r.stderr)
		}
	}
	usage := [][]string{
		{"client"},
		{"client", "frobnicate"},
		{"client", "delete", "--public-url", issuer},
		{"client", "rotate-secret", "--public-url", issuer},
		{"client", "create", "--public-url", issuer, "--no-such-flag"},
		{"client", "create", "--public-url", issuer, "--public", "--auth-method", "client_secret_basic", "--redirect-uri", "https://a.example/cb"},
	}
	for _, args := range usage {
		if r := runCLI(t, "", nil, append(args, "--data", dir)...); r.code != 2 {
			t.Errorf("%v: exit %d; want 2 (%s)", args, r.code, r.stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--public-url", "http://tether.example.com", "--redirect-uri", "https://a.example/cb"}, "--public-url"},
		{[]string{"--public-url", issuer}, "invalid_redirect_uri"},
		{[]string{"--public-url", issuer, "--redirect-uri", "http://app.example.com/cb"}, "loopback IP literal"},
		{[]string{"--public-url", issuer, "--redirect-uri", "https://a.example/cb#frag"}, "fragment"},
		{[]string{"--public-url", issuer, "--redirect-uri", "myapp:/cb", "--public"}, "reverse domain"},
		{[]string{"--public-url", issuer, "--grant", "implicit"}, "invalid_client_metadata"},
		{[]string{"--public-url", issuer, "--public", "--grant", "client_credentials"}, "public client"},
		{[]string{"--public-url", issuer, "--grant", "client_credentials", "--auth-method", "private_key_jwt"}, "jwks"},
		{[]string{"--public-url", issuer, "--grant", "client_credentials", "--auth-method", "tls_client_auth"}, "token_endpoint_auth_method"},
		{[]string{"--public-url", issuer, "--grant", "client_credentials", "--scope", "admin"}, `scope "admin"`},
		{[]string{"--public-url", issuer, "--grant", "client_credentials", "--id-token-alg", "HS256"}, "id_token_signed_response_alg"},
		{[]string{"--public-url", issuer, "--grant", "client_credentials", "--jwks-file", filepath.Join(dir, "missing.json")}, "--jwks-file"},
	} {
		r := runCLI(t, "", nil, append([]string{"client", "create", "--data", dir}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %s; want 1 naming %s", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	s := openTestStore(t, dir)
	defer s.Close()
	if cs, err := s.ListOAuthClients(context.Background()); err != nil || len(cs) != 0 {
		t.Fatalf("clients after failed commands: %d, %v", len(cs), err)
	}
}

// postForm posts a form to an OAuth endpoint, with HTTP Basic client
// credentials when id is set, and decodes the JSON answer.
func postForm(t *testing.T, endpoint string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(data, &m)
	return resp.StatusCode, m
}

// TestClientAgainstServer: clients made with tether client get tokens from
// tether serve, a rotated secret replaces the old one, and a store with
// clients refuses to start without --public-url.
func TestClientAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server process")
	}
	dir := t.TempDir()
	const issuer = "https://tether.example.com"
	if r := runCLI(t, "correct horse\n", nil, "user", "add", "--data", dir, "--username", "boss", "--role", "manager", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: %s", r.stderr)
	}
	r := runCLI(t, "", nil, "client", "create", "--data", dir, "--public-url", issuer, "--name", "Field app",
		"--public", "--grant", "password,refresh_token")
	if r.code != 0 {
		t.Fatalf("create public: %s", r.stderr)
	}
	app := strings.TrimSpace(r.stdout)
	r = runCLI(t, "", nil, "client", "create", "--data", dir, "--public-url", issuer, "--name", "Gateway", "--grant", "client_credentials")
	if r.code != 0 {
		t.Fatalf("create confidential: %s", r.stderr)
	}
	gateway, secret := lines(r.stdout)[0], lines(r.stdout)[1]

	// A store with clients and no --public-url: the server does not start,
	// and says which flag it needs.
	if r := runCLI(t, "", nil, "serve", "--data", dir, "--addr", "127.0.0.1:0"); r.code != 1 || !strings.Contains(r.stderr, "pass --public-url (TETHER_PUBLIC_URL)") {
		t.Fatalf("serve without --public-url: exit %d: %s", r.code, r.stderr)
	}

	srv := startServer(t, dir, "--public-url", issuer)
	base := "http://" + srv.addr
	code, disc := request(t, "GET", base+"/.well-known/openid-configuration", "", "")
	if code != 200 || disc["issuer"] != issuer || disc["token_endpoint"] != issuer+"/oauth2/token" {
		t.Fatalf("discovery: %d %v", code, disc)
	}

	// The public client: the password grant, then a refresh.
	code, tok := postForm(t, base+"/oauth2/token", url.Values{
		"grant_type": {"password"}, "client_id": {app}, "username": {"boss"}, "password": {"correct horse"}, "scope": {"openid profile"},
	}, "", "")
	if code != 200 || tok["token_type"] != "Bearer" || tok["refresh_token"] == nil || tok["id_token"] == nil {
		t.Fatalf("password grant: %d %v", code, tok)
	}
	code, again := postForm(t, base+"/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {app}, "refresh_token": {tok["refresh_token"].(string)},
	}, "", "")
	if code != 200 || again["refresh_token"] == tok["refresh_token"] {
		t.Fatalf("refresh: %d %v", code, again)
	}

	// The confidential client: client_credentials, and with its token,
	// introspection of the app's.
	code, cc := postForm(t, base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, gateway, secret)
	if code != 200 || cc["access_token"] == nil {
		t.Fatalf("client_credentials: %d %v", code, cc)
	}
	req, _ := http.NewRequest("POST", base+"/oauth2/introspect", strings.NewReader(url.Values{"token": {again["access_token"].(string)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+cc["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var in map[string]any
	json.NewDecoder(resp.Body).Decode(&in)
	resp.Body.Close()
	if resp.StatusCode != 200 || in["active"] != true || in["client_id"] != app || in["iss"] != issuer || in["username"] != "boss" {
		t.Fatalf("introspection: %d %v", resp.StatusCode, in)
	}
	srv.stop(t)

	// A new secret: the old one fails at the token endpoint, the new works.
	r = runCLI(t, "", nil, "client", "rotate-secret", gateway, "--data", dir, "--public-url", issuer)
	if r.code != 0 {
		t.Fatalf("rotate-secret: %s", r.stderr)
	}
	fresh := strings.TrimSpace(r.stdout)
	srv = startServer(t, dir, "--public-url", issuer)
	base = "http://" + srv.addr
	if code, body := postForm(t, base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, gateway, secret); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("old secret: %d %v; want 401 invalid_client", code, body)
	}
	if code, body := postForm(t, base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, gateway, fresh); code != 200 {
		t.Fatalf("new secret: %d %v", code, body)
	}
	srv.stop(t)

	// Deleted, the app's refresh token stops working at once.
	if r := runCLI(t, "", nil, "client", "delete", app, "--data", dir, "--public-url", issuer); r.code != 0 {
		t.Fatalf("delete: %s", r.stderr)
	}
	srv = startServer(t, dir, "--public-url", issuer)
	base = "http://" + srv.addr
	if code, body := postForm(t, base+"/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {app}, "refresh_token": {again["refresh_token"].(string)},
	}, "", ""); code != 400 || body["error"] != "invalid_client" {
		t.Fatalf("refresh of a deleted client: %d %v; want 400 invalid_client", code, body)
	}
	srv.stop(t)
}
