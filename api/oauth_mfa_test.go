package api_test

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"tether/auth"
	"tether/oauth"
)

var (
	stepField   = regexp.MustCompile(`name="step" value="([a-z]+)"`)
	stepToken   = regexp.MustCompile(`name="step_token" value="([^"]+)"`)
	secretField = regexp.MustCompile(`id="secret" value="([A-Z2-7]+)"`)
	codeItem    = regexp.MustCompile(`<li>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</li>`)
)

// pageForm is what a page's form carries: its CSRF token, step and step
// token.
type pageForm struct{ csrf, step, token string }

func formOf(t testing.TB, page string) pageForm {
	t.Helper()
	var f pageForm
	if m := formToken.FindStringSubmatch(page); m != nil {
		f.csrf = m[1]
	}
	if m := stepField.FindStringSubmatch(page); m != nil {
		f.step = m[1]
	}
	if m := stepToken.FindStringSubmatch(page); m != nil {
		f.token = m[1]
	}
	return f
}

// idTokenAMR redeems a code and returns the amr of the ID token and of
// the access token.
func (e *env) redeemAMR(t testing.TB, id, code string, a authz) ([]any, []any) {
	t.Helper()
	tok := wantTokens(t, e.tokenReq(redeemForm(id, code, a, cb)))
	idt := e.verifyJWT(t, tok["id_token"].(string))
	at := e.verifyJWT(t, tok["access_token"].(string))
	idAMR, _ := idt["amr"].([]any)
	atAMR, _ := at["amr"].([]any)
	return idAMR, atAMR
}

// TestOAuthSignInPageSecondFactor: the sign-in page asks an account with
// a second factor for a code after its password, again after a wrong one,
// and then issues the code: the ID token and the access token carry amr
// ["pwd","otp"]. An admin who must enroll one sets up an authenticator
// app there (a QR code and the key), sees the recovery codes once, and
// goes on; amr ["pwd","otp"] too. Steps used or forged send the person
// back to the password.
func TestOAuthSignInPageSecondFactor(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, oauthOn{}, clk)
	e.fleet()
	app, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "redirect_uris": []string{cb}, "grant_types": []string{"authorization_code"}})
	ada := e.enrolledUser(t, clk, "ada", "admin")

	// A worker and a manager without a factor: as before, amr ["pwd"].
	code, a := e.signInCode(t, app, cb, "maria", nil)
	if idAMR, atAMR := e.redeemAMR(t, app, code, a); !slices.Equal(idAMR, []any{"pwd"}) || !slices.Equal(atAMR, []any{"pwd"}) {
		t.Fatalf("maria: amr %v / %v; want [pwd]", idAMR, atAMR)
	}

	u, a := e.authorizeURL(app, cb, nil)
	b := cookieBrowser()
	_, _, page := httpGet(t, b, u)
	status, _, page := httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "username", "ada", "password", "correct horse", "action", "approve"))
	f := formOf(t, page)
	if status != 200 || f.step != "mfa" || f.token == "" || !strings.Contains(page, `id="code"`) || strings.Contains(page, `name="password"`) {
		t.Fatalf("after the password: %d %+v\n%s", status, f, page)
	}
	status, _, page = httpPost(t, b, u, vals("csrf", f.csrf, "step", "mfa", "step_token", f.token, "code", "000000", "action", "approve"))
	if g := formOf(t, page); status != 400 || g.step != "mfa" || g.token != f.token || !strings.Contains(page, "code is wrong") {
		t.Fatalf("a wrong code: %d %+v\n%s", status, g, page)
	}
	f = formOf(t, page)
	clk.next()
	status, h, page := httpPost(t, b, u, vals("csrf", f.csrf, "step", "mfa", "step_token", f.token, "code", clk.code(t, ada.secret), "action", "approve"))
	if status != http.StatusSeeOther {
		t.Fatalf("the right code: %d\n%s", status, page)
	}
	loc, _ := url.Parse(h.Get("Location"))
	if idAMR, atAMR := e.redeemAMR(t, app, loc.Query().Get("code"), a); !slices.Equal(idAMR, []any{"pwd", "otp"}) || !slices.Equal(atAMR, []any{"pwd", "otp"}) {
		t.Fatalf("ada: amr %v / %v; want [pwd otp]", idAMR, atAMR)
	}
	// The step again: back to the password.
	status, _, page = httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "step", "mfa", "step_token", f.token, "code", clk.code(t, ada.secret), "action", "approve"))
	if status == http.StatusSeeOther || !strings.Contains(page, `name="password"`) {
		t.Fatalf("the step again: %d\n%s", status, page)
	}
	_, _, page = httpGet(t, b, u)
	status, _, page = httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "step", "mfa", "step_token", "stp_forged.AAAA", "code", "123456", "action", "approve"))
	if status != 400 || !strings.Contains(page, `name="password"`) {
		t.Fatalf("a forged step: %d\n%s", status, page)
	}

	// An admin who must enroll: QR, key, first code, recovery codes, on.
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "root", "password": "correct horse", "role": "admin"}); r.status != 201 {
		t.Fatal(r.status)
	}
	u, a = e.authorizeURL(app, cb, nil)
	b = cookieBrowser()
	_, _, page = httpGet(t, b, u)
	_, _, page = httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "username", "root", "password", "correct horse", "action", "approve"))
	f = formOf(t, page)
	m := secretField.FindStringSubmatch(page)
	if f.step != "enroll" || m == nil || !strings.Contains(page, `<svg viewBox=`) {
		t.Fatalf("enroll page: %+v\n%s", f, page)
	}
	secret := m[1]
	status, _, page = httpPost(t, b, u, vals("csrf", f.csrf, "step", "enroll", "step_token", f.token, "code", "000000", "action", "approve"))
	if g := formOf(t, page); status != 400 || g.step != "enroll" || !strings.Contains(page, `value="`+secret+`"`) {
		t.Fatalf("a wrong first code: %d %+v; want the same key again\n%s", status, g, page)
	}
	f = formOf(t, page)
	status, _, page = httpPost(t, b, u, vals("csrf", f.csrf, "step", "enroll", "step_token", f.token, "code", clk.code(t, secret), "action", "approve"))
	codes := codeItem.FindAllStringSubmatch(page, -1)
	f = formOf(t, page)
	if status != 200 || f.step != "resume" || len(codes) != 10 || !strings.Contains(page, `download="tether-recovery-codes.txt" href="data:text/plain`) {
		t.Fatalf("recovery codes page: %d %+v, %d codes\n%s", status, f, len(codes), page)
	}
	status, h, page = httpPost(t, b, u, vals("csrf", f.csrf, "step", "resume", "step_token", f.token, "action", "approve"))
	if status != http.StatusSeeOther {
		t.Fatalf("resume: %d\n%s", status, page)
	}
	loc, _ = url.Parse(h.Get("Location"))
	if idAMR, _ := e.redeemAMR(t, app, loc.Query().Get("code"), a); !slices.Equal(idAMR, []any{"pwd", "otp"}) {
		t.Fatalf("root: amr %v; want [pwd otp]", idAMR)
	}
	_, _, page = httpGet(t, b, u)
	status, _, page = httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "step", "resume", "step_token", f.token, "action", "approve"))
	if status == http.StatusSeeOther || !strings.Contains(page, `name="password"`) {
		t.Fatalf("resume again: %d\n%s", status, page)
	}
	// One of the codes signs root in at the page.
	u, a = e.authorizeURL(app, cb, nil)
	_, _, page = httpGet(t, b, u)
	_, _, page = httpPost(t, b, u, vals("csrf", formOf(t, page).csrf, "username", "root", "password", "correct horse", "action", "approve"))
	f = formOf(t, page)
	status, h, page = httpPost(t, b, u, vals("csrf", f.csrf, "step", "mfa", "step_token", f.token, "code", codes[4][1], "action", "approve"))
	if status != http.StatusSeeOther {
		t.Fatalf("a recovery code: %d\n%s", status, page)
	}
	loc, _ = url.Parse(h.Get("Location"))
	if idAMR, _ := e.redeemAMR(t, app, loc.Query().Get("code"), a); !slices.Equal(idAMR, []any{"pwd", "recovery"}) {
		t.Fatalf("root with a recovery code: amr %v; want [pwd recovery]", idAMR)
	}
	// Audited as sign-ins with their amr.
	audit := e.do("GET", "/v1/audit?action=oauth.sign_in", e.manager, nil).json(t)["items"].([]any)
	var amrs []string
	for _, it := range audit {
		ev := it.(map[string]any)
		if ev["outcome"] == "success" {
			amrs = append(amrs, ev["detail"].(map[string]any)["amr"].(string))
		}
	}
	if !slices.Equal(amrs, []string{"pwd", "pwd,otp", "pwd,otp", "pwd,recovery"}) {
		t.Fatalf("oauth.sign_in amr %v", amrs)
	}
}

// TestOAuthDevicePageSecondFactor: approving a handset at the
// verification page takes the approver's second factor too; the
// handset's session says amr ["pwd","otp"].
func TestOAuthDevicePageSecondFactor(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, oauthOn{Config: oauth.Config{DeviceInterval: 1}}, clk, func(c *auth.Config) { c.ManagerMFA = auth.MFARequired })
	e.fleet()
	rugged, _ := e.oauthClient(map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{oauth.GrantDeviceCode}})
	mona := e.enrolledUser(t, clk, "mona", "manager")
	da := e.postForm("/oauth2/device_authorization", vals("client_id", rugged, "scope", "openid")).json(t)
	uc, dc := da["user_code"].(string), da["device_code"].(string)

	b := cookieBrowser()
	_, _, page := httpGet(t, b, e.url()+"/oauth2/device?user_code="+url.QueryEscape(uc))
	status, _, page := httpPost(t, b, e.url()+"/oauth2/device", vals("csrf", formOf(t, page).csrf, "user_code", uc, "username", "mona", "password", "correct horse", "action", "approve"))
	f := formOf(t, page)
	if status != 200 || f.step != "mfa" || !strings.Contains(page, `name="user_code" value="`+uc+`"`) {
		t.Fatalf("after the password: %d %+v\n%s", status, f, page)
	}
	wantOAuthError(t, e.tokenReq(vals("grant_type", oauth.GrantDeviceCode, "device_code", dc, "client_id", rugged)), 400, "authorization_pending")
	clk.next()
	status, _, page = httpPost(t, b, e.url()+"/oauth2/device", vals("csrf", f.csrf, "user_code", uc, "step", "mfa", "step_token", f.token, "code", clk.code(t, mona.secret), "action", "approve"))
	if status != 200 || !strings.Contains(page, "Handset signed in") {
		t.Fatalf("the code: %d\n%s", status, page)
	}
	var tok map[string]any
	for range 10 {
		r := e.tokenReq(vals("grant_type", oauth.GrantDeviceCode, "device_code", dc, "client_id", rugged))
		if r.status == 200 {
			tok = wantTokens(t, r)
			break
		}
		time.Sleep(time.Second)
	}
	if tok == nil {
		t.Fatal("the handset got no tokens")
	}
	if amr := e.verifyJWT(t, tok["id_token"].(string))["amr"]; !slices.Equal(amr.([]any), []any{"pwd", "otp"}) {
		t.Fatalf("amr %v; want [pwd otp]", amr)
	}
}
