package api_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"tether/auth"
	"tether/auth/dpop"
	"tether/oauth"
	"tether/storage"
)

// The grants, endpoints and client management of the OAuth 2.0 and
// OpenID Connect provider, each over HTTP against the real app; the
// attacks on them are in oauth_attack_test.go.

const formType = "application/x-www-form-urlencoded"

// post sends a form to an OAuth endpoint; headers as for e.do.
func (e *env) postForm(path string, form url.Values, headers ...string) response {
	e.t.Helper()
	return e.do("POST", path, "", form.Encode(), append([]string{"Content-Type", formType}, headers...)...)
}

// token posts a form to the token endpoint.
func (e *env) tokenReq(form url.Values, headers ...string) response {
	e.t.Helper()
	return e.postForm("/oauth2/token", form, headers...)
}

// basic is the Authorization header of client_secret_basic (RFC 6749
// section 2.3.1: both halves form-encoded).
func basicAuth(id, secret string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))}
}

// form builds url.Values from pairs.
func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// wantOAuthError checks an RFC 6749 section 5.2 error answer: its status,
// a JSON body of error and error_description only (never problem+json),
// and Cache-Control: no-store. It returns the body.
func wantOAuthError(t testing.TB, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d; want %d (%s)\n%s", r.status, status, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q; want application/json\n%s", ct, r.body)
	}
	m := r.json(t)
	if m["error"] != code {
		t.Fatalf("error %v; want %s\n%s", m["error"], code, r.body)
	}
	if d, ok := m["error_description"].(string); !ok || d == "" {
		t.Fatalf("error_description %v; want a description\n%s", m["error_description"], r.body)
	}
	for k := range m {
		if k != "error" && k != "error_description" {
			t.Fatalf("error body member %q; want only error and error_description\n%s", k, r.body)
		}
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q; want no-store", cc)
	}
	return m
}

// wantTokens checks a token answer (RFC 6749 section 5.1) and returns it.
func wantTokens(t testing.TB, r response) map[string]any {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("token answer %d; want 200\n%s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("token answer Cache-Control %q; want no-store", cc)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("token answer Content-Type %q; want application/json", ct)
	}
	m := r.json(t)
	if s, _ := m["access_token"].(string); s == "" {
		t.Fatalf("no access_token: %s", r.body)
	}
	if m["expires_in"] == nil || m["token_type"] == nil {
		t.Fatalf("no expires_in or token_type: %s", r.body)
	}
	return m
}

// jwtParts reads a JWT's header and claims without checking it (its
// signature is checked elsewhere, by verifyJWT).
func jwtParts(t testing.TB, raw string) (header, claims map[string]any) {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		t.Fatalf("not a JWT: %v: %q", err, raw)
	}
	return tok.Header, tok.Claims.(jwt.MapClaims)
}

// verifyJWT checks a token's signature with the server's JWKS as a
// resource server would, with go-oidc's key set (go-jose underneath).
func (e *env) verifyJWT(t testing.TB, raw string) map[string]any {
	t.Helper()
	ks := oidc.NewRemoteKeySet(context.Background(), e.url()+"/.well-known/jwks.json")
	payload, err := ks.VerifySignature(context.Background(), raw)
	if err != nil {
		t.Fatalf("the JWKS does not verify the token: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// sessions returns the store's sessions of an OAuth client ("" for all).
func (e *env) oauthSessions(clientID string) []storage.Session {
	e.t.Helper()
	page, err := e.store.ListSessions(context.Background(), storage.SessionFilter{Limit: storage.MaxPageSize})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []storage.Session
	for _, s := range page.Items {
		if clientID == "" || s.ClientID == clientID {
			out = append(out, s)
		}
	}
	return out
}

// liveSessions counts a client's live sessions.
func (e *env) liveSessions(clientID string) int {
	n := 0
	for _, s := range e.oauthSessions(clientID) {
		if s.Live(time.Now()) {
			n++
		}
	}
	return n
}

func (e *env) userIDOf(username string) string {
	e.t.Helper()
	u, err := e.store.GetUserByUsername(context.Background(), username)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

// payload is the device parameter of a handset.
func devicePayload(imei string) string {
	b, _ := json.Marshal(handset(imei))
	return string(b)
}

const (
	phoneIMEI = "490154203237518"
	otherIMEI = "356938035643809"
	// A redirect URI nothing listens on: signInPage does not follow it.
	cb = "http://127.0.0.1:7777/cb"
)

// authz is an authorization request in progress.
type authz struct {
	verifier string
	state    string
	query    url.Values
}

// authorizeURL is the URL of an authorization request with PKCE S256 for
// client id, extra parameters added (or replacing the defaults).
func (e *env) authorizeURL(id, redirect string, extra url.Values) (string, authz) {
	a := authz{verifier: oauth2.GenerateVerifier(), state: oauth2.GenerateVerifier()[:12]}
	q := url.Values{
		"response_type": {"code"}, "client_id": {id}, "redirect_uri": {redirect}, "scope": {"openid"},
		"state": {a.state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(a.verifier)}, "code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	a.query = q
	return e.url() + "/oauth2/authorize?" + q.Encode(), a
}

// code signs username in at the sign-in page of an authorization request
// and returns the code, with the request's verifier. The redirect must
// carry state and iss (RFC 9207).
func (e *env) signInCode(t testing.TB, id, redirect, username string, extra url.Values) (string, authz) {
	t.Helper()
	u, a := e.authorizeURL(id, redirect, extra)
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("code needs a *testing.T")
	}
	loc := signInPage(tt, u, username, "correct horse")
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
		t.Fatalf("redirected to %s; want %s", got, redirect)
	}
	if q.Get("code") == "" || q.Get("state") != a.state || q.Get("iss") != e.url() {
		t.Fatalf("authorization response %v; want a code, state %q and iss %q", q, a.state, e.url())
	}
	return q.Get("code"), a
}

// redeem is the token request of the authorization_code grant.
func redeemForm(id, code string, a authz, redirect string) url.Values {
	return vals("grant_type", "authorization_code", "code", code, "code_verifier", a.verifier, "redirect_uri", redirect, "client_id", id)
}

// proof makes a DPoP proof for the token endpoint (or another path
// below the issuer).
func (e *env) dpopProof(t testing.TB, k dpop.Key, method, path, token string, o ...dpop.Options) string {
	t.Helper()
	p, err := k.Proof(method, e.url()+path, token, o...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dpopKey(t testing.TB, kind string) dpop.Key {
	t.Helper()
	k, err := dpop.NewKey(kind)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is a provider clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, as a person's browser is for these tests.
func cookieBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func httpGet(t testing.TB, c *http.Client, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func httpPost(t testing.TB, c *http.Client, u string, f url.Values) (int, http.Header, string) {
	t.Helper()
	resp, err := c.PostForm(u, f)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// verifyDevice opens the verification page of userCode in a fresh
// browser and answers it (approve or deny) as username; it returns the
// answer's status and page.
func (e *env) verifyDevice(t testing.TB, userCode, action, username, password string) (int, string) {
	t.Helper()
	b := cookieBrowser()
	status, _, page := httpGet(t, b, e.url()+"/oauth2/device?user_code="+url.QueryEscape(userCode))
	if status != 200 {
		return status, page
	}
	m := formToken.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the verification page has no form: %s", page)
	}
	status, _, page = httpPost(t, b, e.url()+"/oauth2/device", vals("csrf", m[1], "user_code", userCode, "username", username, "password", password, "action", action))
	return status, page
}

// TestOAuthPasswordGrant: the password grant is off for a client not
// allowed it; with it, the device payload as the device parameter admits
// the handset as /v1/auth/login does, with the same errors and the same
// throttle, and the token names the handset (did).
func TestOAuthPasswordGrant(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.AccountFailures = 2 })
	phone, _ := e.fleet()
	field, _ := e.oauthClient(map[string]any{"client_name": "Field app", "token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	codeOnly, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}})

	grant := func(client, user, pw string, extra ...string) response {
		f := vals("grant_type", "password", "client_id", client, "username", user, "password", pw, "device", devicePayload(phoneIMEI), "scope", "openid profile offline_access")
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return e.tokenReq(f)
	}
	wantOAuthError(t, grant(codeOnly, "walter", "correct horse"), 400, "unauthorized_client")
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("a refused grant opened %d sessions", n)
	}

	tok := wantTokens(t, grant(field, "walter", "correct horse"))
	if tok["token_type"] != "Bearer" || tok["refresh_token"] == nil || tok["id_token"] == nil || tok["scope"] != "openid profile offline_access" {
		t.Fatalf("password grant answer: %v", tok)
	}
	claims := e.verifyJWT(t, tok["access_token"].(string))
	if claims["did"] != phone || claims["client_id"] != field || claims["sub"] != e.userIDOf("walter") {
		t.Fatalf("access token did %v, client_id %v, sub %v; want %s, %s, walter", claims["did"], claims["client_id"], claims["sub"], phone, field)
	}
	if _, id := jwtParts(t, tok["id_token"].(string)); id["did"] != phone || id["preferred_username"] != "walter" {
		t.Fatalf("ID token did %v, preferred_username %v; want %s, walter", id["did"], id["preferred_username"], phone)
	}
	if r := e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil); r.status != 200 || r.json(t)["device"].(map[string]any)["id"] != phone {
		t.Fatalf("/v1/auth/me with the grant's token: %d %s", r.status, r.body)
	}

	// Without a handset, a worker is refused as at /v1/auth/login.
	noDevice := e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse"))
	wantOAuthError(t, noDevice, 400, "invalid_request")
	// A malformed payload says what is wrong with it.
	bad := handset("490154203237519")
	badJSON, _ := json.Marshal(bad)
	if d := wantOAuthError(t, grant(field, "walter", "correct horse", "device", string(badJSON)), 400, "invalid_request")["error_description"]; !strings.Contains(fmt.Sprint(d), "imei") {
		t.Fatalf("a bad IMEI: %v; want the description to name it", d)
	}

	// Wrong password and unknown user read the same.
	sessions := len(e.oauthSessions(""))
	wrong := wantOAuthError(t, grant(field, "walter", "wrong password"), 400, "invalid_grant")
	unknown := wantOAuthError(t, grant(field, "nobody", "wrong password"), 400, "invalid_grant")
	if !reflect.DeepEqual(wrong, unknown) {
		t.Fatalf("wrong password %v, unknown user %v; want the same answer", wrong, unknown)
	}
	wantOAuthError(t, grant(field, "walter", "another wrong password"), 400, "invalid_grant")
	// Two failures for walter: the third attempt waits, even with the
	// right password, here and at /v1/auth/login: one throttle.
	throttled := grant(field, "walter", "correct horse")
	if d := wantOAuthError(t, throttled, 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), "too many attempts") || throttled.header.Get("Retry-After") == "" {
		t.Fatalf("a throttled password grant: %v, Retry-After %q; want too many attempts, with Retry-After", d, throttled.header.Get("Retry-After"))
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": handset(phoneIMEI)}), 429, "too_many_attempts")
	if n := len(e.oauthSessions("")); n != sessions {
		t.Fatalf("refused grants opened %d sessions", n-sessions)
	}

	// A suspended handset is refused.
	if r := e.do("DELETE", "/v1/lockouts?account=walter", e.manager, nil); r.status != 200 {
		t.Fatalf("clear the lockout: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/devices/"+phone+"/suspend", e.manager, nil); r.status != 200 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	if d := wantOAuthError(t, grant(field, "walter", "correct horse"), 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), "suspended") {
		t.Fatalf("a suspended handset: %v; want it said", d)
	}
	if n := e.liveSessions(field); n != 0 {
		t.Fatalf("%d live sessions on a suspended handset", n)
	}
}

// TestOAuthRefreshGrant: the refresh_token grant is auth/'s refresh:
// rotation, the same answer to a retry within the grace, the session
// ended by a reuse after it; only for the client the session is for, and
// not at the native endpoint.
func TestOAuthRefreshGrant(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.RefreshReuseGrace = time.Second })
	phone, _ := e.fleet()
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	other, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	noRefresh, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})

	tok := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI), "scope", "openid profile offline_access")))
	rt := tok["refresh_token"].(string)
	refresh := func(client, token string, extra ...string) response {
		return e.tokenReq(vals(append([]string{"grant_type", "refresh_token", "client_id", client, "refresh_token", token}, extra...)...))
	}
	// Another client cannot use it, nor the native API: neither ends
	// the session.
	wantOAuthError(t, refresh(other, rt), 400, "invalid_grant")
	wantProblem(t, e.do("POST", "/v1/auth/refresh", "", map[string]any{"refreshToken": rt, "deviceId": phone}), 401, "token_invalid")
	// A wider scope is refused, and spends nothing.
	wantOAuthError(t, refresh(field, rt, "scope", "openid email"), 400, "invalid_scope")

	next := wantTokens(t, refresh(field, rt, "scope", "openid"))
	if next["refresh_token"] == rt || next["access_token"] == tok["access_token"] {
		t.Fatal("the refresh did not rotate")
	}
	if claims := e.verifyJWT(t, next["access_token"].(string)); claims["did"] != phone || claims["scope"] != "openid profile offline_access" {
		t.Fatalf("refreshed token did %v scope %v", claims["did"], claims["scope"])
	}
	// A retry within the grace: the very same answer.
	if again := wantTokens(t, refresh(field, rt)); again["refresh_token"] != next["refresh_token"] || again["access_token"] != next["access_token"] {
		t.Fatalf("a retry within the grace got other tokens: %v; want %v", again, next)
	}
	time.Sleep(1100 * time.Millisecond)
	if d := wantOAuthError(t, refresh(field, rt), 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), "already used") {
		t.Fatalf("a reuse after the grace: %v; want it said", d)
	}
	wantOAuthError(t, refresh(field, next["refresh_token"].(string)), 400, "invalid_grant")
	if n := e.liveSessions(field); n != 0 {
		t.Fatalf("%d live sessions after a refresh token reuse; want 0", n)
	}

	// A client without the refresh_token grant gets no refresh token.
	if tok := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", noRefresh, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI)))); tok["refresh_token"] != nil {
		t.Fatalf("a refresh token for a client without the grant: %v", tok)
	}
}

// TestOAuthDeviceFlow walks RFC 8628: the device authorization, the
// verification page, the polls (authorization_pending, slow_down), the
// approval and the tokens, once; denial and expiry.
func TestOAuthDeviceFlow(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, oauthOn{Now: clk.Now, Config: oauth.Config{DeviceCodeTTL: 2 * time.Minute}})
	phone, _ := e.fleet()
	rugged, _ := e.oauthClient(map[string]any{"client_name": "Rugged scanner", "token_endpoint_auth_method": "none", "grant_types": []string{oauth.GrantDeviceCode, "refresh_token"}})
	other, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{oauth.GrantDeviceCode}})

	start := func() map[string]any {
		t.Helper()
		r := e.postForm("/oauth2/device_authorization", vals("client_id", rugged, "scope", "openid offline_access", "device", devicePayload(phoneIMEI)))
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("device authorization: %d %v %s", r.status, r.header, r.body)
		}
		return r.json(t)
	}
	poll := func(code string, client ...string) response {
		id := rugged
		if len(client) > 0 {
			id = client[0]
		}
		return e.tokenReq(vals("grant_type", oauth.GrantDeviceCode, "device_code", code, "client_id", id))
	}

	da := start()
	uc, dc := da["user_code"].(string), da["device_code"].(string)
	if len(uc) != 9 || uc[4] != '-' || da["verification_uri"] != e.url()+"/oauth2/device" ||
		da["verification_uri_complete"] != e.url()+"/oauth2/device?user_code="+uc || da["expires_in"] != float64(120) || da["interval"] != float64(5) {
		t.Fatalf("device authorization answer %v", da)
	}
	wantOAuthError(t, poll(dc), 400, "authorization_pending")
	wantOAuthError(t, poll(dc), 400, "slow_down")
	clk.Advance(6 * time.Second)
	// The interval grew by 5 seconds: 6 are still too soon.
	wantOAuthError(t, poll(dc), 400, "slow_down")
	clk.Advance(16 * time.Second)
	wantOAuthError(t, poll(dc), 400, "authorization_pending")
	// Another client's poll with this code: not valid, and no help.
	wantOAuthError(t, poll(dc, other), 400, "invalid_grant")

	// The page says what asks, and on which handset; a wrong password
	// leaves the code waiting.
	status, _, page := httpGet(t, cookieBrowser(), e.url()+"/oauth2/device?user_code="+url.QueryEscape(strings.ToLower(strings.ReplaceAll(uc, "-", " "))))
	if status != 200 || !strings.Contains(page, "Rugged scanner") || !strings.Contains(page, "SM-G991B") || !strings.Contains(page, "7518") {
		t.Fatalf("verification page: %d\n%s", status, page)
	}
	if status, page := e.verifyDevice(t, uc, "approve", "walter", "wrong password"); status != 400 || !strings.Contains(page, "wrong") {
		t.Fatalf("approval with a wrong password: %d\n%s", status, page)
	}
	clk.Advance(16 * time.Second)
	wantOAuthError(t, poll(dc), 400, "authorization_pending")
	if status, page := e.verifyDevice(t, uc, "approve", "walter", "correct horse"); status != 200 || !strings.Contains(page, "Handset signed in") {
		t.Fatalf("approval: %d\n%s", status, page)
	}
	if n := len(e.oauthSessions(rugged)); n != 0 {
		t.Fatalf("the approval opened %d sessions; the poll opens it", n)
	}
	clk.Advance(16 * time.Second)
	tok := wantTokens(t, poll(dc))
	if tok["refresh_token"] == nil || tok["id_token"] == nil || tok["scope"] != "openid offline_access" {
		t.Fatalf("device grant tokens %v", tok)
	}
	if claims := e.verifyJWT(t, tok["access_token"].(string)); claims["did"] != phone || claims["client_id"] != rugged || claims["sub"] != e.userIDOf("walter") {
		t.Fatalf("device grant token claims %v", claims)
	}
	clk.Advance(16 * time.Second)
	wantOAuthError(t, poll(dc), 400, "invalid_grant")
	if n := len(e.oauthSessions(rugged)); n != 1 {
		t.Fatalf("%d sessions after the device flow; want 1", n)
	}
	// The code is no longer on offer.
	if status, _ := e.verifyDevice(t, uc, "approve", "walter", "correct horse"); status != 404 {
		t.Fatalf("the page for a used code: %d; want 404", status)
	}

	// Denied: access_denied, and the page no longer offers it.
	da = start()
	if status, page := e.verifyDevice(t, da["user_code"].(string), "deny", "", ""); status != 200 || !strings.Contains(page, "denied") {
		t.Fatalf("deny: %d\n%s", status, page)
	}
	wantOAuthError(t, poll(da["device_code"].(string)), 400, "access_denied")
	if status, _ := e.verifyDevice(t, da["user_code"].(string), "approve", "walter", "correct horse"); status != 404 {
		t.Fatalf("the page for a denied code: %d; want 404", status)
	}

	// Expired: expired_token, and the page no longer offers it.
	da = start()
	clk.Advance(2*time.Minute + time.Second)
	wantOAuthError(t, poll(da["device_code"].(string)), 400, "expired_token")
	if status, _ := e.verifyDevice(t, da["user_code"].(string), "approve", "walter", "correct horse"); status != 404 {
		t.Fatalf("the page for an expired code: %d; want 404", status)
	}
	wantOAuthError(t, poll("no-such-code"), 400, "invalid_grant")
	if n := len(e.oauthSessions(rugged)); n != 1 {
		t.Fatalf("%d sessions; want the one of the approved code", n)
	}
}

// TestOAuthDeviceFlowHandsetRules: the approval admits the handset for
// the person approving, as a login does: one assigned to someone else is
// refused there; an approval stands while the handset is suspended, and
// gives tokens once it is reinstated.
func TestOAuthDeviceFlowHandsetRules(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, oauthOn{Now: clk.Now})
	phone, _ := e.fleet()
	rugged, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{oauth.GrantDeviceCode}})
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"assignedUsers": []string{e.userIDOf("maria")}}); r.status != 200 {
		t.Fatalf("assign: %d %s", r.status, r.body)
	}
	r := e.postForm("/oauth2/device_authorization", vals("client_id", rugged, "device", devicePayload(phoneIMEI)))
	da := r.json(t)
	uc, dc := da["user_code"].(string), da["device_code"].(string)
	poll := func() response {
		clk.Advance(6 * time.Second)
		return e.tokenReq(vals("grant_type", oauth.GrantDeviceCode, "device_code", dc, "client_id", rugged))
	}
	if status, page := e.verifyDevice(t, uc, "approve", "walter", "correct horse"); status != 403 || !strings.Contains(page, "not assigned") {
		t.Fatalf("walter approving maria's handset: %d\n%s", status, page)
	}
	wantOAuthError(t, poll(), 400, "authorization_pending")

	// Maria may; then the handset is suspended before the poll.
	if status, page := e.verifyDevice(t, uc, "approve", "maria", "correct horse"); status != 200 {
		t.Fatalf("maria approving her handset: %d\n%s", status, page)
	}
	e.do("POST", "/v1/devices/"+phone+"/suspend", e.manager, nil)
	if d := wantOAuthError(t, poll(), 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), "suspended") {
		t.Fatalf("a poll for a suspended handset: %v", d)
	}
	if n := len(e.oauthSessions(rugged)); n != 0 {
		t.Fatalf("a suspended handset got %d sessions", n)
	}
	e.do("POST", "/v1/devices/"+phone+"/reinstate", e.manager, nil)
	tok := wantTokens(t, poll())
	if claims := e.verifyJWT(t, tok["access_token"].(string)); claims["did"] != phone || claims["sub"] != e.userIDOf("maria") {
		t.Fatalf("tokens %v; want maria's on %s", claims, phone)
	}
}

// TestOAuthClientCredentials: a confidential client's own token, from
// x/oauth2's clientcredentials: RFC 9068, naming the client and no
// session; introspection takes it as a Bearer; the native API does not;
// it dies with its client.
func TestOAuthClientCredentials(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	ctx := context.Background()
	svc, secret := e.oauthClient(map[string]any{"client_name": "Gateway", "grant_types": []string{"client_credentials"}})
	audit, auditSecret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_post"})
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})

	cc := clientcredentials.Config{ClientID: svc, ClientSecret: secret, TokenURL: e.url() + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken != "" || tok.Extra("id_token") != nil {
		t.Fatalf("client_credentials token %+v", tok)
	}
	header, _ := jwtParts(t, tok.AccessToken)
	claims := e.verifyJWT(t, tok.AccessToken)
	if header["typ"] != "at+jwt" || claims["sub"] != svc || claims["client_id"] != svc || claims["iss"] != e.url() ||
		claims["sid"] != nil || claims["jti"] == nil || claims["exp"] == nil {
		t.Fatalf("client_credentials token header %v claims %v", header, claims)
	}
	// The form's method works too, and a scope is refused.
	post := clientcredentials.Config{ClientID: audit, ClientSecret: auditSecret, TokenURL: e.url() + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}
	if _, err := post.Token(ctx); err != nil {
		t.Fatalf("client_credentials with client_secret_post: %v", err)
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", "client_credentials", "scope", "openid"), basicAuth(svc, secret)...), 400, "invalid_scope")

	// The native API does not take it, nor userinfo.
	wantProblem(t, e.do("GET", "/v1/auth/me", tok.AccessToken, nil), 401, "token_invalid")
	wantProblem(t, e.do("GET", "/v1/devices", tok.AccessToken, nil), 401, "token_invalid")
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", tok.AccessToken, nil), 401, "invalid_token")

	// Introspection takes it as a Bearer: of itself, and of a person's token.
	in := e.postForm("/oauth2/introspect", vals("token", tok.AccessToken), "Authorization", "Bearer "+tok.AccessToken).json(t)
	if in["active"] != true || in["client_id"] != svc || in["sub"] != svc || in["token_type"] != "Bearer" || in["username"] != nil || in["sid"] != nil {
		t.Fatalf("introspection of the client's token: %v", in)
	}
	user := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI))))
	in = e.postForm("/oauth2/introspect", vals("token", user["access_token"].(string)), "Authorization", "Bearer "+tok.AccessToken).json(t)
	if in["active"] != true || in["username"] != "walter" || in["client_id"] != field {
		t.Fatalf("introspection of walter's token with the client's token: %v", in)
	}

	// Deleted, the client's token is inactive and opens nothing.
	if r := e.do("DELETE", "/v1/oauth/clients/"+svc, e.admin, nil); r.status != 204 {
		t.Fatalf("delete the client: %d %s", r.status, r.body)
	}
	r := e.postForm("/oauth2/introspect", vals("token", tok.AccessToken, "client_id", audit, "client_secret", auditSecret))
	if r.status != 200 || string(r.body) != `{"active":false}` {
		t.Fatalf("introspection of a deleted client's token: %d %s; want {\"active\":false}", r.status, r.body)
	}
	wantOAuthError(t, e.postForm("/oauth2/introspect", vals("token", user["access_token"].(string)), "Authorization", "Bearer "+tok.AccessToken), 401, "invalid_token")
	if _, err := cc.Token(ctx); err == nil {
		t.Fatal("a deleted client still gets tokens")
	}
}

// TestOAuthIntrospection: RFC 7662 for confidential clients by either
// secret method; a public client may not ask; the answers, active with
// the token's claims (cnf for a bound one) or inactive with nothing more.
func TestOAuthIntrospection(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	rsBasic, basicSecret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}})
	rsPost, postSecret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_post"})
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})

	tok := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI), "scope", "openid profile")))
	access := tok["access_token"].(string)
	byBasic := e.postForm("/oauth2/introspect", vals("token", access, "token_type_hint", "access_token"), basicAuth(rsBasic, basicSecret)...)
	byPost := e.postForm("/oauth2/introspect", vals("token", access, "client_id", rsPost, "client_secret", postSecret))
	for name, r := range map[string]response{"client_secret_basic": byBasic, "client_secret_post": byPost} {
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %v %s", name, r.status, r.header, r.body)
		}
		in := r.json(t)
		want := map[string]any{
			"active": true, "client_id": field, "scope": "openid profile", "username": "walter", "token_type": "Bearer",
			"sub": e.userIDOf("walter"), "iss": e.url(), "did": phone, "role": "worker",
		}
		for k, v := range want {
			if in[k] != v {
				t.Errorf("%s: %s = %v; want %v", name, k, in[k], v)
			}
		}
		for _, k := range []string{"exp", "iat", "jti", "sid", "aud"} {
			if in[k] == nil {
				t.Errorf("%s: no %s in %v", name, k, in)
			}
		}
	}

	// A public client may not ask; nor a wrong secret.
	wantOAuthError(t, e.postForm("/oauth2/introspect", vals("token", access, "client_id", field)), 400, "invalid_client")
	wrong := e.postForm("/oauth2/introspect", vals("token", access), basicAuth(rsBasic, "wrong")...)
	wantOAuthError(t, wrong, 401, "invalid_client")
	if !strings.HasPrefix(wrong.header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("invalid_client after Basic: WWW-Authenticate %q; want a Basic challenge", wrong.header.Get("WWW-Authenticate"))
	}
	wantOAuthError(t, e.postForm("/oauth2/introspect", vals(), basicAuth(rsBasic, basicSecret)...), 400, "invalid_request")

	// Inactive: nothing but active false.
	for name, token := range map[string]string{"garbage": "not-a-token", "a refresh token": tok["refresh_token"].(string), "an API key": e.admin} {
		r := e.postForm("/oauth2/introspect", vals("token", token), basicAuth(rsBasic, basicSecret)...)
		if r.status != 200 || string(r.body) != `{"active":false}` {
			t.Errorf("introspection of %s: %d %s; want {\"active\":false}", name, r.status, r.body)
		}
	}

	// A DPoP-bound token: its key, for the resource server to check.
	k := dpopKey(t, "EC")
	bound := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI)),
		"DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")))
	in := e.postForm("/oauth2/introspect", vals("token", bound["access_token"].(string)), basicAuth(rsBasic, basicSecret)...).json(t)
	if cnf, _ := in["cnf"].(map[string]any); in["active"] != true || in["token_type"] != "DPoP" || cnf["jkt"] != k.Thumbprint() {
		t.Fatalf("introspection of a bound token: %v; want token_type DPoP and cnf.jkt %s", in, k.Thumbprint())
	}
	// The bound token's login replaced the first session (one per
	// handset): the first token is inactive.
	r := e.postForm("/oauth2/introspect", vals("token", access), basicAuth(rsBasic, basicSecret)...)
	if string(r.body) != `{"active":false}` {
		t.Fatalf("introspection of a replaced session's token: %s", r.body)
	}
}

// TestOAuthRevocation: RFC 7009. A client's refresh or access token ends
// its session; another client's token, or one that is no token, changes
// nothing and is answered 200 all the same.
func TestOAuthRevocation(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	other, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	rs, rsSecret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}})
	login := func() map[string]any {
		// maria, a manager, signs in without a handset: each grant is a
		// session of its own.
		return wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "maria", "password", "correct horse")))
	}
	active := func(token string) bool {
		r := e.postForm("/oauth2/introspect", vals("token", token), basicAuth(rs, rsSecret)...)
		return r.json(t)["active"] == true
	}
	revoke := func(client, token string, hint ...string) {
		t.Helper()
		f := vals("client_id", client, "token", token)
		if len(hint) > 0 {
			f.Set("token_type_hint", hint[0])
		}
		r := e.postForm("/oauth2/revoke", f)
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("revoke: %d %v %q; want 200 with no-store", r.status, r.header, r.body)
		}
	}

	byRefresh := login()
	revoke(field, byRefresh["refresh_token"].(string), "refresh_token")
	if active(byRefresh["access_token"].(string)) {
		t.Fatal("the access token is active after its refresh token was revoked")
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "client_id", field, "refresh_token", byRefresh["refresh_token"].(string))), 400, "invalid_grant")

	byAccess := login()
	revoke(field, byAccess["access_token"].(string))
	if active(byAccess["access_token"].(string)) {
		t.Fatal("the access token is active after it was revoked")
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "client_id", field, "refresh_token", byAccess["refresh_token"].(string))), 400, "invalid_grant")

	// Another client's token, or no token at all: 200, nothing changes.
	kept := login()
	revoke(other, kept["access_token"].(string))
	revoke(other, kept["refresh_token"].(string))
	revoke(field, "no-such-token")
	revoke(field, e.admin)
	if !active(kept["access_token"].(string)) {
		t.Fatal("another client's revocation ended the session")
	}
	wantTokens(t, e.tokenReq(vals("grant_type", "refresh_token", "client_id", field, "refresh_token", kept["refresh_token"].(string))))
	wantOAuthError(t, e.postForm("/oauth2/revoke", vals("client_id", field)), 400, "invalid_request")
	wantOAuthError(t, e.postForm("/oauth2/revoke", vals("token", "x"), basicAuth(rs, "wrong")...), 401, "invalid_client")
	if n := e.liveSessions(field); n != 1 {
		t.Fatalf("%d live sessions; want the one kept", n)
	}
}

// clientKeyPair is a private_key_jwt client's key, made in the test.
type clientKeyPair struct {
	signer crypto.Signer
	method jwt.SigningMethod
	kid    string
	jwk    map[string]any
}

func rsaClientKey(t *testing.T) clientKeyPair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kid := "rsa-" + oauth2.GenerateVerifier()[:6]
	return clientKeyPair{signer: k, method: jwt.SigningMethodRS256, kid: kid, jwk: map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}}
}

func ecClientKey(t *testing.T) clientKeyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := "ec-" + oauth2.GenerateVerifier()[:6]
	pad := func(b []byte) string {
		return base64.RawURLEncoding.EncodeToString(append(make([]byte, 32-len(b)), b...))
	}
	return clientKeyPair{signer: k, method: jwt.SigningMethodES256, kid: kid, jwk: map[string]any{
		"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": pad(k.X.Bytes()), "y": pad(k.Y.Bytes()),
	}}
}

// assertion signs a client assertion (RFC 7523) for client id; change
// edits the claims before they are signed.
func (k clientKeyPair) assertion(t *testing.T, id, aud string, change func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"iss": id, "sub": id, "aud": aud, "jti": oauth2.GenerateVerifier(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	if change != nil {
		change(claims)
	}
	tok := jwt.NewWithClaims(k.method, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOAuthPrivateKeyJWT: private_key_jwt with an RSA and a P-256 key
// made here, the assertions signed with golang-jwt: aud the issuer or
// the endpoint; a replayed jti, an expired or overlong assertion, a wrong
// key or audience, iss differing from sub are refused.
func TestOAuthPrivateKeyJWT(t *testing.T) {
	e := newEnv(t, oauthOn{})
	issuer := e.url()
	tokenURL := issuer + "/oauth2/token"
	for _, kind := range []string{"RSA", "EC"} {
		t.Run(kind, func(t *testing.T) {
			e := e.withT(t)
			var key, stranger clientKeyPair
			if kind == "RSA" {
				key, stranger = rsaClientKey(t), rsaClientKey(t)
				stranger.kid = key.kid
			} else {
				key, stranger = ecClientKey(t), ecClientKey(t)
				stranger.kid = key.kid
			}
			id, secret := e.oauthClient(map[string]any{
				"token_endpoint_auth_method": "private_key_jwt", "grant_types": []string{"client_credentials"},
				"jwks": map[string]any{"keys": []any{key.jwk}},
			})
			if secret != "" {
				t.Fatal("a private_key_jwt client got a secret")
			}
			with := func(assertion string, extra ...string) response {
				return e.tokenReq(vals(append([]string{"grant_type", "client_credentials", "client_assertion_type", oauth.AssertionType, "client_assertion", assertion}, extra...)...))
			}
			for _, aud := range []string{issuer, tokenURL} {
				tok := wantTokens(t, with(key.assertion(t, id, aud, nil)))
				if claims := e.verifyJWT(t, tok["access_token"].(string)); claims["client_id"] != id {
					t.Fatalf("aud %s: token of %v; want %s", aud, claims["client_id"], id)
				}
			}
			// client_id may come along, if it is the assertion's.
			wantTokens(t, with(key.assertion(t, id, tokenURL, nil), "client_id", id))

			used := key.assertion(t, id, tokenURL, nil)
			wantTokens(t, with(used))
			for name, a := range map[string]string{
				"replayed": used,
				"expired": key.assertion(t, id, tokenURL, func(c jwt.MapClaims) {
					c["exp"], c["iat"] = time.Now().Add(-time.Minute).Unix(), time.Now().Add(-2*time.Minute).Unix()
				}),
				"no exp":           key.assertion(t, id, tokenURL, func(c jwt.MapClaims) { delete(c, "exp") }),
				"overlong":         key.assertion(t, id, tokenURL, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() }),
				"no jti":           key.assertion(t, id, tokenURL, func(c jwt.MapClaims) { delete(c, "jti") }),
				"another audience": key.assertion(t, id, issuer+"/oauth2/revoke", nil),
				"a foreign issuer": key.assertion(t, id, "https://other.example", nil),
				"iss not sub":      key.assertion(t, id, tokenURL, func(c jwt.MapClaims) { c["sub"] = "cli_other" }),
				"wrong key":        stranger.assertion(t, id, tokenURL, nil),
				"unsigned":         strings.Join(strings.Split(used, ".")[:2], ".") + ".",
			} {
				r := with(a)
				if r.status != 401 && r.status != 400 {
					t.Errorf("%s assertion: %d %s; want it refused", name, r.status, r.body)
					continue
				}
				wantOAuthError(t, r, r.status, r.json(t)["error"].(string))
				if r.json(t)["error"] != "invalid_client" && r.json(t)["error"] != "invalid_request" {
					t.Errorf("%s assertion: %s; want invalid_client", name, r.body)
				}
			}
			// A private_key_jwt client cannot fall back to a secret.
			wantOAuthError(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, "guess")...), 401, "invalid_client")
			wantOAuthError(t, e.tokenReq(vals("grant_type", "client_credentials", "client_id", id)), 400, "invalid_client")
			// The introspection endpoint takes an assertion made for it.
			r := e.postForm("/oauth2/introspect", vals("token", "x", "client_assertion_type", oauth.AssertionType, "client_assertion", key.assertion(t, id, issuer+"/oauth2/introspect", nil)))
			if r.status != 200 || string(r.body) != `{"active":false}` {
				t.Fatalf("introspection with an assertion for its endpoint: %d %s", r.status, r.body)
			}
		})
	}
}

// TestOAuthDynamicRegistration: RFC 7591 registration for an admin key
// only; RFC 7592 read, update and delete with the registration access
// token, which opens its own client and no other.
func TestOAuthDynamicRegistration(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, oauthOn{}, clk)
	meta := map[string]any{"client_name": "Dispatch", "redirect_uris": []string{"https://dispatch.example.com/cb"}, "grant_types": []string{"authorization_code", "refresh_token"}}
	count := func() int {
		cs, err := e.store.ListOAuthClients(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	wantOAuthError(t, e.do("POST", "/oauth2/register", "", meta), 401, "invalid_token")
	wantOAuthError(t, e.do("POST", "/oauth2/register", e.manager, meta), 403, "insufficient_scope")
	wantOAuthError(t, e.do("POST", "/oauth2/register", e.introspect, meta), 403, "insufficient_scope")
	if n := count(); n != 0 {
		t.Fatalf("refused registrations made %d clients", n)
	}

	r := e.do("POST", "/oauth2/register", e.admin, meta)
	if r.status != 201 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("register: %d %v %s", r.status, r.header, r.body)
	}
	c := r.json(t)
	id, rat, uri := c["client_id"].(string), c["registration_access_token"].(string), c["registration_client_uri"].(string)
	if c["client_secret"] == "" || c["client_secret_expires_at"] != float64(0) || c["client_id_issued_at"] == nil || uri != e.url()+"/oauth2/register/"+id ||
		c["token_endpoint_auth_method"] != "client_secret_basic" || !reflect.DeepEqual(c["response_types"], []any{"code"}) {
		t.Fatalf("registration answer %s", r.body)
	}
	// An admin's bearer token does too; a manager's does not.
	ada := e.enrolledUser(t, clk, "ada", "admin")
	second := e.do("POST", "/oauth2/register", ada.access(), meta).json(t)
	if second["registration_access_token"] == nil || second["created_by"] == nil {
		t.Fatalf("registration with an admin's token: %v", second)
	}
	e.do("POST", "/v1/users", e.admin, map[string]any{"username": "mona", "password": "correct horse", "role": "manager"})
	login := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "mona", "password": "correct horse"})
	wantOAuthError(t, e.do("POST", "/oauth2/register", login.json(t)["accessToken"].(string), meta), 403, "insufficient_scope")
	path := strings.TrimPrefix(uri, e.url())

	// Read: its own token only.
	read := e.do("GET", path, rat, nil)
	if read.status != 200 || read.json(t)["client_id"] != id || read.json(t)["client_secret"] != nil || read.json(t)["registration_access_token"] != nil {
		t.Fatalf("read: %d %s", read.status, read.body)
	}
	wantOAuthError(t, e.do("GET", path, second["registration_access_token"].(string), nil), 401, "invalid_token")
	wantOAuthError(t, e.do("GET", path, "", nil), 401, "invalid_token")
	wantOAuthError(t, e.do("GET", path, e.admin, nil), 401, "invalid_token")
	wantOAuthError(t, e.do("GET", "/oauth2/register/cli_nobody", rat, nil), 401, "invalid_token")

	// Update: the whole registration; the secret stays.
	up := map[string]any{"client_id": id, "client_name": "Dispatch 2", "redirect_uris": []string{"https://dispatch.example.com/cb2"}, "grant_types": []string{"authorization_code"}}
	wantOAuthError(t, e.do("PUT", path, second["registration_access_token"].(string), up), 401, "invalid_token")
	wantOAuthError(t, e.do("PUT", path, rat, map[string]any{"client_id": second["client_id"], "redirect_uris": []string{"https://x.example/cb"}}), 400, "invalid_client_metadata")
	wantOAuthError(t, e.do("PUT", path, rat, map[string]any{"client_id": id, "redirect_uris": []string{"http://x.example/cb"}}), 400, "invalid_redirect_uri")
	r = e.do("PUT", path, rat, up)
	if u := r.json(t); r.status != 200 || u["client_name"] != "Dispatch 2" || u["client_secret"] != nil || !reflect.DeepEqual(u["redirect_uris"], []any{"https://dispatch.example.com/cb2"}) {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if r := e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, c["client_secret"].(string))...); r.json(t)["error"] != "unauthorized_client" {
		t.Fatalf("the kept secret: %d %s; want it to authenticate (unauthorized_client for the grant)", r.status, r.body)
	}
	// Another client's token cannot delete it; its own can.
	wantOAuthError(t, e.do("DELETE", path, second["registration_access_token"].(string), nil), 401, "invalid_token")
	if r := e.do("DELETE", path, rat, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantOAuthError(t, e.do("GET", path, rat, nil), 401, "invalid_token")
	if n := count(); n != 1 {
		t.Fatalf("%d clients; want the second one", n)
	}
	// A client made by the manager API has no registration access token.
	mid, _ := e.oauthClient(meta)
	if got := e.do("GET", "/v1/oauth/clients/"+mid, e.admin, nil).json(t); got["registration_client_uri"] != nil {
		t.Fatalf("a managed client with a registration URI: %v", got)
	}
}

// TestOAuthRegistrationMetadata: every metadata refusal is
// invalid_redirect_uri or invalid_client_metadata (RFC 7591 section 3.2.2),
// and writes nothing; metadata the server does not know is ignored.
func TestOAuthRegistrationMetadata(t *testing.T) {
	e := newEnv(t, oauthOn{})
	rsaPub := rsaClientKey(t).jwk
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallJWK := map[string]any{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(small.N.Bytes()), "e": "AQAB"}
	withD := ecClientKey(t).jwk
	withD["d"] = "AAAA"
	code := func(uris ...string) map[string]any { return map[string]any{"redirect_uris": uris} }
	for _, c := range []struct {
		name string
		meta any
		want string
	}{
		{"no redirect URI", map[string]any{"grant_types": []string{"authorization_code"}}, "invalid_redirect_uri"},
		{"http to another host", code("http://app.example.com/cb"), "invalid_redirect_uri"},
		{"http to localhost", code("http://localhost:8080/cb"), "invalid_redirect_uri"},
		{"a fragment", code("https://app.example.com/cb#x"), "invalid_redirect_uri"},
		{"an empty fragment", code("https://app.example.com/cb#"), "invalid_redirect_uri"},
		{"user information", code("https://user@app.example.com/cb"), "invalid_redirect_uri"},
		{"relative", code("/cb"), "invalid_redirect_uri"},
		{"javascript", code("javascript:alert(1)"), "invalid_redirect_uri"},
		{"data", code("data:text/html,hi"), "invalid_redirect_uri"},
		{"a scheme that is no reverse domain", code("myapp:/cb"), "invalid_redirect_uri"},
		{"https without a host", code("https:///cb"), "invalid_redirect_uri"},
		{"a space", code("https://app.example.com/a b"), "invalid_redirect_uri"},
		{"too long", code("https://app.example.com/" + strings.Repeat("a", 2100)), "invalid_redirect_uri"},
		{"too many", code(slices.Repeat([]string{"https://app.example.com/cb"}, 21)...), "invalid_redirect_uri"},
		{"a bad post-logout URI", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "post_logout_redirect_uris": []string{"http://app.example.com/out"}}, "invalid_redirect_uri"},
		{"an unknown auth method", map[string]any{"token_endpoint_auth_method": "tls_client_auth", "grant_types": []string{"client_credentials"}}, "invalid_client_metadata"},
		{"an unknown grant", map[string]any{"grant_types": []string{"implicit"}}, "invalid_client_metadata"},
		{"a public client_credentials client", map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"client_credentials"}}, "invalid_client_metadata"},
		{"response type token", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "response_types": []string{"token"}}, "invalid_client_metadata"},
		{"response type code without the grant", map[string]any{"grant_types": []string{"password"}, "response_types": []string{"code"}}, "invalid_client_metadata"},
		{"an unknown scope", map[string]any{"grant_types": []string{"password"}, "scope": "openid admin"}, "invalid_client_metadata"},
		{"an HMAC ID token", map[string]any{"grant_types": []string{"password"}, "id_token_signed_response_alg": "HS256"}, "invalid_client_metadata"},
		{"unsigned ID tokens", map[string]any{"grant_types": []string{"password"}, "id_token_signed_response_alg": "none"}, "invalid_client_metadata"},
		{"jwks_uri", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example.com/jwks"}, "invalid_client_metadata"},
		{"private_key_jwt without keys", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		{"keys for a secret client", map[string]any{"grant_types": []string{"client_credentials"}, "jwks": map[string]any{"keys": []any{rsaPub}}}, "invalid_client_metadata"},
		{"a private key", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": map[string]any{"keys": []any{withD}}}, "invalid_client_metadata"},
		{"a small RSA key", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": map[string]any{"keys": []any{smallJWK}}}, "invalid_client_metadata"},
		{"no usable key", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": "AAAA"}}}}, "invalid_client_metadata"},
		{"jwks not a set", map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": []any{rsaPub}}, "invalid_client_metadata"},
		{"an unknown application type", map[string]any{"grant_types": []string{"password"}, "application_type": "desktop"}, "invalid_client_metadata"},
		{"a long name", map[string]any{"grant_types": []string{"password"}, "client_name": strings.Repeat("n", 129)}, "invalid_client_metadata"},
		{"a control character in the name", map[string]any{"grant_types": []string{"password"}, "client_name": "a\x07b"}, "invalid_client_metadata"},
		{"redirect_uris not a list", map[string]any{"redirect_uris": "https://app.example.com/cb"}, "invalid_client_metadata"},
		{"grant_types not a list", map[string]any{"grant_types": "password"}, "invalid_client_metadata"},
		{"a number for a name", map[string]any{"grant_types": []string{"password"}, "client_name": 7}, "invalid_client_metadata"},
		{"not an object", []any{"https://app.example.com/cb"}, "invalid_client_metadata"},
	} {
		r := e.do("POST", "/oauth2/register", e.admin, c.meta)
		if r.status != 400 {
			t.Errorf("%s: %d %s; want 400 %s", c.name, r.status, r.body, c.want)
			continue
		}
		if got := r.json(t)["error"]; got != c.want {
			t.Errorf("%s: %v (%s); want %s", c.name, got, r.json(t)["error_description"], c.want)
		}
		wantOAuthError(t, r, 400, c.want)
	}
	if cs, _ := e.store.ListOAuthClients(context.Background()); len(cs) != 0 {
		t.Fatalf("refused registrations made %d clients", len(cs))
	}
	// RFC 7591 section 2: metadata the server does not understand is
	// ignored, not refused.
	r := e.do("POST", "/oauth2/register", e.admin, map[string]any{
		"client_name": "Kiosk", "redirect_uris": []string{"com.example.kiosk:/oauth", "http://127.0.0.1/cb", "https://kiosk.example.com/cb"},
		"token_endpoint_auth_method": "none", "application_type": "native",
		"logo_uri": "https://kiosk.example.com/logo.png", "contacts": []string{"ops@example.com"}, "software_id": "kiosk", "software_version": "1.0",
	})
	if r.status != 201 {
		t.Fatalf("a registration with metadata the server does not know: %d %s; want 201", r.status, r.body)
	}
	if c := r.json(t); c["client_secret"] != nil || c["client_secret_expires_at"] != nil || c["logo_uri"] != nil {
		t.Fatalf("public client registration: %s", r.body)
	}
}

// TestOAuthManagerClients: /v1/oauth/clients is an admin's; a secret
// rotated stops the old one at once; a deleted client is gone.
func TestOAuthManagerClients(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	meta := map[string]any{"client_name": "Gateway", "grant_types": []string{"client_credentials"}}
	wantProblem(t, e.do("POST", "/v1/oauth/clients", e.manager, meta), 403, "forbidden")
	wantProblem(t, e.do("GET", "/v1/oauth/clients", e.manager, nil), 403, "forbidden")
	maria := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"}).json(t)["accessToken"].(string)
	wantProblem(t, e.do("GET", "/v1/oauth/clients", maria, nil), 403, "forbidden")
	wantProblem(t, e.do("GET", "/v1/oauth/clients", "", nil), 401, "token_invalid")

	r := e.do("POST", "/v1/oauth/clients", e.admin, meta)
	if r.status != 201 || r.header.Get("Location") == "" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	c := r.json(t)
	id, old := c["client_id"].(string), c["client_secret"].(string)
	if c["created_by"] == nil || c["registration_access_token"] != nil {
		t.Fatalf("created client: %s", r.body)
	}
	list := e.do("GET", "/v1/oauth/clients", e.admin, nil)
	if items := list.json(t)["items"].([]any); list.status != 200 || len(items) != 1 || strings.Contains(string(list.body), old) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	wantProblem(t, e.do("POST", "/v1/oauth/clients/"+id+"/secret", e.manager, nil), 403, "forbidden")
	wantTokens(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, old)...))

	r = e.do("POST", "/v1/oauth/clients/"+id+"/secret", e.admin, nil)
	fresh, _ := r.json(t)["client_secret"].(string)
	if r.status != 200 || fresh == "" || fresh == old {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, old)...), 401, "invalid_client")
	wantTokens(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, fresh)...))

	// A public client has no secret to rotate.
	pub, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})
	wantProblem(t, e.do("POST", "/v1/oauth/clients/"+pub+"/secret", e.admin, nil), 409, "conflict")
	// Metadata refusals are problems here, as everywhere under /v1.
	wantProblem(t, e.do("PUT", "/v1/oauth/clients/"+id, e.admin, map[string]any{"grant_types": []string{"implicit"}}), 400, "invalid_request")

	wantProblem(t, e.do("DELETE", "/v1/oauth/clients/"+id, e.manager, nil), 403, "forbidden")
	if r := e.do("DELETE", "/v1/oauth/clients/"+id, e.admin, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do("GET", "/v1/oauth/clients/"+id, e.admin, nil), 404, "not_found")
	wantProblem(t, e.do("DELETE", "/v1/oauth/clients/"+id, e.admin, nil), 404, "not_found")
	wantOAuthError(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, fresh)...), 401, "invalid_client")
}

// TestOAuthDiscovery: the two well-known documents are the same; every
// endpoint they list is served; every grant they list is one the token
// endpoint knows.
func TestOAuthDiscovery(t *testing.T) {
	e := newEnv(t, oauthOn{})
	base := e.url()
	var docs [2]map[string]any
	for i, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
		if err := json.NewDecoder(resp.Body).Decode(&docs[i]); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if !reflect.DeepEqual(docs[0], docs[1]) {
		t.Fatalf("the two discovery documents differ:\n%v\n%v", docs[0], docs[1])
	}
	d := docs[0]
	if d["issuer"] != base {
		t.Fatalf("issuer %v; want %s", d["issuer"], base)
	}
	methods := map[string]string{
		"authorization_endpoint": "GET", "token_endpoint": "POST", "userinfo_endpoint": "GET", "jwks_uri": "GET",
		"registration_endpoint": "POST", "revocation_endpoint": "POST", "introspection_endpoint": "POST",
		"device_authorization_endpoint": "POST", "end_session_endpoint": "GET",
	}
	for k, v := range d {
		if strings.HasSuffix(k, "_endpoint") || strings.HasSuffix(k, "_uri") {
			if _, ok := methods[k]; !ok {
				t.Errorf("discovery lists %s, which this test does not know", k)
			}
			_ = v
		}
	}
	for name, method := range methods {
		u, _ := d[name].(string)
		if !strings.HasPrefix(u, base+"/") {
			t.Errorf("%s %q is not below the issuer", name, u)
			continue
		}
		req, _ := http.NewRequest(method, u, strings.NewReader(""))
		if method == "POST" {
			req.Header.Set("Content-Type", formType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 404 || resp.StatusCode == 405 || resp.StatusCode >= 500 {
			t.Errorf("%s %s (%s): %d; want it served", method, u, name, resp.StatusCode)
		}
	}
	// Every grant listed is known; the methods and algorithms are the
	// ones the server has.
	for _, g := range d["grant_types_supported"].([]any) {
		r := e.tokenReq(vals("grant_type", g.(string), "client_id", "cli_nobody"))
		if r.json(t)["error"] == "unsupported_grant_type" {
			t.Errorf("grant %v is listed but unsupported", g)
		}
	}
	if !reflect.DeepEqual(d["code_challenge_methods_supported"], []any{"S256"}) || d["authorization_response_iss_parameter_supported"] != true ||
		!slices.Contains(d["dpop_signing_alg_values_supported"].([]any), any("ES256")) || !slices.Contains(d["id_token_signing_alg_values_supported"].([]any), any("RS256")) ||
		slices.Contains(d["introspection_endpoint_auth_methods_supported"].([]any), any("none")) {
		t.Fatalf("discovery document %v", d)
	}
	// go-oidc configures itself from it.
	if _, err := oidc.NewProvider(context.Background(), base); err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
}

// TestOAuthDiscoveryNeedsPublicURL: without --public-url, the OAuth paths
// are a 404 that says how to turn them on.
func TestOAuthDiscoveryNeedsPublicURL(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/oauth2/token"} {
		method := "GET"
		if path == "/oauth2/token" {
			method = "POST"
		}
		r := e.do(method, path, "", nil)
		if r.status != 404 {
			t.Fatalf("%s without a public URL: %d; want 404", path, r.status)
		}
		if d := wantOAuthError(t, r, 404, "invalid_request")["error_description"]; !strings.Contains(fmt.Sprint(d), "--public-url") {
			t.Fatalf("%s: %v; want it to name --public-url", path, d)
		}
	}
	wantProblem(t, e.do("GET", "/v1/oauth/clients", e.admin, nil), 404, "not_found")
}

// TestOAuthLogout: RP-initiated logout with id_token_hint ends the
// session; the browser goes back only to a registered
// post_logout_redirect_uri, with state.
func TestOAuthLogout(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	back := "https://dispatch.example.com/signed-out"
	id, secret := e.oauthClient(map[string]any{"redirect_uris": []string{cb}, "post_logout_redirect_uris": []string{back}, "grant_types": []string{"authorization_code", "refresh_token"}})
	signIn := func() map[string]any {
		code, a := e.signInCode(t, id, cb, "maria", nil)
		return wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...))
	}
	b := cookieBrowser()
	logout := func(q url.Values) (int, http.Header, string) {
		return httpGet(t, b, e.url()+"/oauth2/logout?"+q.Encode())
	}

	tok := signIn()
	hint := tok["id_token"].(string)
	if status, _, _ := logout(vals("id_token_hint", hint, "post_logout_redirect_uri", "https://evil.example/")); status != 400 {
		t.Fatalf("an unregistered post_logout_redirect_uri: %d; want 400", status)
	}
	if status, _, _ := logout(vals("id_token_hint", hint, "post_logout_redirect_uri", back+"/x")); status != 400 {
		t.Fatalf("a longer post_logout_redirect_uri: %d; want 400", status)
	}
	if status, _, _ := logout(vals("id_token_hint", "not.a.token", "post_logout_redirect_uri", back)); status != 400 {
		t.Fatalf("a forged id_token_hint: %d; want 400", status)
	}
	if status, _, _ := logout(vals("post_logout_redirect_uri", back)); status != 400 {
		t.Fatalf("a post_logout_redirect_uri without a client: %d; want 400", status)
	}
	if r := e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil); r.status != 200 {
		t.Fatalf("the session ended by a refused logout: %d %s", r.status, r.body)
	}

	status, h, _ := logout(vals("id_token_hint", hint, "post_logout_redirect_uri", back, "state", "st 42"))
	if status != http.StatusSeeOther || h.Get("Location") != back+"?state=st+42" {
		t.Fatalf("logout: %d Location %q; want 303 to %s?state=st+42", status, h.Get("Location"), back)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil), 401, "session_revoked")
	wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string)), basicAuth(id, secret)...), 400, "invalid_grant")
	// Again, with the same hint: nothing left to end, and the same way back.
	if status, h, _ := logout(vals("id_token_hint", hint, "post_logout_redirect_uri", back)); status != http.StatusSeeOther || h.Get("Location") != back {
		t.Fatalf("a second logout: %d %q", status, h.Get("Location"))
	}

	// Without a redirect: the signed-out page; by POST too.
	tok = signIn()
	if status, _, page := logout(vals("id_token_hint", tok["id_token"].(string))); status != 200 || !strings.Contains(page, "signed out") {
		t.Fatalf("logout without a redirect: %d %s", status, page)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil), 401, "session_revoked")
	tok = signIn()
	if status, _, _ := httpPost(t, b, e.url()+"/oauth2/logout", vals("id_token_hint", tok["id_token"].(string), "client_id", id)); status != 200 {
		t.Fatalf("logout by POST: %d", status)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil), 401, "session_revoked")
}

// TestOAuthAccessTokens: an OAuth client's access tokens are RFC 9068
// JWTs from the issuer URL that the native API still takes; the native
// login's are unchanged.
func TestOAuthAccessTokens(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	id, secret := e.oauthClient(map[string]any{"redirect_uris": []string{cb}})
	code, a := e.signInCode(t, id, cb, "walter", url.Values{"scope": {"openid profile"}, "device": {devicePayload(phoneIMEI)}})
	tok := wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...))
	access := tok["access_token"].(string)
	header, _ := jwtParts(t, access)
	claims := e.verifyJWT(t, access)
	if header["typ"] != "at+jwt" || header["kid"] == nil {
		t.Fatalf("access token header %v; want typ at+jwt and a kid", header)
	}
	aud, _ := claims["aud"].([]any)
	if claims["iss"] != e.url() || claims["client_id"] != id || claims["scope"] != "openid profile" || claims["sub"] != e.userIDOf("walter") ||
		!slices.Contains(aud, any("tether")) || claims["jti"] == nil || claims["iat"] == nil || claims["exp"] == nil || claims["auth_time"] == nil || claims["did"] != phone {
		t.Fatalf("access token claims %v", claims)
	}
	if tok["expires_in"].(float64) < 60 || tok["scope"] != "openid profile" || tok["refresh_token"] != nil {
		t.Fatalf("token answer %v", tok)
	}
	me := e.do("GET", "/v1/auth/me", access, nil)
	if me.status != 200 || me.json(t)["user"].(map[string]any)["username"] != "walter" {
		t.Fatalf("/v1/auth/me with an OAuth access token: %d %s", me.status, me.body)
	}
	// The native login's token: issuer "tether", no typ at+jwt.
	native := e.loginWorker()["accessToken"].(string)
	nh, _ := jwtParts(t, native)
	nc := e.verifyJWT(t, native)
	if nc["iss"] != "tether" || nh["typ"] == "at+jwt" || nc["client_id"] != nil {
		t.Fatalf("a native token: header %v claims %v", nh, nc)
	}
}

// TestOAuthIDTokenAlgs: each client's ID tokens in its algorithm, which
// go-oidc verifies with the JWKS, at_hash included.
func TestOAuthIDTokenAlgs(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.url())
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		id, secret := e.oauthClient(map[string]any{"redirect_uris": []string{cb}, "id_token_signed_response_alg": alg})
		code, a := e.signInCode(t, id, cb, "maria", url.Values{"nonce": {"n-" + alg}, "scope": {"openid email profile"}})
		tok := wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...))
		raw := tok["id_token"].(string)
		if h, _ := jwtParts(t, raw); h["alg"] != alg {
			t.Fatalf("ID token alg %v; want %s", h["alg"], alg)
		}
		idt, err := provider.Verifier(&oidc.Config{ClientID: id, SupportedSigningAlgs: []string{alg}}).Verify(ctx, raw)
		if err != nil {
			t.Fatalf("%s ID token: %v", alg, err)
		}
		if err := idt.VerifyAccessToken(tok["access_token"].(string)); err != nil {
			t.Fatalf("%s at_hash: %v", alg, err)
		}
		if idt.Nonce != "n-"+alg || idt.Subject != e.userIDOf("maria") {
			t.Fatalf("%s ID token nonce %q sub %q", alg, idt.Nonce, idt.Subject)
		}
	}
}

// TestOAuthUserInfo: userinfo by GET and POST, with the token as Bearer
// or in the form; a DPoP-bound token only as DPoP with its proof; a token
// without openid is refused.
func TestOAuthUserInfo(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})
	grant := func(user, scope string, headers ...string) string {
		f := vals("grant_type", "password", "client_id", field, "username", user, "password", "correct horse", "scope", scope)
		if user == "walter" {
			f.Set("device", devicePayload(phoneIMEI))
		}
		return wantTokens(t, e.tokenReq(f, headers...))["access_token"].(string)
	}
	access := grant("walter", "openid profile")
	for name, r := range map[string]response{
		"GET":              e.do("GET", "/oauth2/userinfo", access, nil),
		"POST with Bearer": e.do("POST", "/oauth2/userinfo", access, nil),
		"POST in the form": e.postForm("/oauth2/userinfo", vals("access_token", access)),
	} {
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("userinfo %s: %d %s", name, r.status, r.body)
		}
		if u := r.json(t); u["sub"] != e.userIDOf("walter") || u["preferred_username"] != "walter" || u["did"] != phone || u["email"] != nil {
			t.Fatalf("userinfo %s: %s", name, r.body)
		}
	}
	noOpenID := grant("maria", "profile")
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", noOpenID, nil), 403, "insufficient_scope")
	r := e.do("GET", "/oauth2/userinfo", "", nil)
	wantOAuthError(t, r, 401, "invalid_token")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("userinfo without a token: WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", e.admin, nil), 401, "invalid_token")

	k := dpopKey(t, "OKP")
	bound := grant("maria", "openid", "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", ""))
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", bound, nil, "DPoP", e.dpopProof(t, k, "GET", "/oauth2/userinfo", bound)), 401, "invalid_token")
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", "", nil, "Authorization", "DPoP "+bound), 401, "invalid_dpop_proof")
	r = e.do("GET", "/oauth2/userinfo", "", nil, "Authorization", "DPoP "+bound, "DPoP", e.dpopProof(t, k, "GET", "/oauth2/userinfo", bound))
	if r.status != 200 || r.json(t)["sub"] != e.userIDOf("maria") {
		t.Fatalf("userinfo with a DPoP-bound token and its proof: %d %s", r.status, r.body)
	}
}

// TestOAuthDPoPTokenEndpoint: RFC 9449 at the token endpoint: a public
// client's tokens bound to its proof's key, refreshed only with a proof
// by it; dpop_jkt binding the code; server nonces; and a handset with an
// enrolled key proving it here as on the native API.
func TestOAuthDPoPTokenEndpoint(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	app, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"authorization_code", "refresh_token"}})
	k := dpopKey(t, "EC")
	dev := url.Values{"device": {devicePayload(phoneIMEI)}, "scope": {"openid offline_access"}}

	code, a := e.signInCode(t, app, cb, "walter", dev)
	tok := wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")))
	claims := e.verifyJWT(t, tok["access_token"].(string))
	if cnf, _ := claims["cnf"].(map[string]any); tok["token_type"] != "DPoP" || cnf["jkt"] != k.Thumbprint() {
		t.Fatalf("token_type %v, cnf %v; want DPoP bound to %s", tok["token_type"], claims["cnf"], k.Thumbprint())
	}
	// The refresh token is bound too: a proof by the same key, and no other.
	rt := tok["refresh_token"].(string)
	refresh := vals("grant_type", "refresh_token", "client_id", app, "refresh_token", rt)
	wantOAuthError(t, e.tokenReq(refresh), 400, "invalid_dpop_proof")
	wantOAuthError(t, e.tokenReq(refresh, "DPoP", e.dpopProof(t, dpopKey(t, "EC"), "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	wantOAuthError(t, e.tokenReq(refresh, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/revoke", "")), 400, "invalid_dpop_proof")
	next := wantTokens(t, e.tokenReq(refresh, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")))
	if c := e.verifyJWT(t, next["access_token"].(string)); next["token_type"] != "DPoP" || c["cnf"].(map[string]any)["jkt"] != k.Thumbprint() {
		t.Fatalf("refreshed: %v %v", next["token_type"], c["cnf"])
	}

	// dpop_jkt binds the code: a proof by that key gets the tokens.
	k2 := dpopKey(t, "OKP")
	code, a = e.signInCode(t, app, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "dpop_jkt": {k2.Thumbprint()}})
	tok = wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k2, "POST", "/oauth2/token", "")))
	if c := e.verifyJWT(t, tok["access_token"].(string)); c["cnf"].(map[string]any)["jkt"] != k2.Thumbprint() {
		t.Fatalf("a code bound by dpop_jkt: cnf %v; want %s", c["cnf"], k2.Thumbprint())
	}
	// A client registered dpop_bound_access_tokens sends a proof always.
	bound, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}, "dpop_bound_access_tokens": true})
	pw := vals("grant_type", "password", "client_id", bound, "username", "maria", "password", "correct horse")
	wantOAuthError(t, e.tokenReq(pw), 400, "invalid_dpop_proof")
	if tok := wantTokens(t, e.tokenReq(pw, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", ""))); tok["token_type"] != "DPoP" {
		t.Fatalf("a dpop_bound_access_tokens client: %v", tok)
	}

	// A handset with an enrolled key proves it here too.
	hk := dpopKey(t, "EC")
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"publicKey": json.RawMessage(hk.PublicJWK())}); r.status != 200 {
		t.Fatalf("enroll the handset's key: %d %s", r.status, r.body)
	}
	code, a = e.signInCode(t, app, cb, "walter", dev)
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb)), 400, "invalid_dpop_proof")
	code, a = e.signInCode(t, app, cb, "walter", dev)
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	code, a = e.signInCode(t, app, cb, "walter", dev)
	tok = wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, hk, "POST", "/oauth2/token", "")))
	if c := e.verifyJWT(t, tok["access_token"].(string)); tok["token_type"] != "DPoP" || c["cnf"].(map[string]any)["jkt"] != hk.Thumbprint() {
		t.Fatalf("a handset with a key: %v cnf %v; want bound to %s", tok["token_type"], c["cnf"], hk.Thumbprint())
	}
	password, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})
	pw = vals("grant_type", "password", "client_id", password, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI))
	wantOAuthError(t, e.tokenReq(pw), 400, "invalid_dpop_proof")
	wantTokens(t, e.tokenReq(pw, "DPoP", e.dpopProof(t, hk, "POST", "/oauth2/token", "")))
}

// TestOAuthDPoPNonce: with server nonces on, a token request's proof
// without one is answered use_dpop_nonce with the nonce to use, and the
// same request again with it succeeds: for a code too, which the first
// attempt must not have used up (RFC 9449 section 8).
func TestOAuthDPoPNonce(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.DPoPNonce = true })
	e.fleet()
	app, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"authorization_code", "password"}})
	k := dpopKey(t, "EC")

	pw := vals("grant_type", "password", "client_id", app, "username", "maria", "password", "correct horse")
	r := e.tokenReq(pw, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", ""))
	wantOAuthError(t, r, 400, "use_dpop_nonce")
	nonce := r.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
	}
	wantTokens(t, e.tokenReq(pw, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "", dpop.Options{Nonce: nonce})))

	code, a := e.signInCode(t, app, cb, "maria", nil)
	r = e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", ""))
	wantOAuthError(t, r, 400, "use_dpop_nonce")
	tok := wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "", dpop.Options{Nonce: r.header.Get("DPoP-Nonce")})))
	if tok["token_type"] != "DPoP" {
		t.Fatalf("token_type %v; want DPoP", tok["token_type"])
	}
	if n := len(e.oauthSessions(app)); n != 2 {
		t.Fatalf("%d sessions; want 2", n)
	}
}

// signInAnswer fills the sign-in page of an authorization request in and
// returns the answer, whatever it is.
func (e *env) signInAnswer(t testing.TB, authURL, username string) (int, http.Header, string) {
	t.Helper()
	b := cookieBrowser()
	status, _, page := httpGet(t, b, authURL)
	m := formToken.FindStringSubmatch(page)
	if status != 200 || m == nil {
		t.Fatalf("sign-in page: %d\n%s", status, page)
	}
	return httpPost(t, b, authURL, vals("csrf", m[1], "username", username, "password", "correct horse", "action", "approve"))
}

// TestOAuthHandsetPolicies: the version, SIM and assignment rules of a
// login hold at every door of the OAuth provider: the password grant,
// the sign-in page, the device approval. A refusal says why and opens
// nothing.
func TestOAuthHandsetPolicies(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.MinAppVersion = "3.0.0"; c.SIMPolicy = auth.SIMBlock })
	phone, _ := e.fleet()
	field, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"password", "authorization_code", oauth.GrantDeviceCode}})
	with := func(change func(map[string]any)) string {
		p := handset(phoneIMEI)
		change(p)
		b, _ := json.Marshal(p)
		return string(b)
	}
	grant := func(device string) response {
		return e.tokenReq(vals("grant_type", "password", "client_id", field, "username", "walter", "password", "correct horse", "device", device))
	}
	// The first login records the SIM.
	wantTokens(t, grant(devicePayload(phoneIMEI)))
	oldApp := with(func(p map[string]any) { p["appVersion"] = "2.9.9" })
	otherSIM := with(func(p map[string]any) { p["iccIds"] = []string{"89445001021983048279"} })
	oldOS := with(func(p map[string]any) { p["osVersion"] = map[string]any{"api": 24, "name": "7.0"} })
	for name, c := range map[string]struct {
		device, says string
	}{
		"an old app":      {oldApp, "too old"},
		"another SIM":     {otherSIM, "SIM"},
		"an old Android":  {oldOS, "too old"},
		"an unknown IMEI": {devicePayload("359881234567899"), "not enrolled"},
	} {
		if d := wantOAuthError(t, grant(c.device), 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), c.says) {
			t.Errorf("password grant, %s: %v; want it to say %q", name, d, c.says)
		}
		u, _ := e.authorizeURL(field, cb, url.Values{"device": {c.device}})
		if status, h, page := e.signInAnswer(t, u, "walter"); status < 400 || h.Get("Location") != "" || !strings.Contains(page, c.says) {
			t.Errorf("sign-in page, %s: %d %q; want the page to refuse, saying %q", name, status, h.Get("Location"), c.says)
		}
		da := e.postForm("/oauth2/device_authorization", vals("client_id", field, "device", c.device)).json(t)
		if status, page := e.verifyDevice(t, da["user_code"].(string), "approve", "walter", "correct horse"); status < 400 || !strings.Contains(page, c.says) {
			t.Errorf("device approval, %s: %d; want it refused, saying %q", name, status, c.says)
		}
	}
	// Assigned to maria: walter is refused at the page.
	e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"assignedUsers": []string{e.userIDOf("maria")}})
	u, _ := e.authorizeURL(field, cb, url.Values{"device": {devicePayload(phoneIMEI)}})
	if status, _, page := e.signInAnswer(t, u, "walter"); status != 403 || !strings.Contains(page, "not assigned") {
		t.Errorf("walter signing in on maria's handset: %d; want 403 saying it is not assigned", status)
	}
	if n := len(e.oauthSessions(field)); n != 1 {
		t.Fatalf("%d sessions; want the first grant's", n)
	}
}

// TestOAuthGrantsWithGoClients: the password and device grants, refresh
// and ID token validation as golang.org/x/oauth2 and go-oidc do them,
// configured from the issuer URL alone: x/oauth2 polls the device grant
// itself, on the interval the server gives.
func TestOAuthGrantsWithGoClients(t *testing.T) {
	e := newEnv(t, oauthOn{Config: oauth.Config{DeviceInterval: time.Second}})
	phone, _ := e.fleet()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.url())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := e.oauthClient(map[string]any{"client_name": "Scanner", "token_endpoint_auth_method": "none", "grant_types": []string{"password", oauth.GrantDeviceCode, "refresh_token"}})
	conf := oauth2.Config{ClientID: id, Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}}
	if conf.Endpoint.DeviceAuthURL != e.url()+"/oauth2/device_authorization" {
		t.Fatalf("go-oidc's device authorization URL %q", conf.Endpoint.DeviceAuthURL)
	}
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	verifier := provider.Verifier(&oidc.Config{ClientID: id})

	tok, err := conf.PasswordCredentialsToken(ctx, "maria", "correct horse")
	if err != nil {
		t.Fatalf("password grant: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := verifier.Verify(ctx, raw)
	if err != nil || idt.Subject != e.userIDOf("maria") || idt.VerifyAccessToken(tok.AccessToken) != nil {
		t.Fatalf("password grant ID token %v: %v", idt, err)
	}
	if _, err := conf.PasswordCredentialsToken(ctx, "maria", "wrong password"); err == nil {
		t.Fatal("a wrong password got a token")
	} else if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
		t.Fatalf("a wrong password: %v; want invalid_grant", err)
	}

	da, err := conf.DeviceAuth(ctx, oauth2.SetAuthURLParam("device", devicePayload(phoneIMEI)))
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if da.VerificationURIComplete == "" || da.Interval != 1 || time.Until(da.Expiry) < 9*time.Minute {
		t.Fatalf("device authorization %+v", da)
	}
	if status, page := e.verifyDevice(t, da.UserCode, "approve", "walter", "correct horse"); status != 200 {
		t.Fatalf("approval: %d\n%s", status, page)
	}
	tok, err = conf.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("device grant: %v", err)
	}
	if claims := e.verifyJWT(t, tok.AccessToken); claims["did"] != phone || claims["sub"] != e.userIDOf("walter") {
		t.Fatalf("device grant token %v", claims)
	}
	if _, err := verifier.Verify(ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatalf("device grant ID token: %v", err)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil || fresh.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}

	da, err = conf.DeviceAuth(ctx, oauth2.SetAuthURLParam("device", devicePayload(phoneIMEI)))
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := e.verifyDevice(t, da.UserCode, "deny", "", ""); status != 200 {
		t.Fatalf("deny: %d", status)
	}
	if _, err := conf.DeviceAccessToken(ctx, da); err == nil {
		t.Fatal("a denied device grant got a token")
	} else if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "access_denied" {
		t.Fatalf("a denied device grant: %v; want access_denied", err)
	}
}

// TestOAuthAppsShareAHandset: the native app and two OAuth apps signed in
// on one handset keep their sessions side by side; each app's new sign-in
// replaces only its own older one; a manager logging the person out
// everywhere ends them all.
func TestOAuthAppsShareAHandset(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	meta := map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}}
	mail, _ := e.oauthClient(meta)
	maps, _ := e.oauthClient(meta)
	signIn := func(client string) string {
		return wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", client, "username", "walter",
			"password", "correct horse", "device", devicePayload(phoneIMEI))))["access_token"].(string)
	}
	native := e.loginWorker()["accessToken"].(string)
	first, other := signIn(mail), signIn(maps)
	second := signIn(mail)
	for name, c := range map[string]struct {
		token  string
		status int
	}{"native": {native, 200}, "the other app": {other, 200}, "the app's new session": {second, 200}, "the app's old session": {first, 401}} {
		if r := e.do("GET", "/v1/auth/me", c.token, nil); r.status != c.status {
			t.Errorf("%s: %d %s; want %d", name, r.status, r.body, c.status)
		}
	}
	if r := e.do("POST", "/v1/users/"+e.userIDOf("walter")+"/logout-all", e.manager, nil); r.status != 200 {
		t.Fatalf("logout-all: %d %s", r.status, r.body)
	}
	for _, tok := range []string{native, other, second} {
		if r := e.do("GET", "/v1/auth/me", tok, nil); r.status != 401 {
			t.Errorf("after logout-all: %d; want 401", r.status)
		}
	}
}

// TestOAuthDPoPWithHandsetProofsOff: --device-proof off governs handset
// keys only. An OAuth client's own DPoP key still binds its tokens, its
// refreshes and its userinfo calls, dpop_jkt still holds, and a junk
// proof is refused rather than ignored.
func TestOAuthDPoPWithHandsetProofsOff(t *testing.T) {
	e := newEnv(t, oauthOn{}, func(c *auth.Config) { c.DeviceProof = auth.ProofOff })
	e.fleet()
	app, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb},
		"grant_types": []string{"authorization_code", "refresh_token", "password"}, "scope": "openid offline_access"})
	k := dpopKey(t, "EC")
	pw := vals("grant_type", "password", "client_id", app, "username", "walter", "password", "correct horse",
		"device", devicePayload(phoneIMEI), "scope", "openid")
	wantOAuthError(t, e.tokenReq(pw, "DPoP", "not.a.proof"), 400, "invalid_dpop_proof")
	tok := wantTokens(t, e.tokenReq(pw, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")))
	access := tok["access_token"].(string)
	if c := e.verifyJWT(t, access); tok["token_type"] != "DPoP" || c["cnf"] == nil {
		t.Fatalf("token_type %v, cnf %v; want DPoP-bound", tok["token_type"], c["cnf"])
	}
	if r := e.do("GET", "/oauth2/userinfo", "", nil, "Authorization", "DPoP "+access); r.status != 401 {
		t.Fatalf("userinfo without the proof: %d %s; want 401", r.status, r.body)
	}
	if r := e.do("GET", "/oauth2/userinfo", "", nil, "Authorization", "DPoP "+access, "DPoP", e.dpopProof(t, k, "GET", "/oauth2/userinfo", access)); r.status != 200 {
		t.Fatalf("userinfo with the proof: %d %s", r.status, r.body)
	}
	refresh := vals("grant_type", "refresh_token", "client_id", app, "refresh_token", tok["refresh_token"].(string))
	wantOAuthError(t, e.tokenReq(refresh), 400, "invalid_dpop_proof")
	if next := wantTokens(t, e.tokenReq(refresh, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", ""))); next["token_type"] != "DPoP" {
		t.Fatalf("the refresh unbound the session: %v", next)
	}
	// dpop_jkt: a proof by another key is refused, by the named key taken.
	k2 := dpopKey(t, "OKP")
	code, a := e.signInCode(t, app, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "dpop_jkt": {k2.Thumbprint()}})
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	code, a = e.signInCode(t, app, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "dpop_jkt": {k2.Thumbprint()}})
	if tok := wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k2, "POST", "/oauth2/token", ""))); tok["token_type"] != "DPoP" {
		t.Fatalf("a code bound by dpop_jkt: %v", tok)
	}
}
