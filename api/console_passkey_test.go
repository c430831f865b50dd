package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"tether/auth"
	"tether/storage"
)

// passkeysOn serves passkeys for the console at http://localhost:PORT,
// the port of the env's listener (oauthOn makes it, and the issuer URL on
// it): browsers take no IP address as a relying party id.
func passkeysOn(c *auth.Config) {
	u, err := url.Parse(c.OAuthIssuer)
	if err != nil || u.Port() == "" {
		panic("passkeysOn needs oauthOn before it")
	}
	c.WebAuthnRPID = "localhost"
	c.WebAuthnOrigins = []string{"http://localhost:" + u.Port()}
}

// virtualAuthenticator gives b's tab a platform authenticator (CTAP2,
// internal, resident keys, user verification that succeeds, presence
// without a touch), as a laptop's fingerprint reader would be; it returns
// its id.
func (b *browser) virtualAuthenticator() cdpwebauthn.AuthenticatorID {
	b.t.Helper()
	var id cdpwebauthn.AuthenticatorID
	b.run("add a virtual authenticator",
		cdpwebauthn.Enable(),
		chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			id, err = cdpwebauthn.AddVirtualAuthenticator(&cdpwebauthn.VirtualAuthenticatorOptions{
				Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Ctap2version: cdpwebauthn.Ctap2versionCtap21,
				Transport: cdpwebauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			}).Do(ctx)
			return err
		}),
	)
	return id
}

// passkeyJS is what a page needs to answer the server's WebAuthn options
// by itself: the console's own code is not on every page the tests open.
const passkeyJS = `
const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const unb64u = (s) => { const t = s.replace(/-/g, "+").replace(/_/g, "/"); return Uint8Array.from(atob(t + "=".repeat((4 - t.length % 4) % 4)), (c) => c.charCodeAt(0)); };
const ids = (list) => (list || []).map((x) => ({ ...x, id: unb64u(x.id) }));
async function assert(o) {
	const c = await navigator.credentials.get({ publicKey: { ...o, challenge: unb64u(o.challenge), allowCredentials: ids(o.allowCredentials) } });
	const r = c.response;
	return JSON.stringify({ id: c.id, rawId: b64u(c.rawId), type: c.type, clientExtensionResults: {}, response: {
		clientDataJSON: b64u(r.clientDataJSON), authenticatorData: b64u(r.authenticatorData), signature: b64u(r.signature),
		userHandle: r.userHandle ? b64u(r.userHandle) : undefined } });
}
async function create(o) {
	const c = await navigator.credentials.create({ publicKey: { ...o, challenge: unb64u(o.challenge), user: { ...o.user, id: unb64u(o.user.id) }, excludeCredentials: ids(o.excludeCredentials) } });
	return JSON.stringify({ id: c.id, rawId: b64u(c.rawId), type: c.type, clientExtensionResults: {}, response: {
		clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject), transports: c.response.getTransports() } });
}`

// webauthnCall runs create or assert (passkeyJS) in the page open in b on
// the options (JSON) and returns the credential (JSON) the browser gave.
func (b *browser) webauthnCall(fn, options string) json.RawMessage {
	b.t.Helper()
	var out string
	b.run(fn+" a credential", chromedp.Evaluate(fmt.Sprintf("(async () => { %s\nreturn await %s(%s); })()", passkeyJS, fn, options), &out,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	return json.RawMessage(out)
}

// mfaToken is the mfaToken of a login of username with its password.
func (e *env) mfaToken(t *testing.T, username string) string {
	t.Helper()
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": username, "password": "correct horse"}), 401, "mfa_required")
	if !slices.Contains(p["methods"].([]any), any("webauthn")) {
		t.Fatalf("the methods of %s are %v; want webauthn among them", username, p["methods"])
	}
	return p["mfaToken"].(string)
}

// assertionOptions are the WebAuthn options of an mfaToken, as JSON.
func (e *env) assertionOptions(t *testing.T, token string) (string, map[string]any) {
	t.Helper()
	r := e.do("POST", "/v1/auth/mfa/webauthn", "", map[string]any{"mfaToken": token})
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("assertion options: %d %v %s", r.status, r.header, r.body)
	}
	o := r.json(t)["publicKey"].(map[string]any)
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), o
}

// finish sends a passkey's answer with an mfaToken.
func (e *env) finish(token string, cred json.RawMessage) response {
	return e.do("POST", "/v1/auth/mfa/webauthn/finish", "", map[string]any{"mfaToken": token, "credential": cred})
}

// refusals are why the server refused passkey answers, as it logged them.
func refusals(e *env) []string {
	var out []string
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var l struct{ Msg, Error string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "passkey answer refused" {
			out = append(out, l.Error)
		}
	}
	return out
}

// passkeyOf is the one passkey factor of username in the store.
func (e *env) passkeyOf(t *testing.T, username string) storage.Factor {
	t.Helper()
	u, err := e.store.GetUserByUsername(t.Context(), username)
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.Factor
	if u.MFA != nil {
		for _, f := range u.MFA.Factors {
			if f.Kind == storage.FactorWebAuthn {
				out = append(out, f)
			}
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s has %d passkeys; want 1", username, len(out))
	}
	return out[0]
}

// TestConsolePasskeys drives passkeys in headless Chromium with a virtual
// authenticator (the DevTools protocol's WebAuthn domain): a manager adds
// a passkey on the Security page (after her password; her recovery codes
// come with it), signs out and in again with it (amr pwd, hwk). Then the
// attacks, with the same authenticator: an answer replayed, to the same
// step and to a new one; an answer for another account's challenge, sent
// with either account's step; an answer a look-alike page (another origin
// under the same relying party id) obtained; a signature counter gone
// backwards (a copied key). With the authenticator gone, a recovery code
// signs her in; an admin's reset removes her passkey.
func TestConsolePasskeys(t *testing.T) {
	e := newEnv(t, oauthOn{}, passkeysOn)
	e.fleet()
	b := newBrowser(t, e, 1280, 900)
	b.base = strings.Replace(b.base, "127.0.0.1", "localhost", 1)
	w := b.watch()
	authenticator := b.virtualAuthenticator()

	b.signIn("maria", "correct horse")
	b.run("open Security",
		chromedp.Click(`a[data-nav="security"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#passkey-open", chromedp.ByQuery),
		chromedp.Click("#passkey-open", chromedp.ByQuery),
		chromedp.WaitVisible("#reauth-name input", chromedp.ByQuery),
		chromedp.SendKeys("#reauth-name input", "work laptop", chromedp.ByQuery),
		chromedp.SendKeys("#reauth-password input", "correct horse", chromedp.ByQuery),
		chromedp.Click("#reauth-ok", chromedp.ByQuery),
		chromedp.WaitVisible(`#factors-table tr[data-kind="webauthn"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#security-codes [data-codes] li", chromedp.ByQuery),
	)
	if got := b.text(`#factors-table tr[data-kind="webauthn"]`); !strings.Contains(got, "Passkey") || !strings.Contains(got, "work laptop") {
		t.Fatalf("the passkey's row reads %q", got)
	}
	var codes []string
	b.eval(`[...document.querySelectorAll("#security-codes li")].map((li) => li.textContent)`, &codes)
	b.shoot("console-passkey-added.png")
	pk := e.passkeyOf(t, "maria")
	if c := pk.WebAuthn; c == nil || len(c.ID) == 0 || len(c.PublicKey) == 0 || len(c.AAGUID) != 16 || !c.UserVerified || c.BackupEligible ||
		!slices.Contains(c.Transports, "internal") || len(c.Ceremony) != 0 || pk.Name != "work laptop" {
		t.Fatalf("the stored passkey: %+v %+v", pk, pk.WebAuthn)
	}
	w.clean("adding a passkey")

	// An admin who must have a factor sets up a passkey at her first
	// sign-in, in place of an app.
	e.adminUser()
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	if at := b.signInPassword("ada", "correct horse"); at != "enroll" || !b.displayed("#enroll-passkey") {
		t.Fatalf("an admin without a factor signs in to %q (passkey offered: %v)", at, b.displayed("#enroll-passkey"))
	}
	b.shoot("console-passkey-enroll.png")
	b.run("set up a passkey at sign-in",
		chromedp.Click("#enroll-passkey", chromedp.ByQuery),
		chromedp.WaitVisible("#login-codes [data-codes] li", chromedp.ByQuery),
		chromedp.Click("#login-codes [data-done]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery),
	)
	var adaAccess string
	b.eval(`state.access`, &adaAccess)
	if amr := unverifiedClaims(t, adaAccess)["amr"]; fmt.Sprint(amr) != "[pwd hwk]" {
		t.Fatalf("an admin enrolled with a passkey has amr %v", amr)
	}
	if f := e.passkeyOf(t, "ada"); f.WebAuthn == nil || len(f.WebAuthn.Ceremony) != 0 {
		t.Fatalf("ada's passkey: %+v", f)
	}
	w.clean("an admin enrolling a passkey")

	// Sign out, and in with the passkey.
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	if at := b.signInPassword("maria", "correct horse"); at != "mfa" || !b.displayed("#passkey-use") {
		t.Fatalf("with a passkey, the password leads to %q (passkey button shown: %v)", at, b.displayed("#passkey-use"))
	}
	b.shoot("console-passkey-step.png")
	b.run("use the passkey", chromedp.Click("#passkey-use", chromedp.ByQuery), chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery))
	var access string
	b.eval(`state.access`, &access)
	if amr := unverifiedClaims(t, access)["amr"]; fmt.Sprint(amr) != "[pwd hwk]" {
		t.Fatalf("a passkey sign-in's amr is %v; want [pwd hwk]", amr)
	}
	before := pk.WebAuthn.SignCount
	if after := e.passkeyOf(t, "maria").WebAuthn.SignCount; after <= before {
		t.Fatalf("the stored signature counter went from %d to %d; want it to rise", before, after)
	}
	w.clean("signing in with a passkey")

	// A change to her factors, confirmed with the passkey.
	b.run("new recovery codes, confirmed with the passkey",
		chromedp.Click(`a[data-nav="security"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#factors-table tr[data-kind="webauthn"]`, chromedp.ByQuery),
		chromedp.Click("#recovery-open", chromedp.ByQuery),
		chromedp.WaitVisible("#reauth-passkey", chromedp.ByQuery),
		chromedp.Click("#reauth-passkey", chromedp.ByQuery),
		chromedp.WaitVisible("#security-codes [data-codes] li", chromedp.ByQuery),
	)
	var fresh []string
	b.eval(`[...document.querySelectorAll("#security-codes li")].map((li) => li.textContent)`, &fresh)
	if len(fresh) != 10 || slices.Equal(fresh, codes) {
		t.Fatalf("new codes after the passkey: %v", fresh)
	}
	codes = fresh
	w.clean("confirming with a passkey")

	// A replayed answer: it completed its step, so the step refuses it, and
	// a new step's challenge is another.
	tok := e.mfaToken(t, "maria")
	opts, _ := e.assertionOptions(t, tok)
	answer := b.webauthnCall("assert", opts)
	if r := e.finish(tok, answer); r.status != 200 {
		t.Fatalf("a fresh answer: %d %s", r.status, r.body)
	}
	wantProblem(t, e.finish(tok, answer), 401, "token_already_used")
	tok2 := e.mfaToken(t, "maria")
	wantProblem(t, e.finish(tok2, answer), 401, "invalid_credentials")
	if again, _ := e.assertionOptions(t, tok2); again == opts {
		t.Fatal("two sign-in steps have the same challenge")
	}

	// A passkey challenge to confirm a change is for one change, from the
	// session that asked for it. (A login without a handset replaces the
	// account's session without one: B replaces A.)
	signIn := func() string {
		t.Helper()
		tok := e.mfaToken(t, "maria")
		opts, _ := e.assertionOptions(t, tok)
		r := e.finish(tok, b.webauthnCall("assert", opts))
		if r.status != 200 {
			t.Fatalf("sign in with the passkey: %d %s", r.status, r.body)
		}
		return r.json(t)["accessToken"].(string)
	}
	challenge := func(access string) (string, json.RawMessage) {
		t.Helper()
		r := e.do("POST", "/v1/auth/factors/webauthn/reauth", access, nil)
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("reauth challenge: %d %s", r.status, r.body)
		}
		opts, _ := json.Marshal(r.json(t)["options"].(map[string]any)["publicKey"])
		return r.json(t)["passkeyToken"].(string), b.webauthnCall("assert", string(opts))
	}
	regenerate := func(access, token string, answer json.RawMessage) response {
		return e.do("POST", "/v1/auth/recovery-codes", access, map[string]any{"passkeyToken": token, "credential": answer})
	}
	tokA, answerA := challenge(signIn())
	accessB := signIn()
	p := wantProblem(t, regenerate(accessB, tokA, answerA), 400, "validation_failed")
	if !strings.Contains(fmt.Sprint(p["errors"]), "passkey_token_invalid") {
		t.Fatalf("another session's challenge: %v", p)
	}
	tokB, answerB := challenge(accessB)
	r := regenerate(accessB, tokB, answerB)
	if r.status != 200 {
		t.Fatalf("the session's own challenge: %d %s", r.status, r.body)
	}
	codes = nil
	for _, c := range r.json(t)["recoveryCodes"].([]any) {
		codes = append(codes, c.(string))
	}
	p = wantProblem(t, regenerate(accessB, tokB, answerB), 400, "validation_failed")
	if !strings.Contains(fmt.Sprint(p["errors"]), "passkey_token_invalid") {
		t.Fatalf("the challenge used again: %v", p)
	}

	// Another account with a passkey in the same authenticator.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "nora", "password": "correct horse", "role": "manager"}); r.status != 201 {
		t.Fatalf("nora: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/auth/login", "", map[string]any{"username": "nora", "password": "correct horse"})
	if r.status != 200 {
		t.Fatalf("nora's login: %d %s", r.status, r.body)
	}
	nora := r.json(t)["accessToken"].(string)
	r = e.do("POST", "/v1/auth/factors/webauthn", nora, map[string]any{"password": "correct horse", "name": ""})
	if r.status != 200 {
		t.Fatalf("nora's passkey: %d %s", r.status, r.body)
	}
	creation, _ := json.Marshal(r.json(t)["options"].(map[string]any)["publicKey"])
	if r := e.do("POST", "/v1/auth/factors/webauthn/confirm", nora, map[string]any{"credential": b.webauthnCall("create", string(creation))}); r.status != 201 {
		t.Fatalf("confirm nora's passkey: %d %s", r.status, r.body)
	}
	mariaTok, noraTok := e.mfaToken(t, "maria"), e.mfaToken(t, "nora")
	mariaOpts, mariaO := e.assertionOptions(t, mariaTok)
	_, noraO := e.assertionOptions(t, noraTok)
	// Maria's passkey signs nora's challenge.
	crossed := mariaO
	crossed["challenge"] = noraO["challenge"]
	crossedJSON, _ := json.Marshal(crossed)
	mariaOnNora := b.webauthnCall("assert", string(crossedJSON))
	wantProblem(t, e.finish(noraTok, mariaOnNora), 401, "invalid_credentials")
	wantProblem(t, e.finish(mariaTok, mariaOnNora), 401, "invalid_credentials")
	// Nora's passkey answers nora's step, but not maria's.
	noraJSON, _ := json.Marshal(noraO)
	noraAnswer := b.webauthnCall("assert", string(noraJSON))
	wantProblem(t, e.finish(mariaTok, noraAnswer), 401, "invalid_credentials")
	if r := e.finish(noraTok, noraAnswer); r.status != 200 {
		t.Fatalf("nora's own answer: %d %s", r.status, r.body)
	}

	// A look-alike page on another origin under the same relying party id
	// (localhost, another port) gets an answer from maria's passkey: the
	// server refuses it for its origin.
	lookalike := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Tether console</title><p>Sign in")
	}))
	defer lookalike.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(lookalike.URL, "http://"))
	b.run("open the look-alike", chromedp.Navigate("http://localhost:"+port+"/"))
	phished := b.webauthnCall("assert", mariaOpts)
	wantProblem(t, e.finish(mariaTok, phished), 401, "invalid_credentials")
	if got := refusals(e); !slices.Equal(got, []string{
		"Error validating challenge",                          // replayed to a new step
		"The credential ID provided is not owned by the user", // maria's answer, nora's step
		"Error validating challenge",                          // maria's answer to nora's challenge, maria's step
		"The credential ID provided is not owned by the user", // nora's answer, maria's step
		"Error validating origin",                             // the look-alike's
	}) {
		t.Fatalf("the answers were refused for %q", got)
	}

	// A copied key: its counter is behind the one the server saw last.
	if _, err := e.store.UpdateUser(t.Context(), e.userIDOf("maria"), func(u storage.User) (storage.User, error) {
		for i := range u.MFA.Factors {
			if u.MFA.Factors[i].WebAuthn != nil {
				u.MFA.Factors[i].WebAuthn.SignCount = 1 << 30
			}
		}
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	if at := b.signInPassword("maria", "correct horse"); at != "mfa" {
		t.Fatalf("the password leads to %q", at)
	}
	b.run("use the passkey behind the counter", chromedp.Click("#passkey-use", chromedp.ByQuery), chromedp.WaitVisible("#flash.bad", chromedp.ByQuery))
	if got := b.text("#flash"); !strings.Contains(got, "does not fit this sign-in") || b.displayed("#fleet-view") {
		t.Fatalf("a passkey behind its counter: %q", got)
	}
	if !strings.Contains(e.logs.String(), "signature counter went backwards") {
		t.Fatal("the counter gone backwards is not logged")
	}
	if !w.expect("status of 401") {
		t.Fatal("the browser did not report the refused answer")
	}

	// The passkey lost: a recovery code signs her in.
	b.run("lose the authenticator", cdpwebauthn.RemoveVirtualAuthenticator(authenticator))
	b.run("a recovery code",
		chromedp.SendKeys("#mfa-form input[name=code]", codes[0], chromedp.ByQuery),
		chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery),
	)
	w.clean("a recovery code after the passkey is lost")

	// An admin's reset removes the passkey.
	r = e.do("POST", "/v1/users/"+e.userIDOf("maria")+"/mfa/reset", e.admin, nil)
	if r.status != 200 {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if u, err := e.store.GetUserByUsername(t.Context(), "maria"); err != nil || u.MFA.Confirmed() {
		t.Fatalf("after the reset maria has %+v (%v)", u.MFA, err)
	}
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"}); r.status != 200 {
		t.Fatalf("after the reset maria's password alone: %d %s", r.status, r.body)
	}

	// At an address the server takes no passkey answers from, the page
	// offers none, and says where.
	b.base = strings.Replace(b.base, "localhost", "127.0.0.1", 1)
	b.signIn("maria", "correct horse")
	b.run("Security at another address", chromedp.Click(`a[data-nav="security"]`, chromedp.ByQuery), chromedp.WaitVisible("#passkeys-off", chromedp.ByQuery))
	if got := b.text("#passkeys-off"); !strings.Contains(got, strings.Replace(b.base, "127.0.0.1", "localhost", 1)+"/console") || b.displayed("#passkey-open") {
		t.Fatalf("at another address the page says %q (Add a passkey shown: %v)", got, b.displayed("#passkey-open"))
	}
}
