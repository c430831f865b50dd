package auth_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/storage"
)

// rfc6238 is a TOTP code made here, by RFC 6238 and RFC 4226 and nothing
// else: HMAC-SHA1 of the 30-second step, dynamically truncated to six
// digits. It checks the server's codes against an implementation that is
// not the one it uses.
func rfc6238(t testing.TB, secretB32 string, at time.Time) string {
	t.Helper()
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(secretB32))
	if err != nil {
		t.Fatalf("secret %q: %v", secretB32, err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

// interrupted returns the token member of a login interrupted with want,
// failing the test on any other answer.
func interrupted(t testing.TB, err, want error, member string) string {
	t.Helper()
	var te *tether.Error
	if !errors.Is(err, want) || !errors.As(err, &te) {
		t.Fatalf("%v; want %v", err, want)
	}
	tok, _ := te.Extra[member].(string)
	if tok == "" {
		t.Fatalf("%v carries no %s: %v", want, member, te.Extra)
	}
	return tok
}

// codeOf is the code given for err: its code, or internal.
func codeOf(err error) tether.Code {
	var te *tether.Error
	var ve *tether.ValidationError
	switch {
	case errors.As(err, &te):
		return te.Code
	case errors.As(err, &ve):
		return tether.Code(ve.Fields[0].Code)
	}
	return tether.CodeInternal
}

// signIn is a native login that can take a second step (the console's).
func (w *world) signIn(username string) (auth.Grant, error) {
	w.t.Helper()
	return w.svc.Login(w.ctx, auth.LoginRequest{Username: username, Password: password, SecondFactor: true})
}

// enrolled is an account with a TOTP factor: its secret and recovery
// codes.
type enrolled struct {
	user   storage.User
	secret string
	codes  []string
}

// enrollAtSignIn signs an account that must have a second factor in,
// through its enrollment: it returns the secret and recovery codes.
func (w *world) enrollAtSignIn(username string) (enrolled, auth.Grant) {
	w.t.Helper()
	_, err := w.signIn(username)
	tok := interrupted(w.t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	setup, err := w.svc.BeginEnrollment(w.ctx, tok)
	if err != nil {
		w.t.Fatalf("begin enrollment: %v", err)
	}
	g, codes, err := w.svc.LoginEnrolled(w.ctx, tok, rfc6238(w.t, setup.Secret, w.clock.Now()))
	if err != nil {
		w.t.Fatalf("confirm enrollment: %v", err)
	}
	return enrolled{user: g.User, secret: setup.Secret, codes: codes}, g
}

// nextStep moves the clock to the next 30-second step, so a new code
// exists.
func (w *world) nextStep() { w.clock.Advance(30 * time.Second) }

// events returns the audit events of action.
func (w *world) events(action string) []storage.Event {
	w.t.Helper()
	page, err := w.svc.Events(w.ctx, storage.EventFilter{Action: action, Limit: 1000})
	if err != nil {
		w.t.Fatal(err)
	}
	return page.Items
}

func (w *world) tokenAMR(g auth.Grant) []string {
	w.t.Helper()
	claims := w.verifyWithJWKS(g.AccessToken)
	raw, _ := claims["amr"].([]any)
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i], _ = v.(string)
	}
	return out
}

// TestAdminEnrollsAtFirstSignIn: an admin without a second factor (they
// must have one) is led through enrolling one at sign-in: a secret and an
// otpauth URI, a first code to confirm it, then recovery codes and tokens
// with amr ["pwd","otp"]. The enrollment token works once; from then on a
// sign-in asks for a code.
func TestAdminEnrollsAtFirstSignIn(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	_, err := w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	setup, err := w.svc.BeginEnrollment(w.ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(setup.URI)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Tether:ada" {
		t.Fatalf("otpauth URI %q", setup.URI)
	}
	q := u.Query()
	if q.Get("secret") != setup.Secret || q.Get("issuer") != "Tether" || q.Get("algorithm") != "SHA1" || q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Fatalf("otpauth URI parameters %v", q)
	}
	if raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(setup.Secret); len(raw) != 20 {
		t.Fatalf("secret of %d bytes; want 20 (160 bits)", len(raw))
	}
	// Shown again (a page reloaded), the same secret: the app has it.
	again, err := w.svc.BeginEnrollment(w.ctx, tok)
	if err != nil || again.Secret != setup.Secret {
		t.Fatalf("begin again: %q, %v; want the same secret", again.Secret, err)
	}
	// Nothing counts before the first code: a login asks to enroll still.
	if _, err := w.signIn("ada"); !errors.Is(err, auth.ErrMFAEnrollment) {
		t.Fatalf("sign-in before confirming: %v; want mfa_enrollment_required", err)
	}
	if _, _, err := w.svc.LoginEnrolled(w.ctx, tok, "000000"); !errors.Is(err, auth.ErrCodeWrong) {
		t.Fatalf("a wrong first code: %v; want a wrong code", err)
	}
	code := rfc6238(t, setup.Secret, w.clock.Now())
	g, codes, err := w.svc.LoginEnrolled(w.ctx, tok, code)
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if len(codes) != auth.RecoveryCodeCount {
		t.Fatalf("%d recovery codes; want %d", len(codes), auth.RecoveryCodeCount)
	}
	if got := w.tokenAMR(g); !slices.Equal(got, []string{"pwd", "otp"}) || !slices.Equal(g.Session.AMR, got) {
		t.Fatalf("amr %v (session %v); want [pwd otp]", got, g.Session.AMR)
	}
	if _, err := w.svc.Authenticate(w.ctx, g.AccessToken); err != nil {
		t.Fatalf("the enrolled login's token: %v", err)
	}
	// The token is spent, and its code too.
	if _, _, err := w.svc.LoginEnrolled(w.ctx, tok, code); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("the enrollment token again: %v; want token_already_used", err)
	}
	if _, err := w.svc.BeginEnrollment(w.ctx, tok); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("begin with the spent token: %v; want token_already_used", err)
	}
	st := w.svc.MFAOf(g.User)
	if len(st.Factors) != 1 || st.Factors[0].Kind != storage.FactorTOTP || st.RecoveryCodes != 10 || !st.Required {
		t.Fatalf("status %+v", st)
	}
	// The next sign-in asks for a code.
	_, err = w.signIn("ada")
	var te *tether.Error
	errors.As(err, &te)
	if !errors.Is(err, auth.ErrMFARequired) || !slices.Equal(te.Extra["methods"].([]string), []string{"totp", "recovery"}) {
		t.Fatalf("next sign-in: %v (%v); want mfa_required with totp and recovery", err, te)
	}
	// Refreshed, the tokens keep their amr.
	r, err := w.svc.Refresh(w.ctx, g.RefreshToken, "")
	if err != nil || !slices.Equal(w.tokenAMR(r), []string{"pwd", "otp"}) {
		t.Fatalf("refresh: %v, %v", err, r.Session.AMR)
	}

	if evs := w.events("user.mfa_enrolled"); len(evs) != 1 || evs[0].UserID != g.User.ID || evs[0].Detail["kind"] != "totp" {
		t.Fatalf("user.mfa_enrolled events: %+v", evs)
	}
	if evs := w.events("user.recovery_codes"); len(evs) != 1 || evs[0].Detail["codes"] != "10" {
		t.Fatalf("user.recovery_codes events: %+v", evs)
	}
	var ok, failed int
	for _, e := range w.events("login") {
		switch {
		case e.Outcome == "success" && e.Detail["amr"] == "pwd,otp":
			ok++
		case e.Outcome == "failure" && e.Reason == "mfa_failed":
			failed++
		}
	}
	if ok != 1 || failed != 1 {
		t.Fatalf("login events: %d successes with amr pwd,otp, %d mfa_failed; want 1 and 1", ok, failed)
	}
	if evs := w.events("login.mfa_challenge"); len(evs) != 3 {
		t.Fatalf("%d login.mfa_challenge events; want 3", len(evs))
	}
}

// TestSecondFactorAtSignIn: an account with a factor proves it after its
// password: a TOTP code once (the same code, or one of an earlier step,
// is refused), or a recovery code once. Each mfaToken completes one
// sign-in.
func TestSecondFactorAtSignIn(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	e, _ := w.enrollAtSignIn("ada")

	_, err := w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	// The code that confirmed the factor was used: its step is spent.
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); !errors.Is(err, auth.ErrCodeWrong) {
		t.Fatalf("the enrollment's code again: %v; want a wrong code", err)
	}
	w.nextStep()
	code := rfc6238(t, e.secret, w.clock.Now())
	g, err := w.svc.LoginSecondFactor(w.ctx, tok, code)
	if err != nil {
		t.Fatalf("the next code: %v", err)
	}
	if !slices.Equal(w.tokenAMR(g), []string{"pwd", "otp"}) || g.User.Username != "ada" {
		t.Fatalf("amr %v for %s", w.tokenAMR(g), g.User.Username)
	}
	// The token is spent.
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, code); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("the mfaToken again: %v; want token_already_used", err)
	}
	// A new sign-in cannot reuse the code, nor one of the step before.
	_, err = w.signIn("ada")
	tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	for _, replay := range []string{code, rfc6238(t, e.secret, w.clock.Now().Add(-30*time.Second))} {
		if _, err := w.svc.LoginSecondFactor(w.ctx, tok, replay); !errors.Is(err, auth.ErrCodeWrong) {
			t.Fatalf("a replayed code: %v; want a wrong code", err)
		}
	}
	// A recovery code, typed loosely, works once.
	rc := strings.ToUpper(strings.ReplaceAll(e.codes[3], "-", " "))
	g, err = w.svc.LoginSecondFactor(w.ctx, tok, rc)
	if err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd", "recovery"}) {
		t.Fatalf("a recovery code: %v, amr %v", err, g.Session.AMR)
	}
	_, err = w.signIn("ada")
	tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, e.codes[3]); !errors.Is(err, auth.ErrCodeWrong) {
		t.Fatalf("the recovery code again: %v; want a wrong code", err)
	}
	if st := w.svc.MFAOf(mustUser(t, w, "ada")); st.RecoveryCodes != 9 {
		t.Fatalf("%d recovery codes left; want 9", st.RecoveryCodes)
	}
	var amrs []string
	for _, e := range w.events("login") {
		if e.Outcome == "success" {
			amrs = append(amrs, e.Detail["amr"])
		}
	}
	if !slices.Equal(amrs, []string{"pwd,otp", "pwd,otp", "pwd,recovery"}) {
		t.Fatalf("login successes' amr %v", amrs)
	}
}

func mustUser(t testing.TB, w *world, name string) storage.User {
	t.Helper()
	u, err := w.store.GetUserByUsername(w.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestMFATokenRefused: an mfaToken expires after five minutes; it is
// void once the password changes; a token altered, of another purpose, or
// of a sign-in page is refused; an empty code is the client's mistake.
func TestMFATokenRefused(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	e, _ := w.enrollAtSignIn("ada")

	_, err := w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	w.clock.Advance(5*time.Minute + time.Second)
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); codeOf(err) != tether.CodeTokenExpired {
		t.Fatalf("after five minutes: %v; want token_expired", err)
	}

	_, err = w.signIn("ada")
	tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	if err := w.users.SetPassword(w.ctx, auth.CLI, e.user.ID, "another password entirely"); err != nil {
		t.Fatal(err)
	}
	w.nextStep()
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
		t.Fatalf("after a password reset: %v; want token_invalid", err)
	}
	if err := w.users.SetPassword(w.ctx, auth.CLI, e.user.ID, password); err != nil {
		t.Fatal(err)
	}

	_, err = w.signIn("ada")
	tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	body, mac, _ := strings.Cut(tok, ".")
	for name, bad := range map[string]string{
		"altered body": body[:len(body)-2] + flip(body[len(body)-2:]) + "." + mac,
		"altered MAC":  body + "." + flip(mac[:2]) + mac[2:],
		"no MAC":       body,
		"empty":        "",
		"an access token": func() string {
			g, _ := w.login("walter", payload(w.phone.IMEI))
			return g.AccessToken
		}(),
	} {
		if _, err := w.svc.LoginSecondFactor(w.ctx, bad, rfc6238(t, e.secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
			t.Errorf("%s: %v; want token_invalid", name, err)
		}
	}
	// An enrollment token is no mfaToken; a sign-in page's step is not the
	// native API's.
	w.user("root", storage.RoleAdmin)
	_, err = w.signIn("root")
	enroll := interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	if _, err := w.svc.LoginSecondFactor(w.ctx, enroll, "123456"); codeOf(err) != tether.CodeTokenInvalid {
		t.Errorf("an enrollment token as an mfaToken: %v; want token_invalid", err)
	}
	if _, err := w.svc.BeginEnrollment(w.ctx, tok); codeOf(err) != tether.CodeTokenInvalid {
		t.Errorf("an mfaToken as an enrollment token: %v; want token_invalid", err)
	}
	_, err = w.svc.SignIn(w.ctx, auth.LoginRequest{Username: "ada", Password: password, ClientID: "cli_app", SecondFactor: true})
	page := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	if _, err := w.svc.LoginSecondFactor(w.ctx, page, rfc6238(t, e.secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
		t.Errorf("a sign-in page's step at the native API: %v; want token_invalid", err)
	}
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, " "); codeOf(err) != "code_required" {
		t.Errorf("no code: %v; want code_required", err)
	}
	// Still usable after all that: the right code signs in.
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); err != nil {
		t.Fatalf("the right code at last: %v", err)
	}
}

func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

// TestWrongCodesThrottled: codes fired at once against one mfaToken are
// counted before they are checked, with the account's wrong passwords:
// no more get checked than the throttle lets through, and the right code
// then waits too. A right password does not forget the wrong codes; a
// right code does.
func TestWrongCodesThrottled(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.AccountFailures = 3 })
	w.user("ada", storage.RoleAdmin)
	e, _ := w.enrollAtSignIn("ada")
	_, err := w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	w.nextStep()

	const n = 40
	var wg sync.WaitGroup
	results := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := w.svc.LoginSecondFactor(w.ctx, tok, fmt.Sprintf("%06d", 100000+i*7919))
			results <- err
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	checked, held := 0, 0
	for err := range results {
		switch codeOf(err) {
		case tether.CodeInvalidCredentials:
			checked++
		case tether.CodeTooManyAttempts:
			held++
		default:
			t.Fatalf("a guess: %v", err)
		}
	}
	if checked != 3 || held != n-3 {
		t.Fatalf("%d codes checked, %d held back; want 3 and %d", checked, held, n-3)
	}
	if evs := w.events("login"); countReason(evs, "mfa_failed") != 3 {
		t.Fatalf("%d mfa_failed events; want 3", countReason(evs, "mfa_failed"))
	}
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); codeOf(err) != tether.CodeTooManyAttempts {
		t.Fatalf("the right code while held: %v; want too_many_attempts", err)
	}
	// Past the wait, the right password leaves the failures counted.
	w.clock.Advance(2 * time.Second)
	_, err = w.signIn("ada")
	tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	if failures := w.failures("ada"); failures != 3 {
		t.Fatalf("after the right password: %d failures; want 3", failures)
	}
	w.nextStep()
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); err != nil {
		t.Fatalf("the right code past the wait: %v", err)
	}
	if failures := w.failures("ada"); failures != 0 {
		t.Fatalf("after the right code: %d failures; want 0", failures)
	}
}

func countReason(evs []storage.Event, reason string) int {
	n := 0
	for _, e := range evs {
		if e.Reason == reason {
			n++
		}
	}
	return n
}

// failures is the failures of account from w's address.
func (w *world) failures(account string) int {
	w.t.Helper()
	page, err := w.svc.Lockouts(w.ctx, storage.AttemptFilter{Account: account, Address: tether.OriginOf(w.ctx).IP})
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, a := range page.Items {
		if a.Address != "" {
			n += a.Failures
		}
	}
	return n
}

// TestCodesUsedOnceUnderRace: the same right code, or the same recovery
// code, fired at once at many sign-ins (each with its own mfaToken), or
// the same mfaToken fired many times with the right code: exactly one
// sign-in succeeds.
func TestCodesUsedOnceUnderRace(t *testing.T) {
	w := newWorld(t, func(c *auth.Config) { c.AccountFailures, c.AccountFailuresTotal, c.AddressFailures = 0, 0, 0 })
	w.user("ada", storage.RoleAdmin)
	e, _ := w.enrollAtSignIn("ada")
	const n = 12
	race := func(name string, tokens []string, code func() string) {
		t.Helper()
		var wg sync.WaitGroup
		ok := make(chan error, len(tokens))
		start := make(chan struct{})
		for _, tok := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := w.svc.LoginSecondFactor(w.ctx, tok, code())
				ok <- err
			}()
		}
		close(start)
		wg.Wait()
		close(ok)
		wins := 0
		for err := range ok {
			switch {
			case err == nil:
				wins++
			// A used code counts as a wrong one: enough of them lock the
			// account's app codes for a while (TestCodesLockAfterWrongOnes).
			case !errors.Is(err, auth.ErrCodeWrong) && !errors.Is(err, auth.ErrCodesLocked) && codeOf(err) != tether.CodeTokenAlreadyUsed:
				t.Fatalf("%s: %v", name, err)
			}
		}
		if wins != 1 {
			t.Fatalf("%s: %d sign-ins succeeded; want 1", name, wins)
		}
	}
	tokens := func() []string {
		out := make([]string, n)
		for i := range out {
			_, err := w.signIn("ada")
			out[i] = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
		}
		return out
	}
	w.nextStep()
	code := rfc6238(t, e.secret, w.clock.Now())
	race("one TOTP code, many sign-ins", tokens(), func() string { return code })
	race("one recovery code, many sign-ins", tokens(), func() string { return e.codes[0] })
	_, err := w.signIn("ada")
	one := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	same := slices.Repeat([]string{one}, 9)
	i := 0
	var mu sync.Mutex
	race("one mfaToken, nine right recovery codes", same, func() string {
		mu.Lock()
		defer mu.Unlock()
		i++
		return e.codes[i]
	})
	// The losers' codes were not used up.
	if st := w.svc.MFAOf(mustUser(t, w, "ada")); st.RecoveryCodes != 8 {
		t.Fatalf("%d recovery codes left; want 8", st.RecoveryCodes)
	}
}

// TestMFAPolicies: admins must have a second factor and managers may, by
// default; either can be changed. Workers never take one. An account of
// a role that may have one and has none signs in with its password, amr
// ["pwd"]. A policy other than required or optional is refused.
func TestMFAPolicies(t *testing.T) {
	cfg := auth.DefaultConfig()
	if cfg.AdminMFA != auth.MFARequired || cfg.ManagerMFA != auth.MFAOptional {
		t.Fatalf("defaults: admin %q, manager %q; want required and optional", cfg.AdminMFA, cfg.ManagerMFA)
	}
	for _, bad := range []auth.MFAPolicy{"", "always", "off"} {
		c := auth.DefaultConfig()
		c.ManagerMFA = bad
		if err := c.Validate(); err == nil {
			t.Errorf("manager policy %q accepted", bad)
		}
	}

	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	g, err := w.signIn("maria")
	if err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd"}) {
		t.Fatalf("a manager without a factor: %v, amr %v; want [pwd]", err, g.Session.AMR)
	}
	if evs := w.events("login"); evs[len(evs)-1].Detail["amr"] != "pwd" {
		t.Fatalf("login event detail %v; want amr pwd", evs[len(evs)-1].Detail)
	}
	if _, err := w.signIn("ada"); !errors.Is(err, auth.ErrMFAEnrollment) {
		t.Fatalf("an admin without a factor: %v; want mfa_enrollment_required", err)
	}
	if g, err := w.login("walter", payload(w.phone.IMEI)); err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd"}) {
		t.Fatalf("a worker: %v", err)
	}

	w = newWorld(t, func(c *auth.Config) { c.AdminMFA, c.ManagerMFA = auth.MFAOptional, auth.MFARequired })
	w.user("ada", storage.RoleAdmin)
	if _, err := w.signIn("maria"); !errors.Is(err, auth.ErrMFAEnrollment) {
		t.Fatalf("a manager under --manager-mfa required: %v; want mfa_enrollment_required", err)
	}
	if _, err := w.signIn("ada"); err != nil {
		t.Fatalf("an admin under --admin-mfa optional: %v", err)
	}
	// A disabled account is told so, not asked for a code.
	maria := mustUser(t, w, "maria")
	if _, err := w.users.Update(w.ctx, auth.CLI, maria.ID, auth.UserPatch{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.signIn("maria"); !errors.Is(err, auth.ErrAccountDisabled) {
		t.Fatalf("a disabled manager: %v; want account_disabled", err)
	}
}

// TestMFAUnsupportedClients: a client that cannot take a second step (a
// compatibility dialect) is refused for an account that needs one, with
// its own code; workers, and managers without a factor where they may go
// without, sign in as before.
func TestMFAUnsupportedClients(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	legacy := func(name string) error {
		_, err := w.svc.Login(w.ctx, auth.LoginRequest{Username: name, Password: password})
		return err
	}
	if err := legacy("ada"); !errors.Is(err, auth.ErrMFAUnsupported) {
		t.Fatalf("an admin through a dialect: %v; want mfa_unsupported", err)
	}
	if err := legacy("maria"); err != nil {
		t.Fatalf("a manager without a factor through a dialect: %v", err)
	}
	if evs := w.events("login"); countReason(evs, "mfa_unsupported") != 1 {
		t.Fatalf("login events: %+v; want one mfa_unsupported", evs)
	}
	// A manager with a factor is refused too.
	id := w.identity("maria")
	setup, err := w.svc.BeginTOTP(w.ctx, id, auth.Reauth{Password: password})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.svc.ConfirmTOTP(w.ctx, id, rfc6238(t, setup.Secret, w.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if err := legacy("maria"); !errors.Is(err, auth.ErrMFAUnsupported) {
		t.Fatalf("a manager with a factor through a dialect: %v; want mfa_unsupported", err)
	}
}

// identity signs name in (a password alone) and returns the identity of
// the token.
func (w *world) identity(name string) auth.Identity {
	w.t.Helper()
	id, _ := w.identityToken(name)
	return id
}

// identityToken is identity, with the access token.
func (w *world) identityToken(name string) (auth.Identity, string) {
	w.t.Helper()
	g, err := w.signIn(name)
	if err != nil {
		w.t.Fatalf("sign %s in: %v", name, err)
	}
	id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
	if err != nil {
		w.t.Fatal(err)
	}
	return id, g.AccessToken
}

// TestOwnFactors: a signed-in manager enrolls an authenticator app after
// giving their password, confirms it with a first code and gets recovery
// codes; from then on every change takes a code: replacing the app (the
// recovery codes stay), new recovery codes (the old ones stop working),
// removing the app (the recovery codes go with it).
func TestOwnFactors(t *testing.T) {
	w := newWorld(t)
	id := w.identity("maria")
	if st, err := w.svc.Factors(w.ctx, id); err != nil || len(st.Factors) != 0 || st.Required {
		t.Fatalf("factors: %+v, %v", st, err)
	}
	for _, c := range []struct {
		r    auth.Reauth
		want string
	}{
		{auth.Reauth{}, "password_required"},
		{auth.Reauth{Password: "wrong password"}, "password_wrong"},
		{auth.Reauth{Code: "123456"}, "password_required"},
		{auth.Reauth{PasskeyToken: "stp_x", Passkey: []byte(`{}`)}, "password_required"},
	} {
		if _, err := w.svc.BeginTOTP(w.ctx, id, c.r); codeOf(err) != tether.Code(c.want) {
			t.Errorf("begin with %+v: %v; want %s", c.r, err, c.want)
		}
	}
	setup, err := w.svc.BeginTOTP(w.ctx, id, auth.Reauth{Password: password})
	if err != nil {
		t.Fatal(err)
	}
	// Only the session that began it confirms it.
	other := w.identity("maria")
	if _, _, err := w.svc.ConfirmTOTP(w.ctx, other, rfc6238(t, setup.Secret, w.clock.Now())); codeOf(err) != tether.CodeConflict {
		t.Fatalf("confirm from another session: %v; want conflict", err)
	}
	if _, _, err := w.svc.ConfirmTOTP(w.ctx, id, "000000"); codeOf(err) != "code_wrong" {
		t.Fatalf("a wrong first code: %v; want code_wrong", err)
	}
	f, codes, err := w.svc.ConfirmTOTP(w.ctx, id, rfc6238(t, setup.Secret, w.clock.Now()))
	if err != nil || f.Kind != storage.FactorTOTP || f.ID != setup.FactorID || len(codes) != 10 {
		t.Fatalf("confirm: %+v, %d codes, %v", f, len(codes), err)
	}
	// Now a password is not enough.
	if _, err := w.svc.BeginTOTP(w.ctx, id, auth.Reauth{Password: password}); codeOf(err) != "code_required" {
		t.Fatalf("begin with a password once enrolled: %v; want code_required", err)
	}
	w.nextStep()
	replacement, err := w.svc.BeginTOTP(w.ctx, id, auth.Reauth{Code: rfc6238(t, setup.Secret, w.clock.Now())})
	if err != nil {
		t.Fatal(err)
	}
	w.nextStep()
	f2, kept, err := w.svc.ConfirmTOTP(w.ctx, id, rfc6238(t, replacement.Secret, w.clock.Now()))
	if err != nil || kept != nil || f2.ID == f.ID {
		t.Fatalf("replace: %+v, %v, %v; want a new factor and no new codes", f2, kept, err)
	}
	st, _ := w.svc.Factors(w.ctx, id)
	if len(st.Factors) != 1 || st.Factors[0].ID != f2.ID || st.RecoveryCodes != 10 {
		t.Fatalf("after replacing: %+v", st)
	}
	// The old app's codes no longer sign in.
	_, err = w.signIn("maria")
	tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	w.nextStep()
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, setup.Secret, w.clock.Now())); !errors.Is(err, auth.ErrCodeWrong) {
		t.Fatalf("the replaced app's code: %v; want a wrong code", err)
	}
	// New recovery codes, proven with one of the old ones.
	fresh, err := w.svc.RegenerateRecoveryCodes(w.ctx, id, auth.Reauth{Code: codes[0]})
	if err != nil || len(fresh) != 10 {
		t.Fatalf("regenerate: %d, %v", len(fresh), err)
	}
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, codes[1]); !errors.Is(err, auth.ErrCodeWrong) {
		t.Fatalf("an old recovery code: %v; want a wrong code", err)
	}
	if _, err := w.svc.RegenerateRecoveryCodes(w.ctx, id, auth.Reauth{Code: "000000"}); codeOf(err) != "code_wrong" {
		t.Fatalf("regenerate with a wrong code: %v; want code_wrong", err)
	}
	// Removed, with a new recovery code.
	if err := w.svc.RemoveFactor(w.ctx, id, "fac_nope", auth.Reauth{Code: fresh[0]}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("remove an unknown factor: %v; want not found", err)
	}
	if err := w.svc.RemoveFactor(w.ctx, id, f2.ID, auth.Reauth{Code: fresh[0]}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if st, _ := w.svc.Factors(w.ctx, id); len(st.Factors) != 0 || st.RecoveryCodes != 0 {
		t.Fatalf("after removing: %+v", st)
	}
	if g, err := w.signIn("maria"); err != nil || !slices.Equal(w.tokenAMR(g), []string{"pwd"}) {
		t.Fatalf("sign-in without a factor: %v", err)
	}
	for action, n := range map[string]int{"user.mfa_enrolled": 2, "user.recovery_codes": 2, "user.mfa_removed": 1} {
		ok := 0
		for _, e := range w.events(action) {
			if e.Outcome == "success" && e.Actor == "user:"+id.User.ID {
				ok++
			}
		}
		if ok != n {
			t.Errorf("%d successful %s events by maria; want %d", ok, action, n)
		}
	}
	if evs := w.events("user.recovery_codes"); countReason(evs, "mfa_failed") != 1 {
		t.Errorf("user.recovery_codes events %+v; want one mfa_failed", evs)
	}
	// Workers have no second factors to manage.
	g := w.mustLogin()
	wid, _ := w.svc.Authenticate(w.ctx, g.AccessToken)
	if _, err := w.svc.BeginTOTP(w.ctx, wid, auth.Reauth{Password: password}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("a worker enrolling: %v; want forbidden", err)
	}
}

// TestRequiredFactorStays: an admin (who must have a second factor)
// cannot remove their last one; they replace it.
func TestRequiredFactorStays(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	e, g := w.enrollAtSignIn("ada")
	id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := w.svc.Factors(w.ctx, id)
	w.nextStep()
	if err := w.svc.RemoveFactor(w.ctx, id, st.Factors[0].ID, auth.Reauth{Code: rfc6238(t, e.secret, w.clock.Now())}); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("remove the last factor of an admin: %v; want forbidden", err)
	}
	if st, _ := w.svc.Factors(w.ctx, id); len(st.Factors) != 1 || st.RecoveryCodes != 10 {
		t.Fatalf("after the refusal: %+v", st)
	}
}

// TestResetMFA: an admin resets another account's second factors: they
// are gone with the recovery codes, every session of the account ends,
// and the reset is audited. The account signs in with its password again,
// and enrolls anew where its role must. An admin does not reset their
// own; a manager resets no one's; the operator on the host may.
func TestResetMFA(t *testing.T) {
	w := newWorld(t)
	ada := w.user("ada", storage.RoleAdmin)
	id, token := w.identityToken("maria")
	setup, _ := w.svc.BeginTOTP(w.ctx, id, auth.Reauth{Password: password})
	if _, _, err := w.svc.ConfirmTOTP(w.ctx, id, rfc6238(t, setup.Secret, w.clock.Now())); err != nil {
		t.Fatal(err)
	}
	admin := auth.Principal{Kind: auth.KindUser, ID: ada.ID, Role: storage.RoleAdmin}
	manager := auth.Principal{Kind: auth.KindUser, ID: id.User.ID, Role: storage.RoleManager}
	if _, err := w.users.ResetMFA(w.ctx, manager, ada.ID); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("a manager resetting: %v; want forbidden", err)
	}
	if _, err := w.users.ResetMFA(w.ctx, admin, ada.ID); !errors.Is(err, auth.ErrForbidden) {
		t.Fatalf("an admin resetting their own: %v; want forbidden", err)
	}
	if _, err := w.users.ResetMFA(w.ctx, admin, "usr_nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("reset an unknown user: %v; want not found", err)
	}
	n, err := w.users.ResetMFA(w.ctx, admin, id.User.ID)
	if err != nil || n != 1 {
		t.Fatalf("reset: %d, %v; want 1 session ended", n, err)
	}
	var te *tether.Error
	if _, err := w.svc.Authenticate(w.ctx, token); !errors.As(err, &te) || te.Extra["reason"] != "mfa_reset" {
		t.Fatalf("the session after the reset: %v; want session_revoked, mfa_reset", err)
	}
	if st := w.svc.MFAOf(mustUser(t, w, "maria")); len(st.Factors) != 0 || st.RecoveryCodes != 0 {
		t.Fatalf("after the reset: %+v", st)
	}
	if _, err := w.signIn("maria"); err != nil {
		t.Fatalf("sign-in after the reset: %v", err)
	}
	evs := w.events("user.mfa_reset")
	if len(evs) != 1 || evs[0].Actor != admin.String() || evs[0].UserID != id.User.ID || evs[0].Detail["factors"] != "1" {
		t.Fatalf("user.mfa_reset events: %+v", evs)
	}
	// The operator resets an admin, who enrolls again at sign-in.
	w.enrollAtSignIn("ada")
	if _, err := w.users.ResetMFA(w.ctx, auth.CLI, ada.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.signIn("ada"); !errors.Is(err, auth.ErrMFAEnrollment) {
		t.Fatalf("an admin after a reset: %v; want mfa_enrollment_required", err)
	}
}

// TestSealedTOTPSecret: with a master key the TOTP secret is stored
// sealed, bound to its user and factor; without one it is stored as it
// is, and sealed at its next use once the server has one. A server
// without the key cannot use a sealed secret.
func TestSealedTOTPSecret(t *testing.T) {
	store := newStore(t)
	w := newWorldOn(t, store)
	w.user("ada", storage.RoleAdmin)
	e, _ := w.enrollAtSignIn("ada")
	plain := mustUser(t, w, "ada").MFA.Factors[0].TOTP
	raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.secret)
	if plain.Sealed || string(plain.Secret) != string(raw) {
		t.Fatalf("without a master key: %+v; want the secret as it is", plain)
	}

	master, err := auth.NewMasterKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := auth.NewService(w.ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now), auth.WithMasterKey(master))
	if err != nil {
		t.Fatal(err)
	}
	w.svc = sealed
	w.nextStep()
	_, err = w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFARequired, "mfaToken")
	if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); err != nil {
		t.Fatal(err)
	}
	after := mustUser(t, w, "ada").MFA.Factors[0].TOTP
	if !after.Sealed || strings.Contains(string(after.Secret), string(raw)) {
		t.Fatalf("after its use with a master key: sealed %v", after.Sealed)
	}
	// A new factor is sealed from the start.
	w.user("root", storage.RoleAdmin)
	w.enrollAtSignIn("root")
	if f := mustUser(t, w, "root").MFA.Factors[0]; !f.TOTP.Sealed {
		t.Fatal("a factor enrolled with a master key is not sealed")
	}

	// A server without the key: the code cannot be checked.
	bare, err := auth.NewService(w.ctx, auth.DefaultConfig(), store, auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
	if err == nil {
		w.svc = bare
		w.nextStep()
		_, err = w.signIn("ada")
		tok = interrupted(t, err, auth.ErrMFARequired, "mfaToken")
		if _, err := w.svc.LoginSecondFactor(w.ctx, tok, rfc6238(t, e.secret, w.clock.Now())); err == nil || errors.Is(err, auth.ErrCodeWrong) {
			t.Fatalf("a sealed secret without the master key: %v; want a server error", err)
		}
	} else if !errors.Is(err, auth.ErrSealed) {
		t.Fatal(err)
	}
}

// TestSignInPageSteps: at an OAuth sign-in page the second step is bound
// to the client it began with; it ends in a SignedIn whose AMR says how.
// Enrolling there ends with recovery codes and a resume step, used once.
func TestSignInPageSteps(t *testing.T) {
	w := newWorld(t)
	w.user("ada", storage.RoleAdmin)
	page := auth.LoginRequest{ClientID: "cli_app", SecondFactor: true}
	signIn := func(name string) error {
		req := page
		req.Username, req.Password = name, password
		_, err := w.svc.SignIn(w.ctx, req)
		return err
	}
	enroll := interrupted(t, signIn("ada"), auth.ErrMFAEnrollment, "enrollmentToken")
	setup, err := w.svc.BeginEnrollment(w.ctx, enroll)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.svc.LoginEnrolled(w.ctx, enroll, rfc6238(t, setup.Secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
		t.Fatalf("a page's enrollment at the native API: %v; want token_invalid", err)
	}
	other := page
	other.ClientID = "cli_other"
	if _, err := w.svc.SignInEnrolled(w.ctx, other, enroll, rfc6238(t, setup.Secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
		t.Fatalf("another client's page: %v; want token_invalid", err)
	}
	done, err := w.svc.SignInEnrolled(w.ctx, page, enroll, rfc6238(t, setup.Secret, w.clock.Now()))
	if err != nil || len(done.RecoveryCodes) != 10 || done.Resume == "" {
		t.Fatalf("enrolled at the page: %+v, %v", done, err)
	}
	in, err := w.svc.SignInResume(w.ctx, page, done.Resume)
	if err != nil || in.User.Username != "ada" || !slices.Equal(in.AMR, []string{"pwd", "otp"}) {
		t.Fatalf("resume: %+v, %v", in, err)
	}
	if _, err := w.svc.SignInResume(w.ctx, page, done.Resume); codeOf(err) != tether.CodeTokenAlreadyUsed {
		t.Fatalf("resume again: %v; want token_already_used", err)
	}

	tok := interrupted(t, signIn("ada"), auth.ErrMFARequired, "mfaToken")
	w.nextStep()
	if _, err := w.svc.SignInSecondFactor(w.ctx, other, tok, rfc6238(t, setup.Secret, w.clock.Now())); codeOf(err) != tether.CodeTokenInvalid {
		t.Fatalf("another client's page: %v; want token_invalid", err)
	}
	in, err = w.svc.SignInSecondFactor(w.ctx, page, tok, rfc6238(t, setup.Secret, w.clock.Now()))
	if err != nil || !slices.Equal(in.AMR, []string{"pwd", "otp"}) {
		t.Fatalf("second factor at the page: %+v, %v", in, err)
	}
	var amrs []string
	for _, e := range w.events("oauth.sign_in") {
		if e.Outcome == "success" {
			amrs = append(amrs, e.Detail["amr"])
		}
	}
	if !slices.Equal(amrs, []string{"pwd,otp", "pwd,otp"}) {
		t.Fatalf("oauth.sign_in successes' amr %v", amrs)
	}
}

// TestStepSurvivesRehash: a login that rehashes the password with newer
// parameters keeps its second step: only a changed password voids it.
func TestStepSurvivesRehash(t *testing.T) {
	w := newWorld(t)
	older := auth.NewUsers(w.store, auth.NewHasher(auth.Params{Memory: 32, Time: 1, Threads: 1, KeyLen: 32, SaltLen: 16}), validatorFor(t))
	u, err := older.Create(w.ctx, auth.CLI, auth.NewUser{Username: "ada", Password: password, Role: storage.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.signIn("ada")
	tok := interrupted(t, err, auth.ErrMFAEnrollment, "enrollmentToken")
	if after := mustUser(t, w, "ada"); after.PasswordHash == u.PasswordHash {
		t.Fatal("the login did not rehash the password")
	}
	setup, err := w.svc.BeginEnrollment(w.ctx, tok)
	if err != nil {
		t.Fatalf("enroll after a rehash: %v", err)
	}
	if _, _, err := w.svc.LoginEnrolled(w.ctx, tok, rfc6238(t, setup.Secret, w.clock.Now())); err != nil {
		t.Fatalf("confirm after a rehash: %v", err)
	}
}
