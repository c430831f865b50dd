package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/oauth"
	"tether/storage"
)

// Attacks on the OAuth 2.0 provider, each fired for real over HTTP,
// with what it must leave behind checked in the store: no session it
// should not have opened, a code spent or not as designed.

// authClient is a confidential client of the authorization_code and
// refresh_token grants, redirecting to cb.
func (e *env) authClient() (id, secret string) {
	return e.oauthClient(map[string]any{"redirect_uris": []string{cb}, "grant_types": []string{"authorization_code", "refresh_token"}})
}

// events counts the audit events of an action.
func (e *env) events(action string) int {
	e.t.Helper()
	r := e.do("GET", "/v1/audit?limit=1000&action="+url.QueryEscape(action), e.manager, nil)
	if r.status != 200 {
		e.t.Fatalf("audit: %d %s", r.status, r.body)
	}
	return len(r.json(e.t)["items"].([]any))
}

// TestOAuthAttackCodeReplay: a code redeemed twice revokes the session
// its first redemption opened (RFC 6749 section 4.1.2), and the event
// says so; a code presented by another client is not spent by it.
func TestOAuthAttackCodeReplay(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	id, secret := e.authClient()
	thief, thiefSecret := e.authClient()
	code, a := e.signInCode(t, id, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "scope": {"openid offline_access"}})

	// Another client presenting the code: refused, and the code is still
	// the client's.
	wantOAuthError(t, e.tokenReq(redeemForm(thief, code, a, cb), basicAuth(thief, thiefSecret)...), 400, "invalid_grant")
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("another client's redemption opened %d sessions", n)
	}
	tok := wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...))
	if r := e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil); r.status != 200 {
		t.Fatalf("the first redemption's token: %d %s", r.status, r.body)
	}
	wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")
	ss := e.oauthSessions(id)
	if len(ss) != 1 || !ss[0].Revoked() || ss[0].RevokeReason != "authorization_code_reused" {
		t.Fatalf("sessions after the replay: %+v; want the one, revoked for authorization_code_reused", ss)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil), 401, "session_revoked")
	wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string)), basicAuth(id, secret)...), 400, "invalid_grant")
	if n := e.events("oauth.code_reused"); n != 1 {
		t.Fatalf("%d oauth.code_reused events; want 1", n)
	}
	// A third time: still refused, nothing more opened.
	wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")
	if n := len(e.oauthSessions("")); n != 1 {
		t.Fatalf("%d sessions; want 1", n)
	}
}

// TestOAuthAttackCodeReplayConcurrent: eight redemptions of one code at
// once. Exactly one wins the code and opens a session; once the code has
// been presented again that session is revoked, so none is left live. The
// winner, overtaken by a replay while its session was being opened,
// revokes that session itself and answers invalid_grant (oauth.redeemCode)
// rather than hand out dead tokens: at most one 200, often none.
func TestOAuthAttackCodeReplayConcurrent(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	id, secret := e.authClient()
	base := e.url()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for round := range 3 {
		before := map[string]bool{}
		for _, s := range e.oauthSessions(id) {
			before[s.ID] = true
		}
		code, a := e.signInCode(t, id, cb, "maria", nil)
		body := redeemForm(id, code, a, cb).Encode()
		const n = 8
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
			tokens   []string
			start    = make(chan struct{})
		)
		for range n {
			wg.Go(func() {
				<-start
				req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(body))
				req.Header.Set("Content-Type", formType)
				req.SetBasicAuth(id, secret)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var m map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				statuses[resp.StatusCode]++
				switch {
				case resp.StatusCode == 200:
					tokens = append(tokens, m["access_token"].(string))
				case m["error"] != "invalid_grant":
					t.Errorf("a concurrent redemption: %d %v; want 200 or invalid_grant", resp.StatusCode, m)
				}
			})
		}
		close(start)
		wg.Wait()
		if statuses[200] > 1 || statuses[200]+statuses[400] != n {
			t.Fatalf("round %d: answers %v; want at most one 200, the rest 400", round, statuses)
		}
		// Presented once more, after the dust settled.
		wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")
		t.Logf("round %d: answers %v", round, statuses)
		for _, tok := range tokens {
			wantProblem(t, e.do("GET", "/v1/auth/me", tok, nil), 401, "session_revoked")
		}
		var opened []storage.Session
		for _, s := range e.oauthSessions(id) {
			if !before[s.ID] {
				opened = append(opened, s)
			}
		}
		if len(opened) != 1 {
			t.Fatalf("round %d: %d sessions opened by one code; want 1", round, len(opened))
		}
		if s := opened[0]; s.Live(time.Now()) || s.RevokeReason != "authorization_code_reused" {
			t.Fatalf("round %d: the code's session live %t, revoked for %q; want it revoked for authorization_code_reused", round, s.Live(time.Now()), s.RevokeReason)
		}
	}
}

// TestOAuthAttackPKCEDowngrade: plain or no PKCE is refused at the
// authorization endpoint; at the token endpoint a missing or malformed
// verifier is refused without spending the code, a wrong one spends it.
func TestOAuthAttackPKCEDowngrade(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	id, secret := e.authClient()
	b := cookieBrowser()
	for name, q := range map[string]url.Values{
		"plain":             {"code_challenge_method": {"plain"}, "code_challenge": {strings.Repeat("a", 43)}},
		"no method":         {"code_challenge_method": {""}},
		"no challenge":      {"code_challenge": {""}},
		"neither":           {"code_challenge_method": {""}, "code_challenge": {""}},
		"s256 in lower":     {"code_challenge_method": {"s256"}},
		"a short hash":      {"code_challenge": {strings.Repeat("a", 42)}},
		"not base64url":     {"code_challenge": {strings.Repeat("+", 43)}},
		"a hex SHA-256":     {"code_challenge": {strings.Repeat("ab", 32)}},
		"a padded base64":   {"code_challenge": {strings.Repeat("a", 43) + "="}},
		"an unknown method": {"code_challenge_method": {"S512"}},
	} {
		u, a := e.authorizeURL(id, cb, q)
		status, h, _ := httpGet(t, b, u)
		loc, _ := url.Parse(h.Get("Location"))
		if status != http.StatusSeeOther || loc == nil || !strings.HasPrefix(h.Get("Location"), cb+"?") {
			t.Errorf("%s: %d Location %q; want a redirect to the client with an error", name, status, h.Get("Location"))
			continue
		}
		if got := loc.Query(); got.Get("error") != "invalid_request" || got.Get("code") != "" || got.Get("state") != a.state || got.Get("iss") != e.url() {
			t.Errorf("%s: redirect %v; want invalid_request with state and iss, and no code", name, got)
		}
	}

	code, a := e.signInCode(t, id, cb, "maria", nil)
	redeem := func(verifier string) response {
		f := redeemForm(id, code, a, cb)
		if verifier == "" {
			f.Del("code_verifier")
		} else {
			f.Set("code_verifier", verifier)
		}
		return e.tokenReq(f, basicAuth(id, secret)...)
	}
	// Refused before the code is looked at: still good.
	wantOAuthError(t, redeem(""), 400, "invalid_request")
	wantOAuthError(t, redeem(a.verifier[:42]), 400, "invalid_request")
	wantOAuthError(t, redeem(a.verifier[:42]+"!"), 400, "invalid_request")
	wantOAuthError(t, redeem(strings.Repeat("a", 129)), 400, "invalid_request")
	wantTokens(t, redeem(a.verifier))

	// A wrong verifier spends the code; so does the challenge sent as the
	// verifier (plain).
	for name, wrong := range map[string]func(authz) string{
		"another verifier":     func(authz) string { return strings.Repeat("A", 43) },
		"the challenge itself": func(a authz) string { return a.query.Get("code_challenge") },
	} {
		code, a = e.signInCode(t, id, cb, "maria", nil)
		wantOAuthError(t, redeem(wrong(a)), 400, "invalid_grant")
		wantOAuthError(t, redeem(a.verifier), 400, "invalid_grant")
		if n := len(e.oauthSessions(id)); n != 1 {
			t.Fatalf("%s: %d sessions; want only the first redemption's", name, n)
		}
	}
}

// TestOAuthAttackRedirectURITricks: a redirect URI that is not, byte for
// byte, one the client registered (or, for a loopback http one, the same
// but for the port) gets an error page, never a redirect.
func TestOAuthAttackRedirectURITricks(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	const (
		web  = "https://app.example.com/cb"
		loop = "http://127.0.0.1:7777/cb"
		app  = "com.example.app:/oauth"
	)
	id, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{web, loop, app}})
	b := cookieBrowser()
	for _, good := range []string{web, loop, app, "http://127.0.0.1:5555/cb", "http://127.0.0.1/cb"} {
		u, _ := e.authorizeURL(id, good, nil)
		if status, _, page := httpGet(t, b, u); status != 200 || !strings.Contains(page, `name="password"`) {
			t.Errorf("%s: %d; want the sign-in page", good, status)
		}
	}
	for _, bad := range []string{
		"https://app.example.com/c", "https://app.example.com/cbx", "https://app.example.com/cb/", "https://app.example.com/cb/extra",
		"https://app.example.com/cb/../cb", "https://app.example.com/%63b", "https://app.example.com:8443/cb", "https://app.example.com:443/cb",
		"https://app.example.com/cb#x", "https://app.example.com/cb#", "https://APP.example.com/cb", "https://app.example.com/CB", "HTTPS://app.example.com/cb",
		"https://app.example.com/cb?x=1", "https://app.example.com/cb?", "https://evil.example@app.example.com/cb", "https://app.example.com@evil.example/cb",
		"https://app.example.com.evil.example/cb", "http://app.example.com/cb", "https://app.example.com/cb ",
		"http://localhost:7777/cb", "http://127.0.0.1:7777/cb/x", "http://127.0.0.1:7777/cb?x=1", "http://evil@127.0.0.1:7777/cb",
		"http://127.0.0.1:7777/cb#x", "http://[::1]:7777/cb", "http://127.0.0.2:7777/cb", "http://127.0.0.1:99999/cb", "http://127.0.0.1:-1/cb",
		"http://127.0.0.1:7777/CB", "https://127.0.0.1:7777/cb",
		"com.example.app:/oauth/x", "com.example.App:/oauth", "com.example.app://oauth", "com.example.app:/oauth?x=1", "",
	} {
		u, _ := e.authorizeURL(id, bad, nil)
		status, h, page := httpGet(t, b, u)
		if status != 400 || h.Get("Location") != "" || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(page, "not valid") {
			t.Errorf("redirect_uri %q: %d Location %q; want the 400 error page and no redirect", bad, status, h.Get("Location"))
		}
		// The sign-in form posted to it anyway: the same, and no code.
		status, h, _ = httpPost(t, b, u, vals("username", "maria", "password", "correct horse", "action", "approve"))
		if status != 400 || h.Get("Location") != "" {
			t.Errorf("redirect_uri %q, signing in: %d Location %q; want the error page", bad, status, h.Get("Location"))
		}
	}
	// No redirect_uri, or another client's: the page too.
	e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{"https://other.example.com/cb"}})
	for name, q := range map[string]url.Values{
		"none":              {"redirect_uri": nil},
		"another client's":  {"redirect_uri": {"https://other.example.com/cb"}},
		"an unknown client": {"client_id": {"cli_nobody"}},
		"no client":         {"client_id": nil},
		"twice":             {"redirect_uri": {web, "https://evil.example/cb"}},
	} {
		u, _ := e.authorizeURL(id, web, q)
		if status, h, _ := httpGet(t, b, u); status != 400 || h.Get("Location") != "" {
			t.Errorf("redirect_uri %s: %d Location %q; want the error page", name, status, h.Get("Location"))
		}
	}
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("%d sessions", n)
	}
}

// TestOAuthAttackMixUp: every authorization response, success or
// error, names the issuer in iss (RFC 9207), the very issuer discovery
// gives, with the request's state.
func TestOAuthAttackMixUp(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	id, _ := e.authClient()
	issuer := e.do("GET", "/.well-known/openid-configuration", "", nil).json(t)["issuer"].(string)
	check := func(name, location, wantError string, a authz) {
		t.Helper()
		u, err := url.Parse(location)
		if err != nil || !strings.HasPrefix(location, cb+"?") {
			t.Fatalf("%s: Location %q; want the client's redirect URI", name, location)
		}
		q := u.Query()
		if q.Get("iss") != issuer || q.Get("state") != a.state || q.Get("error") != wantError {
			t.Fatalf("%s: response %v; want iss %s, state %s, error %q", name, q, issuer, a.state, wantError)
		}
	}
	// Success, through the sign-in page.
	u, a := e.authorizeURL(id, cb, nil)
	tt := signInPage(t, u, "maria", "correct horse")
	check("success", tt.String(), "", a)
	// Declined by the person.
	b := cookieBrowser()
	u, a = e.authorizeURL(id, cb, nil)
	_, _, page := httpGet(t, b, u)
	m := formToken.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no form token")
	}
	status, h, _ := httpPost(t, b, u, vals("csrf", m[1], "action", "deny"))
	if status != http.StatusSeeOther {
		t.Fatalf("deny: %d", status)
	}
	check("denied", h.Get("Location"), "access_denied", a)
	// Refused at once.
	for name, q := range map[string]url.Values{
		"a bad response_type": {"response_type": {"token"}},
		"an unknown scope":    {"scope": {"openid admin"}},
		"prompt=none":         {"prompt": {"none"}},
		"a request object":    {"request": {"e30.e30."}},
	} {
		u, a := e.authorizeURL(id, cb, q)
		_, h, _ := httpGet(t, b, u)
		want := map[string]string{"a bad response_type": "unsupported_response_type", "an unknown scope": "invalid_scope", "prompt=none": "login_required", "a request object": "request_not_supported"}[name]
		check(name, h.Get("Location"), want, a)
	}
}

// TestOAuthAttackDPoPOtherKey: a proof by another key than the one the
// code (dpop_jkt), the session or the handset is bound to is refused,
// and opens nothing; a refused refresh spends nothing.
func TestOAuthAttackDPoPOtherKey(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, _ := e.fleet()
	app, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"authorization_code", "refresh_token", "password"}})
	k, thief := dpopKey(t, "EC"), dpopKey(t, "EC")

	// The code is bound to k: the thief's proof, or none, is refused; the
	// code is spent all the same (a code is redeemed once).
	code, a := e.signInCode(t, app, cb, "maria", url.Values{"dpop_jkt": {k.Thumbprint()}})
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, thief, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")), 400, "invalid_grant")
	code, a = e.signInCode(t, app, cb, "maria", url.Values{"dpop_jkt": {k.Thumbprint()}})
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb)), 400, "invalid_dpop_proof")
	if n := len(e.oauthSessions(app)); n != 0 {
		t.Fatalf("refused proofs opened %d sessions", n)
	}

	// The session is bound to k: the thief's proof at the refresh and at
	// userinfo is refused, and the refresh token still works for k.
	code, a = e.signInCode(t, app, cb, "maria", url.Values{"scope": {"openid offline_access"}})
	tok := wantTokens(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")))
	refresh := vals("grant_type", "refresh_token", "client_id", app, "refresh_token", tok["refresh_token"].(string))
	wantOAuthError(t, e.tokenReq(refresh, "DPoP", e.dpopProof(t, thief, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	access := tok["access_token"].(string)
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", "", nil, "Authorization", "DPoP "+access, "DPoP", e.dpopProof(t, thief, "GET", "/oauth2/userinfo", access)), 401, "invalid_dpop_proof")
	// A proof replayed is refused too.
	p := e.dpopProof(t, k, "POST", "/oauth2/token", "")
	wantTokens(t, e.tokenReq(refresh, "DPoP", p))
	if n := e.liveSessions(app); n != 1 {
		t.Fatalf("%d live sessions; want the one bound to k", n)
	}

	// A handset with an enrolled key: another key's proof is refused.
	hk := dpopKey(t, "OKP")
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"publicKey": json.RawMessage(hk.PublicJWK())}); r.status != 200 {
		t.Fatalf("enroll the handset's key: %d %s", r.status, r.body)
	}
	pw := vals("grant_type", "password", "client_id", app, "username", "walter", "password", "correct horse", "device", devicePayload(phoneIMEI))
	wantOAuthError(t, e.tokenReq(pw, "DPoP", e.dpopProof(t, k, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	// The code's dpop_jkt names another key than the handset's.
	code, a = e.signInCode(t, app, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "dpop_jkt": {k.Thumbprint()}})
	wantOAuthError(t, e.tokenReq(redeemForm(app, code, a, cb), "DPoP", e.dpopProof(t, hk, "POST", "/oauth2/token", "")), 400, "invalid_dpop_proof")
	for _, s := range e.oauthSessions(app) {
		if s.DeviceID == phone {
			t.Fatalf("a session on the handset: %+v", s)
		}
	}
}

// TestOAuthAttackOtherHandset: a code made for handset A redeemed with
// the payload of handset B is refused, opens nothing and leaves B's
// record as it was; a code made without a handset takes no payload; a
// refresh naming another handset is refused and ends nothing.
func TestOAuthAttackOtherHandset(t *testing.T) {
	e := newEnv(t, oauthOn{})
	phone, other := e.fleet()
	id, secret := e.authClient()
	ctx := context.Background()
	before, err := e.store.GetDevice(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	code, a := e.signInCode(t, id, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "scope": {"openid offline_access"}})
	f := redeemForm(id, code, a, cb)
	f.Set("device", devicePayload(otherIMEI))
	wantOAuthError(t, e.tokenReq(f, basicAuth(id, secret)...), 400, "invalid_grant")
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("another handset's payload opened %d sessions", n)
	}
	after, err := e.store.GetDevice(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if !after.LastSeenAt.Equal(before.LastSeenAt) || !after.UpdatedAt.Equal(before.UpdatedAt) || after.AppVersion != before.AppVersion {
		t.Fatalf("handset B was written by a refused redemption: last seen %v → %v, updated %v → %v", before.LastSeenAt, after.LastSeenAt, before.UpdatedAt, after.UpdatedAt)
	}

	// The right handset's payload is welcome.
	code, a = e.signInCode(t, id, cb, "walter", url.Values{"device": {devicePayload(phoneIMEI)}, "scope": {"openid offline_access"}})
	f = redeemForm(id, code, a, cb)
	f.Set("device", devicePayload(phoneIMEI))
	tok := wantTokens(t, e.tokenReq(f, basicAuth(id, secret)...))
	if c := e.verifyJWT(t, tok["access_token"].(string)); c["did"] != phone {
		t.Fatalf("did %v; want %s", c["did"], phone)
	}
	// A refresh naming handset B: refused, the session lives on.
	wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string), "device_id", other), basicAuth(id, secret)...), 400, "invalid_grant")
	if r := e.do("GET", "/v1/auth/me", tok["access_token"].(string), nil); r.status != 200 {
		t.Fatalf("a refused refresh ended the session: %d %s", r.status, r.body)
	}
	wantTokens(t, e.tokenReq(vals("grant_type", "refresh_token", "refresh_token", tok["refresh_token"].(string), "device_id", phone), basicAuth(id, secret)...))

	// Signed in without a handset, redeemed with one: refused.
	code, a = e.signInCode(t, id, cb, "maria", nil)
	f = redeemForm(id, code, a, cb)
	f.Set("device", devicePayload(otherIMEI))
	wantOAuthError(t, e.tokenReq(f, basicAuth(id, secret)...), 400, "invalid_grant")
	if n := len(e.oauthSessions("")); n != 1 {
		t.Fatalf("%d sessions; want 1", n)
	}
}

// TestOAuthAttackGrantNotAllowed: a client using a grant it was not
// registered for is unauthorized_client, everywhere, and gets nothing.
func TestOAuthAttackGrantNotAllowed(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	codeOnly, secret := e.oauthClient(map[string]any{"redirect_uris": []string{cb}})
	passwordOnly, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"password"}})
	for _, f := range []url.Values{
		vals("grant_type", "password", "username", "maria", "password", "correct horse"),
		vals("grant_type", "client_credentials"),
		vals("grant_type", "refresh_token", "refresh_token", "rt_x"),
		vals("grant_type", oauth.GrantDeviceCode, "device_code", "x"),
	} {
		wantOAuthError(t, e.tokenReq(f, basicAuth(codeOnly, secret)...), 400, "unauthorized_client")
	}
	wantOAuthError(t, e.postForm("/oauth2/device_authorization", vals(), basicAuth(codeOnly, secret)...), 400, "unauthorized_client")
	wantOAuthError(t, e.tokenReq(vals("grant_type", "authorization_code", "code", "x", "code_verifier", strings.Repeat("a", 43), "client_id", passwordOnly)), 400, "unauthorized_client")
	// At the authorization endpoint: told at the redirect URI.
	u, a := e.authorizeURL(passwordOnly, cb, nil)
	_, h, _ := httpGet(t, cookieBrowser(), u)
	loc, _ := url.Parse(h.Get("Location"))
	if loc == nil || loc.Query().Get("error") != "unauthorized_client" || loc.Query().Get("state") != a.state {
		t.Fatalf("a password-only client at the authorization endpoint: Location %q; want unauthorized_client", h.Get("Location"))
	}
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("%d sessions", n)
	}
}

// TestOAuthAttackClientAuthMismatch: a client authenticates by the one
// method it registered: a public client sending a secret, a confidential
// one without it or by another method, both methods at once, are refused.
func TestOAuthAttackClientAuthMismatch(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	pub, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password"}})
	conf, secret := e.oauthClient(map[string]any{"grant_types": []string{"password"}})
	post, postSecret := e.oauthClient(map[string]any{"grant_types": []string{"password"}, "token_endpoint_auth_method": "client_secret_post"})
	pw := func(kv ...string) url.Values {
		return vals(append([]string{"grant_type", "password", "username", "maria", "password", "correct horse"}, kv...)...)
	}
	for _, c := range []struct {
		name    string
		form    url.Values
		headers []string
		status  int
		code    string
		basic   bool
	}{
		{"a public client with a secret in the form", pw("client_id", pub, "client_secret", "made-up"), nil, 400, "invalid_client", false},
		{"a public client with Basic", pw(), basicAuth(pub, "made-up"), 401, "invalid_client", true},
		{"a public client with Basic and no secret", pw(), basicAuth(pub, ""), 401, "invalid_client", true},
		{"a confidential client without its secret", pw("client_id", conf), nil, 400, "invalid_client", false},
		{"a Basic client in the form", pw("client_id", conf, "client_secret", secret), nil, 400, "invalid_client", false},
		{"a form client with Basic", pw(), basicAuth(post, postSecret), 401, "invalid_client", true},
		{"a form client without its secret", pw("client_id", post), nil, 400, "invalid_client", false},
		{"a wrong secret", pw(), basicAuth(conf, secret+"x"), 401, "invalid_client", true},
		{"another client's secret", pw(), basicAuth(conf, postSecret), 401, "invalid_client", true},
		{"an unknown client", pw(), basicAuth("cli_nobody", secret), 401, "invalid_client", true},
		{"no client at all", pw(), nil, 400, "invalid_client", false},
		{"Basic and the form's secret", pw("client_secret", secret), basicAuth(conf, secret), 400, "invalid_request", false},
		{"Basic and another client_id", pw("client_id", pub), basicAuth(conf, secret), 400, "invalid_request", false},
		{"Basic and an assertion", pw("client_assertion_type", oauth.AssertionType, "client_assertion", "e30.e30.x"), basicAuth(conf, secret), 400, "invalid_request", false},
		{"Basic not base64", pw(), []string{"Authorization", "Basic %%%"}, 401, "invalid_client", true},
		{"Basic without a colon", pw(), []string{"Authorization", "Basic " + "Y2xpX3g="}, 401, "invalid_client", true},
		{"another scheme", pw(), []string{"Authorization", "Digest x"}, 400, "invalid_client", false},
	} {
		r := e.tokenReq(c.form, c.headers...)
		if r.status != c.status || r.json(t)["error"] != c.code {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.code)
			continue
		}
		wantOAuthError(t, r, c.status, c.code)
		if got := r.header.Get("WWW-Authenticate"); c.basic && !strings.HasPrefix(got, "Basic") {
			t.Errorf("%s: WWW-Authenticate %q; want a Basic challenge", c.name, got)
		}
	}
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("refused clients opened %d sessions", n)
	}
	// Each, the right way, works.
	wantTokens(t, e.tokenReq(pw("client_id", pub)))
	wantTokens(t, e.tokenReq(pw(), basicAuth(conf, secret)...))
	wantTokens(t, e.tokenReq(pw("client_id", post, "client_secret", postSecret)))
}

// TestOAuthAttackWrongSecretConcurrent: wrong secrets from many
// connections at once are each refused as invalid_client with a Basic
// challenge, and the right secret works after them.
func TestOAuthAttackWrongSecretConcurrent(t *testing.T) {
	e := newEnv(t, oauthOn{})
	id, secret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}})
	base := e.url()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for i := range 64 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", formType)
			wrong := secret[:len(secret)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i%64])
			if wrong == secret {
				wrong += "x"
			}
			req.SetBasicAuth(id, wrong)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			key := fmt.Sprintf("%d %s %t", resp.StatusCode, strings.TrimSpace(string(body)), strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic"))
			mu.Lock()
			statuses[key]++
			mu.Unlock()
		})
	}
	wg.Wait()
	want := `401 {"error":"invalid_client","error_description":"client authentication failed"} true`
	if len(statuses) != 1 || statuses[want] != 64 {
		t.Fatalf("answers to wrong secrets: %v; want 64 × %s", statuses, want)
	}
	wantTokens(t, e.tokenReq(vals("grant_type", "client_credentials"), basicAuth(id, secret)...))
}

// TestOAuthAttackMalformedForms: the OAuth endpoints take forms only,
// each parameter once (RFC 6749 section 3.1 and 3.2), of bounded size and
// the right form; everything else is an RFC 6749 error.
func TestOAuthAttackMalformedForms(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	pub, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"authorization_code", "password", oauth.GrantDeviceCode}})
	conf, secret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}})
	pw := "grant_type=password&client_id=" + pub + "&username=walter&password=correct+horse&device=" + url.QueryEscape(devicePayload(phoneIMEI))
	raw := func(path, body, contentType string, headers ...string) response {
		h := append([]string{"Content-Type", contentType}, headers...)
		if contentType == "" {
			h = headers
		}
		return e.do("POST", path, "", body, h...)
	}
	for _, c := range []struct {
		name        string
		path, body  string
		contentType string
		status      int
		code        string
	}{
		{"JSON", "/oauth2/token", `{"grant_type":"client_credentials"}`, "application/json", 400, "invalid_request"},
		{"text", "/oauth2/token", "grant_type=client_credentials", "text/plain", 400, "invalid_request"},
		{"multipart", "/oauth2/token", "--x\r\n", "multipart/form-data; boundary=x", 400, "invalid_request"},
		{"no Content-Type", "/oauth2/token", "grant_type=client_credentials", "", 400, "invalid_request"},
		{"a bad escape", "/oauth2/token", "grant_type=%zz", formType, 400, "invalid_request"},
		{"a semicolon", "/oauth2/token", "grant_type=password;client_id=x", formType, 400, "invalid_request"},
		{"no grant_type", "/oauth2/token", "client_id=" + pub, formType, 400, "invalid_request"},
		{"an unknown grant_type", "/oauth2/token", "grant_type=implicit&client_id=" + pub, formType, 400, "unsupported_grant_type"},
		{"grant_type twice", "/oauth2/token", "grant_type=password&" + pw, formType, 400, "invalid_request"},
		{"grant_type twice, differing", "/oauth2/token", pw + "&grant_type=client_credentials", formType, 400, "invalid_request"},
		{"client_id twice", "/oauth2/token", pw + "&client_id=" + pub, formType, 400, "invalid_request"},
		{"password twice", "/oauth2/token", pw + "&password=x", formType, 400, "invalid_request"},
		{"device twice", "/oauth2/token", pw + "&device=%7B%7D", formType, 400, "invalid_request"},
		{"an unknown parameter twice", "/oauth2/token", pw + "&x=1&x=2", formType, 400, "invalid_request"},
		{"an empty parameter twice", "/oauth2/token", pw + "&scope=&scope=", formType, 400, "invalid_request"},
		{"code twice", "/oauth2/token", "grant_type=authorization_code&client_id=" + pub + "&code=a&code=b&code_verifier=" + strings.Repeat("a", 43), formType, 400, "invalid_request"},
		{"a long client_id", "/oauth2/token", "grant_type=password&client_id=" + strings.Repeat("c", 200), formType, 400, "invalid_client"},
		{"a long code", "/oauth2/token", "grant_type=authorization_code&client_id=" + pub + "&code=" + strings.Repeat("c", 300) + "&code_verifier=" + strings.Repeat("a", 43), formType, 400, "invalid_grant"},
		{"a long device_code", "/oauth2/token", "grant_type=" + url.QueryEscape(oauth.GrantDeviceCode) + "&client_id=" + pub + "&device_code=" + strings.Repeat("c", 300), formType, 400, "invalid_grant"},
		{"a device payload not JSON", "/oauth2/token", strings.Replace(pw, "device=", "device=not-json&x=", 1), formType, 400, "invalid_request"},
		{"a device payload that is a list", "/oauth2/token", strings.Split(pw, "&device=")[0] + "&device=%5B%5D", formType, 400, "invalid_request"},
		{"a device payload of the wrong types", "/oauth2/token", strings.Split(pw, "&device=")[0] + "&device=" + url.QueryEscape(`{"imei":490154203237518}`), formType, 400, "invalid_request"},
		{"a device payload with an unknown member", "/oauth2/token", strings.Split(pw, "&device=")[0] + "&device=" + url.QueryEscape(`{"imei":"490154203237518","admin":true}`), formType, 400, "invalid_request"},
		{"two device payloads in one", "/oauth2/token", strings.Split(pw, "&device=")[0] + "&device=" + url.QueryEscape(devicePayload(phoneIMEI)+devicePayload(phoneIMEI)), formType, 400, "invalid_request"},
		{"a long device payload", "/oauth2/token", strings.Split(pw, "&device=")[0] + "&device=" + strings.Repeat("x", 9<<10), formType, 400, "invalid_request"},
		{"a verifier with a bad character", "/oauth2/token", "grant_type=authorization_code&client_id=" + pub + "&code=a&code_verifier=" + strings.Repeat("a", 42) + "%2B", formType, 400, "invalid_request"},
		{"a scope of a wrong form", "/oauth2/token", pw + "&scope=" + url.QueryEscape("openid\x00admin"), formType, 400, "invalid_scope"},
		{"revoke: JSON", "/oauth2/revoke", `{"token":"x"}`, "application/json", 400, "invalid_request"},
		{"revoke: token twice", "/oauth2/revoke", "client_id=" + pub + "&token=a&token=b", formType, 400, "invalid_request"},
		{"introspect: JSON", "/oauth2/introspect", `{"token":"x"}`, "application/json", 400, "invalid_request"},
		{"introspect: token twice", "/oauth2/introspect", "client_id=" + conf + "&client_secret=" + secret + "&token=a&token=b", formType, 400, "invalid_request"},
		{"device authorization: JSON", "/oauth2/device_authorization", `{"client_id":"x"}`, "application/json", 400, "invalid_request"},
		{"device authorization: scope twice", "/oauth2/device_authorization", "client_id=" + pub + "&scope=openid&scope=profile", formType, 400, "invalid_request"},
		{"device authorization: a bad payload", "/oauth2/device_authorization", "client_id=" + pub + "&device=%5B", formType, 400, "invalid_request"},
		{"device authorization: a long device_id", "/oauth2/device_authorization", "client_id=" + pub + "&device_id=" + strings.Repeat("d", 300), formType, 400, "invalid_request"},
		{"logout: JSON", "/oauth2/logout", `{"id_token_hint":"x"}`, "application/json", 400, "invalid_request"},
	} {
		r := raw(c.path, c.body, c.contentType)
		if r.status != c.status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.json(t)["error"] != c.code {
			t.Errorf("%s: %d %s %s; want %d %s", c.name, r.status, r.header.Get("Content-Type"), r.body, c.status, c.code)
			continue
		}
		wantOAuthError(t, r, c.status, c.code)
	}
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("malformed requests opened %d sessions", n)
	}
	// Over the body limit: refused from the Content-Length, as JSON.
	big := raw("/oauth2/token", pw+"&pad="+strings.Repeat("x", bodyLimit), formType)
	wantOAuthError(t, big, 413, "invalid_request")
	// A charset parameter is fine.
	wantTokens(t, raw("/oauth2/token", pw, formType+"; charset=UTF-8"))
}

// TestOAuthErrorsAreRFC6749: what no handler sees below /oauth2 and at
// the well-known paths (an unknown path, a method not served, an
// unacceptable Accept) is an RFC 6749 error too, never problem+json.
func TestOAuthErrorsAreRFC6749(t *testing.T) {
	e := newEnv(t, oauthOn{})
	for _, c := range []struct {
		method, path string
		headers      []string
		status       int
	}{
		{"GET", "/oauth2/token", nil, 405},
		{"PUT", "/oauth2/revoke", nil, 405},
		{"GET", "/oauth2/introspect", nil, 405},
		{"DELETE", "/oauth2/register", nil, 405},
		{"POST", "/.well-known/openid-configuration", nil, 405},
		{"GET", "/oauth2/nope", nil, 404},
		{"GET", "/oauth2", nil, 404},
		{"GET", "/oauth2/userinfo", []string{"Authorization", "Bearer not-a-token"}, 401},
		{"POST", "/oauth2/register", []string{"Content-Type", "text/plain"}, 401},
	} {
		r := e.do(c.method, c.path, "", "", c.headers...)
		ct := r.header.Get("Content-Type")
		if strings.Contains(ct, "problem") || !strings.HasPrefix(ct, "application/json") || r.status != c.status {
			t.Errorf("%s %s: %d %s %s; want %d with an RFC 6749 JSON error", c.method, c.path, r.status, ct, r.body, c.status)
			continue
		}
		m := r.json(t)
		if _, ok := m["error"].(string); !ok || m["code"] != nil || m["type"] != nil {
			t.Errorf("%s %s: %s; want error and error_description only", c.method, c.path, r.body)
		}
	}
	// The pages are HTML whatever Accept says, the token endpoint JSON.
	id, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}})
	authorize, _ := e.authorizeURL(id, cb, nil)
	for _, path := range []string{strings.TrimPrefix(authorize, e.url()), "/oauth2/device", "/oauth2/logout"} {
		r := e.do("GET", path, "", nil, "Accept", "text/html")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s, Accept: text/html: %d %s; want the page", path, r.status, r.header.Get("Content-Type"))
		}
	}
	r := e.postForm("/oauth2/token", vals("grant_type", "implicit", "client_id", id), "Accept", "application/jwt")
	wantOAuthError(t, r, 400, "unsupported_grant_type")

	// An admin's registration with a body that is not JSON: 415, JSON.
	r = e.do("POST", "/oauth2/register", e.admin, "x", "Content-Type", "text/plain")
	if r.status != 415 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("registration as text: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// TestOAuthAttackSignInCSRF: the sign-in and verification forms are
// taken only with the token of the cookie the page set (SameSite=Strict,
// HttpOnly, below /oauth2): a form posted from elsewhere signs nobody in.
func TestOAuthAttackSignInCSRF(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, oauthOn{Now: clk.Now})
	e.fleet()
	id, _ := e.authClient()
	u, _ := e.authorizeURL(id, cb, nil)
	victim, attacker := cookieBrowser(), cookieBrowser()
	status, h, page := httpGet(t, victim, u)
	m := formToken.FindStringSubmatch(page)
	if status != 200 || m == nil {
		t.Fatalf("sign-in page: %d", status)
	}
	cookie := h.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/oauth2"} {
		if !strings.Contains(strings.ToLower(cookie), strings.ToLower(attr)) {
			t.Errorf("form cookie %q lacks %s", cookie, attr)
		}
	}
	for name, c := range map[string]struct {
		client *http.Client
		token  string
	}{
		"without the cookie":     {attacker, m[1]},
		"without the token":      {victim, ""},
		"with another token":     {victim, strings.Repeat("A", len(m[1]))},
		"with the cookie's name": {victim, "tether_oauth_form"},
	} {
		f := vals("username", "maria", "password", "correct horse", "action", "approve")
		if c.token != "" {
			f.Set("csrf", c.token)
		}
		status, h, _ := httpPost(t, c.client, u, f)
		if status != 403 || h.Get("Location") != "" {
			t.Errorf("sign-in %s: %d Location %q; want 403 and no redirect", name, status, h.Get("Location"))
		}
	}
	// The device verification form likewise.
	dev, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{oauth.GrantDeviceCode}})
	da := e.postForm("/oauth2/device_authorization", vals("client_id", dev)).json(t)
	uc := da["user_code"].(string)
	_, _, page = httpGet(t, victim, e.url()+"/oauth2/device?user_code="+uc)
	m = formToken.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the verification page has no form")
	}
	if status, _, _ := httpPost(t, attacker, e.url()+"/oauth2/device", vals("csrf", m[1], "user_code", uc, "username", "maria", "password", "correct horse", "action", "approve")); status != 403 {
		t.Fatalf("a verification form without the cookie: %d; want 403", status)
	}
	if status, _, _ := httpPost(t, attacker, e.url()+"/oauth2/device", vals("csrf", m[1], "user_code", uc, "action", "deny")); status != 403 {
		t.Fatalf("a denial without the cookie: %d; want 403", status)
	}
	clk.Advance(6 * time.Second)
	wantOAuthError(t, e.tokenReq(vals("grant_type", oauth.GrantDeviceCode, "device_code", da["device_code"].(string), "client_id", dev)), 400, "authorization_pending")
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("%d sessions", n)
	}
}

// TestOAuthAttackCodeMisuse: a code redeemed with another redirect_uri
// than its request's, without one, or late is refused and spent; a
// loopback redirect's port is the request's, not the registration's.
func TestOAuthAttackCodeMisuse(t *testing.T) {
	clk := newFakeClock()
	e := newEnv(t, oauthOn{Now: clk.Now, Config: oauth.Config{CodeTTL: 30 * time.Second}})
	e.fleet()
	id, secret := e.authClient()
	spent := func(name string, mutate func(url.Values)) {
		t.Helper()
		code, a := e.signInCode(t, id, cb, "maria", nil)
		f := redeemForm(id, code, a, cb)
		mutate(f)
		wantOAuthError(t, e.tokenReq(f, basicAuth(id, secret)...), 400, "invalid_grant")
		wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")
		if n := len(e.oauthSessions("")); n != 0 {
			t.Fatalf("%s: %d sessions", name, n)
		}
	}
	spent("another redirect_uri", func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:7777/other") })
	spent("a longer redirect_uri", func(f url.Values) { f.Set("redirect_uri", cb+"/") })
	spent("no redirect_uri", func(f url.Values) { f.Del("redirect_uri") })

	// The loopback port of the request, not the registered one.
	other := "http://127.0.0.1:5555/cb"
	code, a := e.signInCode(t, id, other, "maria", nil)
	wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")
	code, a = e.signInCode(t, id, other, "maria", nil)
	wantTokens(t, e.tokenReq(redeemForm(id, code, a, other), basicAuth(id, secret)...))
	wantOAuthError(t, e.tokenReq(redeemForm(id, "not-a-code", a, other), basicAuth(id, secret)...), 400, "invalid_grant")
	if n := len(e.oauthSessions("")); n != 1 {
		t.Fatalf("%d sessions; want 1", n)
	}
	// Last, as it moves the provider's clock past the codes' lifetime.
	code, a = e.signInCode(t, id, cb, "maria", nil)
	clk.Advance(31 * time.Second)
	if d := wantOAuthError(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...), 400, "invalid_grant")["error_description"]; !strings.Contains(fmt.Sprint(d), "expired") {
		t.Fatalf("a late code: %v; want it said to have expired", d)
	}
	if n := len(e.oauthSessions("")); n != 1 {
		t.Fatalf("%d sessions; want 1", n)
	}
}

// TestOAuthAttackTokenConfusion: each token is taken only for what it
// is: an ID token is no access token, an access token no ID token hint
// nor refresh token, a native token no OpenID Connect token.
func TestOAuthAttackTokenConfusion(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	id, secret := e.authClient()
	rs, rsSecret := e.oauthClient(map[string]any{"grant_types": []string{"client_credentials"}})
	code, a := e.signInCode(t, id, cb, "maria", url.Values{"scope": {"openid offline_access"}})
	tok := wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb), basicAuth(id, secret)...))
	idToken, access := tok["id_token"].(string), tok["access_token"].(string)

	wantProblem(t, e.do("GET", "/v1/auth/me", idToken, nil), 401, "token_invalid")
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", idToken, nil), 401, "invalid_token")
	if r := e.postForm("/oauth2/introspect", vals("token", idToken), basicAuth(rs, rsSecret)...); string(r.body) != `{"active":false}` {
		t.Fatalf("introspection of an ID token: %s; want inactive", r.body)
	}
	wantOAuthError(t, e.postForm("/oauth2/introspect", vals("token", access), "Authorization", "Bearer "+idToken), 401, "invalid_token")
	for _, wrong := range []string{idToken, access} {
		wantOAuthError(t, e.tokenReq(vals("grant_type", "refresh_token", "refresh_token", wrong), basicAuth(id, secret)...), 400, "invalid_grant")
	}
	if status, _, _ := httpGet(t, cookieBrowser(), e.url()+"/oauth2/logout?"+vals("id_token_hint", access).Encode()); status != 400 {
		t.Fatalf("an access token as id_token_hint: %d; want 400", status)
	}
	native := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": handset(phoneIMEI)}).json(t)["accessToken"].(string)
	wantOAuthError(t, e.do("GET", "/oauth2/userinfo", native, nil), 403, "insufficient_scope")
	if status, _, _ := httpGet(t, cookieBrowser(), e.url()+"/oauth2/logout?"+vals("id_token_hint", native).Encode()); status != 400 {
		t.Fatalf("a native token as id_token_hint: %d; want 400", status)
	}
	// Nothing above ended anything.
	if r := e.do("GET", "/v1/auth/me", access, nil); r.status != 200 {
		t.Fatalf("the session after the confusion: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/auth/me", native, nil); r.status != 200 {
		t.Fatalf("the native session after the confusion: %d %s", r.status, r.body)
	}
}

// TestOAuthAttackScopeEscalation: a client gets no scope it was not
// registered for, at any endpoint; offline_access only when asked.
func TestOAuthAttackScopeEscalation(t *testing.T) {
	e := newEnv(t, oauthOn{})
	e.fleet()
	narrow, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "scope": "openid",
		"grant_types": []string{"authorization_code", "password", oauth.GrantDeviceCode, "refresh_token"}})
	u, _ := e.authorizeURL(narrow, cb, url.Values{"scope": {"openid profile"}})
	_, h, _ := httpGet(t, cookieBrowser(), u)
	if loc, _ := url.Parse(h.Get("Location")); loc == nil || loc.Query().Get("error") != "invalid_scope" {
		t.Fatalf("a wider scope at the authorization endpoint: Location %q; want invalid_scope", h.Get("Location"))
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", "password", "client_id", narrow, "username", "maria", "password", "correct horse", "scope", "openid email")), 400, "invalid_scope")
	wantOAuthError(t, e.postForm("/oauth2/device_authorization", vals("client_id", narrow, "scope", "offline_access")), 400, "invalid_scope")
	if n := len(e.oauthSessions("")); n != 0 {
		t.Fatalf("%d sessions", n)
	}
	// No scope asked: the client's, without offline_access.
	wide, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"password", "refresh_token"}})
	tok := wantTokens(t, e.tokenReq(vals("grant_type", "password", "client_id", wide, "username", "maria", "password", "correct horse")))
	if tok["scope"] != "openid profile email" {
		t.Fatalf("default scope %v; want openid profile email", tok["scope"])
	}
	for _, s := range e.oauthSessions(wide) {
		if s.Persistent {
			t.Fatal("a session without offline_access is persistent")
		}
	}
}
