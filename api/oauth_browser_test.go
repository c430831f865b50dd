package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// pageWatch records what one browser tab saw: the headers of every
// document it loaded, and every error the page or the browser reported
// on its console (CSP violations are among them).
type pageWatch struct {
	t        *testing.T
	mu       sync.Mutex
	docs     map[string]network.Headers
	status   map[string]int64
	problems []string
}

// watch starts recording b's tab.
func (b *browser) watch() *pageWatch {
	w := &pageWatch{t: b.t, docs: map[string]network.Headers{}, status: map[string]int64{}}
	b.w = w
	chromedp.ListenTarget(b.ctx, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument {
				w.docs[ev.Response.URL] = ev.Response.Headers
				w.status[ev.Response.URL] = ev.Response.Status
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.LevelError || ev.Entry.Level == log.LevelWarning {
				w.problems = append(w.problems, fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning || ev.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				w.problems = append(w.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			w.problems = append(w.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	})
	return w
}

// clean fails the test if the page reported anything since the last
// call, and forgets it.
func (w *pageWatch) clean(where string) {
	w.t.Helper()
	w.mu.Lock()
	problems := w.problems
	w.problems = nil
	w.mu.Unlock()
	if len(problems) > 0 {
		w.t.Fatalf("%s: the browser reported:\n%s", where, strings.Join(problems, "\n"))
	}
}

// expect waits up to 5 seconds for a report that contains s, and forgets
// the reports that contain it (and only those).
func (w *pageWatch) expect(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		w.mu.Lock()
		var rest []string
		for _, p := range w.problems {
			if !strings.Contains(p, s) {
				rest = append(rest, p)
			}
		}
		found := len(rest) < len(w.problems)
		w.problems = rest
		w.mu.Unlock()
		if found {
			return true
		}
	}
	return false
}

// csp is the Content-Security-Policy the browser got with the document at
// u, and its status; it fails the test if the browser loaded no such
// document.
func (w *pageWatch) csp(u string) (string, int64) {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	h, ok := w.docs[u]
	if !ok {
		var seen []string
		for k := range w.docs {
			seen = append(seen, k)
		}
		w.t.Fatalf("the browser loaded no document at %s; it loaded %q", u, seen)
	}
	for k, v := range h {
		if strings.EqualFold(k, "Content-Security-Policy") {
			s, _ := v.(string)
			return s, w.status[u]
		}
	}
	return "", w.status[u]
}

// strictCSP checks that the page at u came with the console's CSP, its
// form-action allowing formAction alone beside 'self' ("" for none).
func (w *pageWatch) strictCSP(u, formAction string) {
	w.t.Helper()
	csp, _ := w.csp(u)
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			w.t.Fatalf("%s: CSP %q lacks %s", u, csp, want)
		}
	}
	want := "form-action 'self';"
	if formAction != "" {
		want = "form-action 'self' " + formAction + ";"
	}
	if !strings.Contains(csp, want) {
		w.t.Fatalf("%s: CSP %q; want %s", u, csp, want)
	}
}

// location is the tab's URL.
func (b *browser) location() string {
	b.t.Helper()
	var u string
	b.run("read the location", chromedp.Location(&u))
	return u
}

// styled checks that the page drew with the stylesheet: a white card with
// rounded corners, nothing wider than the window.
func (b *browser) styled(name string) {
	b.t.Helper()
	var got struct {
		Radius string `json:"radius"`
		Fits   bool   `json:"fits"`
		Font   string `json:"font"`
	}
	// A page just shown may still be loading its stylesheet.
	var loaded bool
	b.run("wait for "+name+" to load", chromedp.Poll(`document.readyState === "complete"`, &loaded))
	b.eval(`(() => { const c = getComputedStyle(document.querySelector(".card"));
		return { radius: c.borderRadius, font: getComputedStyle(document.body).fontFamily,
			fits: document.documentElement.scrollWidth <= window.innerWidth }; })()`, &got)
	if got.Radius != "10px" || !strings.Contains(got.Font, "system-ui") {
		b.t.Fatalf("%s is not styled: card radius %q, font %q", name, got.Radius, got.Font)
	}
	if !got.Fits {
		b.t.Fatalf("%s is wider than the window", name)
	}
}

// shoot saves a screenshot of the whole page.
func (b *browser) shoot(name string) {
	b.t.Helper()
	var shot []byte
	b.run("screenshot "+name, chromedp.FullScreenshot(&shot, 100))
	b.save(name, shot)
}

// unverifiedClaims reads a JWT's claims without checking it (the test
// checks the token elsewhere).
func unverifiedClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// nextRedirect is the query of the next redirect the loopback listener
// got, passing over the browser's requests for a favicon (no query).
func nextRedirect(t *testing.T, got <-chan url.Values) url.Values {
	t.Helper()
	for {
		select {
		case q := <-got:
			if len(q) > 0 {
				return q
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the app's redirect URI was not called")
		}
	}
}

// noRedirect fails if the loopback listener got a redirect.
func noRedirect(t *testing.T, got <-chan url.Values, after string) {
	t.Helper()
	for {
		select {
		case q := <-got:
			if len(q) > 0 {
				t.Fatalf("%s, the app's redirect URI was called with %v", after, q)
			}
		default:
			return
		}
	}
}

// bearerStatus is the status of userinfo asked with an access token.
func bearerStatus(t *testing.T, issuer, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", issuer+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestBrowserOAuthCodeFlow is the authorization-code flow as a native app
// drives it (RFC 8252): a public client with a loopback redirect URI
// registered without a port, PKCE S256 and the handset's payload; the
// person signs in on Tether's page in a real browser, at phone size. A
// wrong password first, then the right one; the browser lands on the
// app's loopback listener with code, state and iss; the code redeems with
// golang.org/x/oauth2 and the tokens work. Then Cancel, a redirect URI
// the client did not register, and RP-initiated logout's page. Every page
// comes with the console's CSP, and the browser reports no error.
func TestBrowserOAuthCodeFlow(t *testing.T) {
	e := newEnv(t, oauthOn{})
	issuer := e.url()
	phone, _ := e.fleet()
	redirect, got := loopbackCatcher(t)
	ru, _ := url.Parse(redirect)
	appOrigin := "http://" + ru.Host
	clientID, secret := e.oauthClient(map[string]any{
		"client_name": "Field app", "application_type": "native", "token_endpoint_auth_method": "none",
		// The app listens on whatever port the system gives it.
		"redirect_uris": []string{"http://127.0.0.1/callback"},
		"grant_types":   []string{"authorization_code", "refresh_token"},
	})
	if secret != "" {
		t.Fatal("a public client got a secret")
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	conf := oauth2.Config{ClientID: clientID, Endpoint: endpoint, RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}}
	payload, err := json.Marshal(handset("490154203237518"))
	if err != nil {
		t.Fatal(err)
	}
	verifier := oauth2.GenerateVerifier()
	state, nonce := "st-"+verifier[:10], "n-"+verifier[10:20]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce),
		oauth2.SetAuthURLParam("device", string(payload)))

	// A phone's screen: Custom Tabs show this page on the handset.
	b := newBrowser(t, e, 1280, 900)
	w := b.watch()
	b.run("open the sign-in page",
		chromedp.EmulateViewport(412, 915, chromedp.EmulateMobile),
		chromedp.Navigate(authURL),
		chromedp.WaitVisible("#submit", chromedp.ByQuery),
	)
	// The watch must see a CSP violation for its silence to mean anything.
	b.run("break the CSP on purpose", chromedp.Evaluate(`document.body.append(Object.assign(document.createElement("img"), {src: "https://tether.invalid/x.png"}))`, nil))
	if !w.expect("Content Security Policy") {
		t.Fatal("an image from another origin was loaded with no CSP report: the watch hears nothing")
	}
	b.run("reload", chromedp.Navigate(authURL), chromedp.WaitVisible("#submit", chromedp.ByQuery))
	w.strictCSP(authURL, appOrigin)
	if csp, status := w.csp(authURL); status != 200 {
		t.Fatalf("the sign-in page: %d (CSP %q)", status, csp)
	}
	if says := b.text("main .muted"); says != "Field app asks you to sign in on samsung SM-G991B." {
		t.Fatalf("the sign-in page says %q; want the client and the handset named", says)
	}
	b.styled("the sign-in page")
	b.shoot("oauth-signin.png")
	w.clean("the sign-in page")

	b.run("sign in with a wrong password",
		chromedp.SendKeys("input[name=username]", "walter", chromedp.ByQuery),
		chromedp.SendKeys("input[name=password]", "wrong horse", chromedp.ByQuery),
		chromedp.Click("#submit", chromedp.ByQuery),
		chromedp.WaitVisible("#error", chromedp.ByQuery),
	)
	if msg := b.text("#error"); msg != "The username or password is wrong." {
		t.Fatalf("after a wrong password the page says %q", msg)
	}
	if loc := b.location(); loc != authURL || strings.Contains(loc, "horse") || strings.Contains(loc, "password=") {
		t.Fatalf("after a wrong password the browser is at %s; want the sign-in page's own URL, no credentials", loc)
	}
	var fields struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	b.eval(`({ username: document.querySelector("input[name=username]").value, password: document.querySelector("input[name=password]").value })`, &fields)
	var focused string
	b.eval(`document.activeElement.name`, &focused)
	if fields.Username != "walter" || fields.Password != "" || focused != "password" {
		t.Fatalf("after a wrong password the form holds %+v, the focus on %q; want the username kept, the password empty and focused", fields, focused)
	}
	if _, status := w.csp(authURL); status != 400 {
		t.Fatalf("a wrong password answers %d; want 400 (a page, not a challenge)", status)
	}
	w.strictCSP(authURL, appOrigin)
	b.styled("the sign-in page with an error")
	b.shoot("oauth-signin-error.png")
	noRedirect(t, got, "after a wrong password")
	// Chromium logs the status of the page itself; that is all it may log.
	if !w.expect("status of 400 (Bad Request) (" + authURL + ")") {
		t.Fatal("Chromium did not log the page's 400: the watch hears nothing")
	}
	w.clean("the sign-in page after a wrong password")

	b.run("sign in",
		chromedp.SendKeys("input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.Click("#submit", chromedp.ByQuery),
		chromedp.WaitVisible("#done", chromedp.ByQuery),
	)
	landed, err := url.Parse(b.location())
	if err != nil {
		t.Fatal(err)
	}
	q := landed.Query()
	if at := landed.Scheme + "://" + landed.Host + landed.Path; at != redirect {
		t.Fatalf("the browser landed at %s; want the app's %s", at, redirect)
	}
	if q.Get("code") == "" || q.Get("state") != state || q.Get("iss") != issuer || strings.Contains(landed.String(), "horse") {
		t.Fatalf("the authorization response is %v; want a code, state %q and iss %q", q, state, issuer)
	}
	if caught := nextRedirect(t, got); caught.Get("code") != q.Get("code") {
		t.Fatalf("the app's listener got %v", caught)
	}
	w.clean("signing in")

	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("redeem the code: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("the ID token: %v", err)
	}
	if idt.Nonce != nonce || idt.VerifyAccessToken(tok.AccessToken) != nil {
		t.Fatalf("the ID token's nonce %q (want %q) or at_hash does not match", idt.Nonce, nonce)
	}
	if did := unverifiedClaims(t, tok.AccessToken)["did"]; did != phone {
		t.Fatalf("the access token is bound to %v; want the handset %s", did, phone)
	}
	status, info := bearerStatus(t, issuer, tok.AccessToken)
	if status != 200 || info["sub"] != idt.Subject || info["preferred_username"] != "walter" {
		t.Fatalf("userinfo with the access token: %d %v", status, info)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil || fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}

	// Cancel sends the browser back to the app with access_denied.
	cancelURL := conf.AuthCodeURL("st-cancel", oauth2.S256ChallengeOption(verifier))
	b.run("cancel",
		chromedp.Navigate(cancelURL),
		chromedp.WaitVisible("#cancel", chromedp.ByQuery),
		chromedp.Click("#cancel", chromedp.ByQuery),
		chromedp.WaitVisible("#done", chromedp.ByQuery),
	)
	landed, err = url.Parse(b.location())
	if err != nil {
		t.Fatal(err)
	}
	if q := landed.Query(); !strings.HasPrefix(landed.String(), redirect+"?") || q.Get("error") != "access_denied" || q.Get("state") != "st-cancel" || q.Get("iss") != issuer || q.Has("code") {
		t.Fatalf("Cancel landed at %s; want the app's redirect URI with error=access_denied, the state and iss", landed)
	}
	if caught := nextRedirect(t, got); caught.Get("error") != "access_denied" {
		t.Fatalf("the app's listener got %v", caught)
	}
	w.strictCSP(cancelURL, appOrigin)
	w.clean("Cancel")

	// A redirect URI the client did not register: an error page, and the
	// browser goes nowhere.
	for _, bad := range []string{appOrigin + "/elsewhere", "http://127.0.0.1.nip.io/callback"} {
		c := conf
		c.RedirectURL = bad
		badURL := c.AuthCodeURL("st-bad", oauth2.S256ChallengeOption(verifier))
		b.run("open a link with the redirect URI "+bad,
			chromedp.Navigate(badURL),
			chromedp.WaitVisible("#error", chromedp.ByQuery),
		)
		if title, msg := b.text("h1"), b.text("#error"); title != "This sign-in link is not valid" || msg != "The redirect_uri is not one the client registered." {
			t.Fatalf("a link to %s shows %q: %q", bad, title, msg)
		}
		if hint := b.text("#message"); !strings.Contains(hint, "Go back to the app") {
			t.Fatalf("a link to %s tells the person %q; want what to do", bad, hint)
		}
		var forms int
		b.eval(`document.forms.length`, &forms)
		if forms != 0 || b.location() != badURL {
			t.Fatalf("a link to %s shows %d forms at %s; want none, and no redirect", bad, forms, b.location())
		}
		if _, status := w.csp(badURL); status != 400 {
			t.Fatalf("a link to %s answers %d; want 400", bad, status)
		}
		w.strictCSP(badURL, "")
		b.styled("the invalid link page")
		noRedirect(t, got, "after a link with an unregistered redirect URI")
		if !w.expect("status of 400 (Bad Request) (" + badURL + ")") {
			t.Fatal("Chromium did not log the page's 400: the watch hears nothing")
		}
		w.clean("the invalid link page")
	}
	b.shoot("oauth-invalid-link.png")

	// RP-initiated logout with the ID token: the signed-out page, and the
	// session is over.
	logoutURL := issuer + "/oauth2/logout?id_token_hint=" + url.QueryEscape(rawID)
	b.run("sign out", chromedp.Navigate(logoutURL), chromedp.WaitVisible("#message", chromedp.ByQuery))
	if title, msg := b.text("h1"), b.text("#message"); title != "Signed out" || !strings.Contains(msg, "You are signed out") {
		t.Fatalf("the signed-out page shows %q: %q", title, msg)
	}
	w.strictCSP(logoutURL, "")
	b.styled("the signed-out page")
	b.shoot("oauth-signed-out.png")
	w.clean("the signed-out page")
	if status, _ := bearerStatus(t, issuer, fresh.AccessToken); status != 401 {
		t.Fatalf("userinfo after signing out: %d; want 401", status)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); err == nil {
		t.Fatal("the refresh token still works after signing out")
	}
}

// devicePoll asks the token endpoint for the device code's tokens.
func devicePoll(t *testing.T, issuer, clientID, code string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(issuer+"/oauth2/token", url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {code}, "client_id": {clientID},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// TestBrowserOAuthDevicePage is the device flow (RFC 8628) as a person
// sees it: a shared handset shows a code; on another screen they open
// the verification page, type the code (a wrong one first), see which app
// and which handset ask, sign in and approve; the handset's next poll
// gets tokens bound to it. A second code is denied. Every page comes with
// the console's CSP, and the browser reports no error.
func TestBrowserOAuthDevicePage(t *testing.T) {
	e := newEnv(t, oauthOn{})
	issuer := e.url()
	_, other := e.fleet()
	clientID, _ := e.oauthClient(map[string]any{
		"client_name": "Warehouse scanner", "token_endpoint_auth_method": "none",
		"grant_types": []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"},
	})
	payload, err := json.Marshal(handset("356938035643809"))
	if err != nil {
		t.Fatal(err)
	}
	authorize := func() map[string]any {
		t.Helper()
		resp, err := http.PostForm(issuer+"/oauth2/device_authorization", url.Values{
			"client_id": {clientID}, "scope": {"openid profile"}, "device": {string(payload)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("device authorization: %d %v %v", resp.StatusCode, m, err)
		}
		return m
	}
	da := authorize()
	verify, userCode, deviceCode := da["verification_uri"].(string), da["user_code"].(string), da["device_code"].(string)
	if verify != issuer+"/oauth2/device" {
		t.Fatalf("verification_uri %s", verify)
	}
	if status, m := devicePoll(t, issuer, clientID, deviceCode); status != 400 || m["error"] != "authorization_pending" {
		t.Fatalf("a poll before approval: %d %v; want authorization_pending", status, m)
	}

	b := newBrowser(t, e, 1280, 800)
	w := b.watch()
	b.run("open the verification page", chromedp.Navigate(verify), chromedp.WaitVisible("#next", chromedp.ByQuery))
	w.strictCSP(verify, "")
	b.styled("the code page")
	b.shoot("oauth-device-code.png")
	w.clean("the code page")

	wrong := verify + "?user_code=BCDF-GHJK"
	if strings.EqualFold(userCode, "BCDF-GHJK") {
		wrong = verify + "?user_code=ZXWV-TSRQ"
	}
	b.run("type a wrong code",
		chromedp.SendKeys("input[name=user_code]", strings.TrimPrefix(wrong, verify+"?user_code="), chromedp.ByQuery),
		chromedp.Click("#next", chromedp.ByQuery),
		chromedp.WaitVisible("#error", chromedp.ByQuery),
	)
	if msg := b.text("#error"); !strings.Contains(msg, "No sign-in is waiting for this code") {
		t.Fatalf("a wrong code says %q", msg)
	}
	if !b.displayed("#next") || b.displayed("input[name=password]") {
		t.Fatal("after a wrong code the page does not ask for the code again")
	}
	var kept string
	b.eval(`document.querySelector("input[name=user_code]").value`, &kept)
	if want := strings.TrimPrefix(wrong, verify+"?user_code="); kept != want {
		t.Fatalf("after a wrong code the field holds %q; want %q, to be checked", kept, want)
	}
	w.strictCSP(wrong, "")
	if !w.expect("status of 404 (Not Found) (" + wrong + ")") {
		t.Fatal("Chromium did not log the page's 404: the watch hears nothing")
	}
	w.clean("a wrong code")

	// People type codes as they come: lower case, no dash.
	typed := strings.ToLower(strings.ReplaceAll(userCode, "-", ""))
	b.run("type the code",
		chromedp.Evaluate(`document.querySelector("input[name=user_code]").value = ""`, nil),
		chromedp.SendKeys("input[name=user_code]", typed, chromedp.ByQuery),
		chromedp.Click("#next", chromedp.ByQuery),
		chromedp.WaitVisible("input[name=password]", chromedp.ByQuery),
	)
	if says := b.text("main .muted"); says != "Warehouse scanner asks you to sign in on samsung SM-G991B (IMEI ending 3809)." {
		t.Fatalf("the approval page says %q; want the client and the handset named", says)
	}
	var shown string
	b.eval(`document.querySelector("input[name=user_code]").value`, &shown)
	if shown != userCode {
		t.Fatalf("the approval page shows the code %q; want %q", shown, userCode)
	}
	b.styled("the approval page")
	b.shoot("oauth-device-signin.png")
	w.clean("the approval page")

	b.run("approve",
		chromedp.SendKeys("input[name=username]", "walter", chromedp.ByQuery),
		chromedp.SendKeys("input[name=password]", "correct horse", chromedp.ByQuery),
		chromedp.Click("#submit", chromedp.ByQuery),
		chromedp.WaitVisible("#message", chromedp.ByQuery),
	)
	if title := b.text("h1"); title != "Handset signed in" {
		t.Fatalf("after approving, the page says %q", title)
	}
	w.strictCSP(verify, "")
	b.styled("the approved page")
	b.shoot("oauth-device-done.png")
	w.clean("approving")

	status, tok := devicePoll(t, issuer, clientID, deviceCode)
	if status != 200 || tok["access_token"] == nil || tok["id_token"] == nil {
		t.Fatalf("the poll after approval: %d %v", status, tok)
	}
	if did := unverifiedClaims(t, tok["access_token"].(string))["did"]; did != other {
		t.Fatalf("the access token is bound to %v; want the handset %s", did, other)
	}
	if status, info := bearerStatus(t, issuer, tok["access_token"].(string)); status != 200 || info["preferred_username"] != "walter" {
		t.Fatalf("userinfo with the handset's token: %d %v", status, info)
	}

	// A second code, denied: the handset is told so.
	da = authorize()
	b.run("deny",
		chromedp.Navigate(da["verification_uri_complete"].(string)),
		chromedp.WaitVisible("#cancel", chromedp.ByQuery),
		chromedp.Click("#cancel", chromedp.ByQuery),
		chromedp.WaitVisible("#message", chromedp.ByQuery),
	)
	if title := b.text("h1"); title != "Sign-in denied" {
		t.Fatalf("after denying, the page says %q", title)
	}
	w.clean("denying")
	if status, m := devicePoll(t, issuer, clientID, da["device_code"].(string)); status != 400 || m["error"] != "access_denied" {
		t.Fatalf("the poll after denial: %d %v; want access_denied", status, m)
	}
}
