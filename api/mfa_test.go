package api_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	qrreader "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp/totp"

	"tether/auth"
)

// stepClock is the real time moved on by whole TOTP steps when a test
// asks, so that each sign-in can have a code of its own (a code is used
// once, and a step lasts 30 seconds).
type stepClock struct {
	mu  sync.Mutex
	off time.Duration
	// at, when set, stops the clock there (but for the steps moved on):
	// a test of which window a code falls in cannot race a step's end.
	at time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		return c.at.Add(c.off)
	}
	return time.Now().Add(c.off)
}

// next moves to the next step.
func (c *stepClock) next() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += 30 * time.Second
}

// code is the TOTP code of secret now, made with pquerna/otp's generator.
func (c *stepClock) code(t testing.TB, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// admin is an account that signs in with a second factor.
type admin struct {
	id, username, secret string
	codes                []string
	// tokens is the answer of its last sign-in.
	tokens map[string]any
}

func (a *admin) access() string { return a.tokens["accessToken"].(string) }

// enrolledUser creates a user of role and, where it must or want, leads
// it through enrolling a TOTP factor at sign-in, as the console does: the
// login answers mfa_enrollment_required, the secret comes with its
// otpauth URI, the first code confirms it.
func (e *env) enrolledUser(t testing.TB, clk *stepClock, username, role string) *admin {
	t.Helper()
	r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": username, "password": "correct horse", "role": role})
	if r.status != 201 {
		t.Fatalf("create %s: %d %s", username, r.status, r.body)
	}
	a := &admin{id: r.json(t)["id"].(string), username: username}
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": username, "password": "correct horse"}), 401, "mfa_enrollment_required")
	tok := p["enrollmentToken"].(string)
	setup := e.do("POST", "/v1/auth/mfa/enroll", "", map[string]any{"enrollmentToken": tok})
	if setup.status != 200 {
		t.Fatalf("enroll: %d %s", setup.status, setup.body)
	}
	a.secret = setup.json(t)["secret"].(string)
	r = e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok, "code": clk.code(t, a.secret)})
	if r.status != 200 {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	a.tokens = r.json(t)
	for _, c := range a.tokens["recoveryCodes"].([]any) {
		a.codes = append(a.codes, c.(string))
	}
	return a
}

// signIn signs a in again, with the next code of its app.
func (e *env) signIn(t testing.TB, clk *stepClock, a *admin) {
	t.Helper()
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": a.username, "password": "correct horse"}), 401, "mfa_required")
	clk.next()
	r := e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": clk.code(t, a.secret)})
	if r.status != 200 {
		t.Fatalf("second factor: %d %s", r.status, r.body)
	}
	a.tokens = r.json(t)
}

// TestLoginWithSecondFactor walks the native API as the console does: an
// admin is led through enrolling an authenticator app (its QR code holds
// the otpauth URI), gets recovery codes and tokens with amr
// ["pwd","otp"]; the next login asks for a code with an mfaToken, which
// works once; a recovery code works once; every answer carrying a secret
// is kept out of caches.
func TestLoginWithSecondFactor(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk)
	if r := e.do("POST", "/v1/users", e.admin, map[string]any{"username": "ada", "password": "correct horse", "role": "admin"}); r.status != 201 {
		t.Fatal(r.status)
	}
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"})
	p := wantProblem(t, r, 401, "mfa_enrollment_required")
	tok, _ := p["enrollmentToken"].(string)
	if tok == "" || !slices.Equal(p["methods"].([]any), []any{"totp"}) || p["expiresAt"] == nil || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("the enrollment answer: %v %s", r.header, r.body)
	}
	setup := e.do("POST", "/v1/auth/mfa/enroll", "", map[string]any{"enrollmentToken": tok})
	if setup.status != 200 || setup.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("enroll: %d %v %s", setup.status, setup.header, setup.body)
	}
	s := setup.json(t)
	secret, uri := s["secret"].(string), s["otpauthUri"].(string)
	if s["kind"] != "totp" || !strings.HasPrefix(uri, "otpauth://totp/Tether:ada?") || !strings.Contains(uri, "secret="+secret) {
		t.Fatalf("setup %s", setup.body)
	}
	raw, err := base64.StdEncoding.DecodeString(s["qrPng"].(string))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("qrPng is no PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := qrreader.NewQRCodeReader().Decode(bmp, pureQR); err != nil || res.GetText() != uri {
		t.Fatalf("the QR code holds %v (%v); want %q", res, err, uri)
	}
	wantProblem(t, e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok, "code": "000000"}), 401, "invalid_credentials")
	wantProblem(t, e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok}), 400, "validation_failed")
	r = e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok, "code": clk.code(t, secret)})
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	g := r.json(t)
	codes := g["recoveryCodes"].([]any)
	if len(codes) != 10 || g["user"].(map[string]any)["mfa"].(map[string]any)["recoveryCodes"] != float64(10) {
		t.Fatalf("confirm answer: %s", r.body)
	}
	if amr := e.verifyJWT(t, g["accessToken"].(string))["amr"]; !slices.Equal(amr.([]any), []any{"pwd", "otp"}) {
		t.Fatalf("access token amr %v; want [pwd otp]", amr)
	}
	me := e.do("GET", "/v1/auth/me", g["accessToken"].(string), nil)
	if me.status != 200 || !slices.Equal(me.json(t)["session"].(map[string]any)["amr"].([]any), []any{"pwd", "otp"}) {
		t.Fatalf("me: %d %s", me.status, me.body)
	}
	wantProblem(t, e.do("POST", "/v1/auth/mfa/enroll/confirm", "", map[string]any{"enrollmentToken": tok, "code": clk.code(t, secret)}), 401, "token_already_used")

	// The next login asks for a code.
	r = e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"})
	p = wantProblem(t, r, 401, "mfa_required")
	mfa := p["mfaToken"].(string)
	if !slices.Equal(p["methods"].([]any), []any{"totp", "recovery"}) || r.header.Get("Cache-Control") != "no-store" || strings.Contains(r.header.Get("WWW-Authenticate"), mfa) {
		t.Fatalf("mfa_required: %v %s", r.header, r.body)
	}
	// The confirming code is spent.
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": mfa, "code": clk.code(t, secret)}), 401, "invalid_credentials")
	clk.next()
	code := clk.code(t, secret)
	r = e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": mfa, "code": code})
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("second factor: %d %s", r.status, r.body)
	}
	if amr := e.verifyJWT(t, r.json(t)["accessToken"].(string))["amr"]; !slices.Equal(amr.([]any), []any{"pwd", "otp"}) {
		t.Fatalf("amr %v", amr)
	}
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": mfa, "code": code}), 401, "token_already_used")
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": "stp_forged.x", "code": code}), 401, "token_invalid")

	// A recovery code, once.
	p = wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")
	r = e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": codes[0]})
	if r.status != 200 {
		t.Fatalf("recovery code: %d %s", r.status, r.body)
	}
	if amr := e.verifyJWT(t, r.json(t)["accessToken"].(string))["amr"]; !slices.Equal(amr.([]any), []any{"pwd", "recovery"}) {
		t.Fatalf("amr %v", amr)
	}
	p = wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": codes[0]}), 401, "invalid_credentials")

	// The audit trail says how each login was made, and what failed.
	audit := e.do("GET", "/v1/audit?action=login", e.manager, nil).json(t)["items"].([]any)
	var amrs, reasons []string
	for _, it := range audit {
		ev := it.(map[string]any)
		if ev["outcome"] == "success" {
			amrs = append(amrs, ev["detail"].(map[string]any)["amr"].(string))
		} else {
			reasons = append(reasons, ev["reason"].(string))
		}
	}
	if !slices.Equal(amrs, []string{"pwd,otp", "pwd,otp", "pwd,recovery"}) || slices.Compare(reasons, []string{"mfa_failed", "token_already_used", "mfa_failed", "token_already_used", "token_invalid", "mfa_failed"}) != 0 {
		t.Fatalf("login events: amr %v, failures %v", amrs, reasons)
	}
	if strings.Contains(e.logs.String(), secret) || strings.Contains(e.logs.String(), code) || strings.Contains(e.logs.String(), codes[0].(string)) || strings.Contains(e.logs.String(), mfa) {
		t.Fatal("a secret, code or step token is in the log")
	}
}

// TestWrongCodesAtOnce: wrong codes fired at one mfaToken at once are
// counted before they are checked: no more are checked than the throttle
// lets through (3 here); the others wait, with Retry-After.
func TestWrongCodesAtOnce(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk, func(c *auth.Config) { c.AccountFailures = 3 })
	a := e.enrolledUser(t, clk, "ada", "admin")
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")
	clk.next()
	const n = 30
	statuses := make(chan response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses <- e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": fmt.Sprintf("%06d", 200000+i*7)})
		}()
	}
	close(start)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for r := range statuses {
		count[r.status]++
		if r.status == 429 && r.header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if count[401] != 3 || count[429] != n-3 {
		t.Fatalf("answers %v; want 3 × 401 and %d × 429", count, n-3)
	}
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": clk.code(t, a.secret)}), 429, "too_many_attempts")
}

// TestOwnFactorsAPI: a signed-in manager sees their factors, enrolls an
// app after their password, gets recovery codes once, makes new ones with
// a code, and removes the app with a code. Each answer with a secret is
// kept out of caches; an API key manages no one's factors.
func TestOwnFactorsAPI(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk)
	e.fleet()
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "maria", "password": "correct horse"})
	if r.status != 200 {
		t.Fatalf("manager login: %d %s", r.status, r.body)
	}
	tok := r.json(t)["accessToken"].(string)
	if amr := e.verifyJWT(t, tok)["amr"]; !slices.Equal(amr.([]any), []any{"pwd"}) {
		t.Fatalf("amr %v; want [pwd]", amr)
	}
	f := e.do("GET", "/v1/auth/factors", tok, nil).json(t)
	if len(f["factors"].([]any)) != 0 || f["required"] != false || f["recoveryCodes"] != float64(0) {
		t.Fatalf("factors %v", f)
	}
	p := wantProblem(t, e.do("POST", "/v1/auth/factors/totp", tok, map[string]any{"password": "wrong"}), 400, "validation_failed")
	if fieldCodes(t, p)["password"] != "password_wrong" {
		t.Fatalf("wrong password: %v", p)
	}
	setup := e.do("POST", "/v1/auth/factors/totp", tok, map[string]any{"password": "correct horse"})
	if setup.status != 200 || setup.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("begin: %d %s", setup.status, setup.body)
	}
	secret := setup.json(t)["secret"].(string)
	r = e.do("POST", "/v1/auth/factors/totp/confirm", tok, map[string]any{"code": clk.code(t, secret)})
	if r.status != 201 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	enrolled := r.json(t)
	factor := enrolled["factor"].(map[string]any)
	codes := enrolled["recoveryCodes"].([]any)
	if factor["kind"] != "totp" || len(codes) != 10 || strings.Contains(string(r.body), secret) {
		t.Fatalf("enrolled %s", r.body)
	}
	users := e.do("GET", "/v1/users?role=manager", e.manager, nil).json(t)["items"].([]any)
	if m := users[0].(map[string]any)["mfa"].(map[string]any); !slices.Equal(m["factors"].([]any), []any{"totp"}) || m["recoveryCodes"] != float64(10) {
		t.Fatalf("the users list shows %v", m)
	}
	if strings.Contains(string(e.do("GET", "/v1/users?role=manager", e.manager, nil).body), "secret") {
		t.Fatal("the users list shows a secret")
	}
	// Now a code: a password is not enough.
	p = wantProblem(t, e.do("POST", "/v1/auth/recovery-codes", tok, map[string]any{"password": "correct horse"}), 400, "validation_failed")
	if fieldCodes(t, p)["code"] != "code_required" {
		t.Fatalf("regenerate with a password: %v", p)
	}
	r = e.do("POST", "/v1/auth/recovery-codes", tok, map[string]any{"code": codes[0]})
	if r.status != 200 || len(r.json(t)["recoveryCodes"].([]any)) != 10 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("regenerate: %d %s", r.status, r.body)
	}
	fresh := r.json(t)["recoveryCodes"].([]any)
	wantProblem(t, e.do("POST", "/v1/auth/factors/"+factor["id"].(string)+"/remove", tok, map[string]any{"code": codes[1]}), 400, "validation_failed")
	wantProblem(t, e.do("POST", "/v1/auth/factors/fac_nope/remove", tok, map[string]any{"code": fresh[0]}), 404, "not_found")
	if r := e.do("POST", "/v1/auth/factors/"+factor["id"].(string)+"/remove", tok, map[string]any{"code": fresh[1]}); r.status != 204 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if f := e.do("GET", "/v1/auth/factors", tok, nil).json(t); len(f["factors"].([]any)) != 0 || f["recoveryCodes"] != float64(0) {
		t.Fatalf("after removing: %v", f)
	}
	wantProblem(t, e.do("GET", "/v1/auth/factors", "", nil, "X-API-Key", e.admin), 403, "forbidden")
	for _, action := range []string{"user.mfa_enrolled", "user.recovery_codes", "user.mfa_removed"} {
		if e.events(action) == 0 {
			t.Errorf("no %s event", action)
		}
	}
}

// TestResetMFAAPI: an admin resets a manager's second factors: the
// manager's sessions end, the reset is audited, the manager signs in with
// a password again. A manager cannot reset; an admin not their own.
func TestResetMFAAPI(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk, func(c *auth.Config) { c.ManagerMFA = auth.MFARequired })
	mona := e.enrolledUser(t, clk, "mona", "manager")
	ada := e.enrolledUser(t, clk, "ada", "admin")
	wantProblem(t, e.do("POST", "/v1/users/"+ada.id+"/mfa/reset", mona.access(), nil), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/users/"+ada.id+"/mfa/reset", e.manager, nil), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/users/"+ada.id+"/mfa/reset", ada.access(), nil), 403, "forbidden")
	wantProblem(t, e.do("POST", "/v1/users/usr_nobody/mfa/reset", ada.access(), nil), 404, "not_found")
	r := e.do("POST", "/v1/users/"+mona.id+"/mfa/reset", ada.access(), nil)
	if r.status != 200 || r.json(t)["revoked"] != float64(1) {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	p := wantProblem(t, e.do("GET", "/v1/auth/me", mona.access(), nil), 401, "session_revoked")
	if p["reason"] != "mfa_reset" {
		t.Fatalf("the ended session says %v", p)
	}
	u := e.do("GET", "/v1/users/"+mona.id, e.manager, nil).json(t)
	if m := u["mfa"].(map[string]any); len(m["factors"].([]any)) != 0 || m["recoveryCodes"] != float64(0) {
		t.Fatalf("after the reset: %v", m)
	}
	// Her role must have a factor: she enrolls again at her next sign-in.
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "mona", "password": "correct horse"}), 401, "mfa_enrollment_required")
	ev := e.do("GET", "/v1/audit?action=user.mfa_reset", e.manager, nil).json(t)["items"].([]any)
	if len(ev) != 1 || ev[0].(map[string]any)["actor"] != "user:"+ada.id || ev[0].(map[string]any)["userId"] != mona.id {
		t.Fatalf("user.mfa_reset events %v", ev)
	}
}

// TestDialectsRefuseSecondFactor: the compatibility dialects and the OAuth
// password grant cannot carry a second factor: an account that needs one
// is refused in each one's own error form, with a message that says so.
// A worker, and a manager without a factor, sign in through them as
// before.
func TestDialectsRefuseSecondFactor(t *testing.T) {
	clk := &stepClock{}
	e := newEnv(t, clk, oauthOn{})
	phone, _ := e.fleet()
	e.enrolledUser(t, clk, "ada", "admin")
	const says = "second factor"
	key := e.do("POST", "/v1/api-keys", e.admin, map[string]any{"role": "client", "name": "field app"}).json(t)["key"].(string)

	// get-user-token: 400 and a message.
	r := e.do("POST", "/api/User/GetUserToken", "", map[string]any{"userName": "ada", "password": "correct horse"})
	if r.status != 400 || !strings.Contains(string(r.body), says) {
		t.Fatalf("GetUserToken: %d %s", r.status, r.body)
	}
	// auth-login-session: Basic, a problem.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ada:correct horse"))
	p := wantProblem(t, e.do("POST", "/Auth/Login", "", nil, "Authorization", basic), 403, "mfa_unsupported")
	if !strings.Contains(p["detail"].(string), says) {
		t.Fatalf("/Auth/Login: %v", p)
	}
	// renew-login-token's login.
	r = e.do("POST", "/api/Login", "", map[string]any{"username": "ada", "password": "correct horse"})
	if r.status != 403 || !strings.Contains(string(r.body), says) || !strings.Contains(string(r.body), "mfa_unsupported") {
		t.Fatalf("/api/Login: %d %s", r.status, r.body)
	}
	// token-login.
	r = e.do("POST", "/api/v1/Authentication/Login?APIKey="+key, "", map[string]any{"username": "ada", "password": "correct horse"})
	if r.status == 200 || !strings.Contains(string(r.body), says) {
		t.Fatalf("token-login: %d %s", r.status, r.body)
	}
	// The OAuth password grant.
	id, secret := e.oauthClient(map[string]any{"grant_types": []string{"password"}, "token_endpoint_auth_method": "client_secret_post"})
	r = e.tokenReq(url.Values{"grant_type": {"password"}, "username": {"ada"}, "password": {"correct horse"}, "client_id": {id}, "client_secret": {secret}})
	if r.status != 400 || r.json(t)["error"] != "invalid_grant" || !strings.Contains(r.json(t)["error_description"].(string), says) {
		t.Fatalf("password grant: %d %s", r.status, r.body)
	}
	// Others sign in as before.
	if r := e.do("POST", "/Auth/Login", "", nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("maria:correct horse"))); r.status != 200 {
		t.Fatalf("a manager without a factor through /Auth/Login: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/Login", "", map[string]any{"username": "walter", "password": "correct horse", "deviceId": phone}); r.status != 200 {
		t.Fatalf("a worker through /api/Login: %d %s", r.status, r.body)
	}
	if n := e.events("login"); n == 0 {
		t.Fatal("no login events")
	}
	audit := e.do("GET", "/v1/audit?action=login", e.manager, nil).json(t)["items"].([]any)
	refused := 0
	for _, it := range audit {
		if it.(map[string]any)["reason"] == "mfa_unsupported" {
			refused++
		}
	}
	if refused != 5 {
		t.Fatalf("%d logins refused as mfa_unsupported; want 5", refused)
	}
}
