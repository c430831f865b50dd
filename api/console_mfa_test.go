package api_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	qrreader "github.com/makiuchi-d/gozxing/qrcode"
)

// downloads makes the browser save downloads into a new directory, which
// it returns.
func (b *browser) downloads() string {
	b.t.Helper()
	dir := b.t.TempDir()
	b.run("allow downloads", cdpbrowser.SetDownloadBehavior(cdpbrowser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(dir))
	return dir
}

// downloaded waits for the file name in dir and returns its content.
func downloaded(t *testing.T, dir, name string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(data) > 0 {
			return string(data)
		}
	}
	entries, _ := os.ReadDir(dir)
	t.Fatalf("no download %s; the directory holds %v", name, entries)
	return ""
}

// pureQR tells the QR reader the image is a generated code alone, no
// photo: without it, gozxing misreads about one in fifty such images.
var pureQR = map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true}

// qrText decodes the QR code the image sel shows, as it loaded it (at its
// own size: a screenshot's scaling may blur the modules).
func (b *browser) qrText(sel string) string {
	b.t.Helper()
	var ready bool
	var data string
	b.run("read the image "+sel,
		chromedp.Poll(fmt.Sprintf(`(() => { const i = document.querySelector(%q); return i.complete && i.naturalWidth > 0; })()`, sel), &ready),
		chromedp.Evaluate(fmt.Sprintf(`(() => { const i = document.querySelector(%q); const c = document.createElement("canvas");
			c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext("2d").drawImage(i, 0, 0);
			return c.toDataURL("image/png").split(",")[1]; })()`, sel), &data),
	)
	shot, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		b.t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		b.t.Fatal(err)
	}
	res, err := qrreader.NewQRCodeReader().Decode(bmp, pureQR)
	if err != nil {
		b.t.Fatalf("the QR code of %s does not read: %v", sel, err)
	}
	return res.GetText()
}

// recoveryCodesOf is the count of a user's unused recovery codes in the
// store.
func (e *env) recoveryCodesOf(username string) int {
	e.t.Helper()
	u, err := e.store.GetUserByUsername(e.t.Context(), username)
	if err != nil {
		e.t.Fatal(err)
	}
	if u.MFA == nil {
		return 0
	}
	return len(u.MFA.RecoveryCodes)
}

// TestConsoleSecondFactor drives the console's second factors in Chromium
// with the default policy (admins must have one): an admin is led through
// setting up an authenticator app at her first sign-in (the QR code holds
// the key shown beside it), sees her recovery codes once and downloads
// them; signs in again with a recovery code, which then works no more; a
// wrong code is refused; she makes new recovery codes on the Security
// page after a code of her app; the users page shows each account's
// factors, and she resets another admin's (whose sessions end). A manager
// adds an authenticator app of her own after her password, then removes
// it after a code.
func TestConsoleSecondFactor(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	e.adminUser()
	b := newBrowser(t, e, 1280, 900)
	w := b.watch()
	dir := b.downloads()

	if at := b.signInPassword("ada", "correct horse"); at != "enroll" {
		t.Fatalf("an admin without a factor signs in to %q; want the enrollment step", at)
	}
	var secret string
	b.eval(`document.querySelector("#enroll-secret").value`, &secret)
	uri, err := url.Parse(b.qrText("#enroll-qr"))
	if err != nil || uri.Scheme != "otpauth" || uri.Query().Get("secret") != secret || !strings.Contains(uri.Path, "ada") {
		t.Fatalf("the QR code holds %v (%v); want the otpauth URI of ada with the key %s", uri, err, secret)
	}
	b.shoot("console-mfa-enroll.png")
	w.clean("the enrollment step")

	b.apps["ada"] = &totpApp{secret: secret}
	b.run("a wrong first code",
		chromedp.SendKeys("#enroll-form input[name=code]", "000000", chromedp.ByQuery),
		chromedp.Click("#enroll-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#flash.bad", chromedp.ByQuery),
	)
	if got := b.text("#flash"); !strings.Contains(got, "the code is wrong") || !b.displayed("#enroll-step") {
		t.Fatalf("a wrong first code says %q", got)
	}
	b.heard401()
	codes := b.enrollAtSignIn("ada")
	if len(codes) != 10 {
		t.Fatalf("the page shows %d recovery codes: %v", len(codes), codes)
	}
	if got := b.text("#login-title"); got != "Your recovery codes" || !strings.Contains(b.text("#login-codes"), "shown only this once") {
		t.Fatalf("the codes come under %q without the warning that they show once", got)
	}
	b.shoot("console-mfa-codes.png")
	b.run("download the codes", chromedp.Click("#login-codes [data-download]", chromedp.ByQuery))
	file := downloaded(t, dir, "tether-recovery-codes-ada.txt")
	for _, c := range codes {
		if !strings.Contains(file, c+"\n") {
			t.Fatalf("the downloaded file lacks the code %s:\n%s", c, file)
		}
	}
	b.run("move on", chromedp.Click("#login-codes [data-done]", chromedp.ByQuery), chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery))
	if b.secretInPage(codes[0]) || b.secretInPage(secret) {
		t.Fatal("signed in, the page still holds a recovery code or the key")
	}
	if got := e.recoveryCodesOf("ada"); got != 10 {
		t.Fatalf("the store holds %d recovery codes of ada; want 10", got)
	}
	w.clean("signed in after enrolling")

	// Signed out, the next sign-in asks for a code: a wrong one is refused,
	// a recovery code works once.
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	if at := b.signInPassword("ada", "correct horse"); at != "mfa" {
		t.Fatalf("an admin with a factor signs in to %q; want the code step", at)
	}
	b.run("a wrong code",
		chromedp.SendKeys("#mfa-form input[name=code]", "123456", chromedp.ByQuery),
		chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#flash.bad", chromedp.ByQuery),
	)
	if got := b.text("#flash"); !strings.Contains(got, "the code is wrong") || !b.displayed("#mfa-form") {
		t.Fatalf("a wrong code says %q", got)
	}
	b.heard401()
	b.shoot("console-mfa-code-step.png")
	b.run("a recovery code",
		chromedp.SendKeys("#mfa-form input[name=code]", codes[0], chromedp.ByQuery),
		chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery),
	)
	if got := e.recoveryCodesOf("ada"); got != 9 {
		t.Fatalf("after one was used the store holds %d recovery codes; want 9", got)
	}
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	b.signInPassword("ada", "correct horse")
	b.run("the same recovery code again",
		chromedp.SendKeys("#mfa-form input[name=code]", codes[0], chromedp.ByQuery),
		chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#flash.bad", chromedp.ByQuery),
	)
	b.heard401()
	b.run("a code of the app",
		chromedp.SendKeys("#mfa-form input[name=code]", b.code("ada"), chromedp.ByQuery),
		chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery),
	)
	w.clean("signing in with a code")

	// The Security page: her factor, the codes left; new codes after a
	// code of her app.
	b.run("open Security",
		chromedp.Click(`a[data-nav="security"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#factors-table tr[data-kind="totp"]`, chromedp.ByQuery),
	)
	if got := b.text("#recovery-left"); !strings.Contains(got, "9 unused recovery codes left") {
		t.Fatalf("the page says %q; want 9 codes left", got)
	}
	if got := b.text("#security-policy"); !strings.Contains(got, "must have a second factor") {
		t.Fatalf("the policy reads %q", got)
	}
	b.run("ask for new recovery codes",
		chromedp.Click("#recovery-open", chromedp.ByQuery),
		chromedp.WaitVisible("#reauth-code input", chromedp.ByQuery),
	)
	if b.displayed("#reauth-password") {
		t.Fatal("with a factor, the confirmation asks for the password")
	}
	b.run("confirm with a code",
		chromedp.SendKeys("#reauth-code input", b.code("ada"), chromedp.ByQuery),
		chromedp.Click("#reauth-ok", chromedp.ByQuery),
		chromedp.WaitVisible("#security-codes [data-codes] li", chromedp.ByQuery),
	)
	var fresh []string
	b.eval(`[...document.querySelectorAll("#security-codes li")].map((li) => li.textContent)`, &fresh)
	if len(fresh) != 10 || slices.Contains(fresh, codes[1]) {
		t.Fatalf("new codes: %v", fresh)
	}
	b.shoot("console-security.png")
	if err := os.Remove(filepath.Join(dir, "tether-recovery-codes-ada.txt")); err != nil {
		t.Fatal(err)
	}
	b.run("download them", chromedp.Click("#security-codes [data-download]", chromedp.ByQuery))
	if file := downloaded(t, dir, "tether-recovery-codes-ada.txt"); !strings.Contains(file, fresh[9]+"\n") || strings.Contains(file, codes[1]) {
		t.Fatalf("the new download:\n%s", file)
	}
	b.run("done with them", chromedp.Click("#security-codes [data-done]", chromedp.ByQuery), chromedp.WaitNotPresent("#security-codes li", chromedp.ByQuery))
	if got := b.text("#recovery-left"); !strings.Contains(got, "10 unused recovery codes left") {
		t.Fatalf("after new codes the page says %q", got)
	}
	p := wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "ada", "password": "correct horse"}), 401, "mfa_required")
	wantProblem(t, e.do("POST", "/v1/auth/mfa", "", map[string]any{"mfaToken": p["mfaToken"], "code": codes[1]}), 401, "invalid_credentials")
	w.clean("the Security page")

	// The users page: who has what; ada resets grace's factors.
	grace := e.enrolledUser(t, &stepClock{}, "grace", "admin")
	b.run("open the users",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//td[contains(., "grace")]`),
	)
	factorsOf := func(username string) string {
		t.Helper()
		var s string
		b.eval(`[...document.querySelectorAll("#users-table tbody tr")].find((tr) => tr.cells[0].textContent === `+jsString(username)+`).cells[6].textContent`, &s)
		return s
	}
	for user, want := range map[string]string{"ada": "app", "grace": "app", "maria": "none", "walter": "—"} {
		if got := factorsOf(user); got != want {
			t.Fatalf("the users page gives %s second factor %q; want %q", user, got, want)
		}
	}
	if b.displayed(`button[data-reset-mfa="ada"]`) || b.displayed(`button[data-reset-mfa="maria"]`) {
		t.Fatal("a reset is offered for ada herself or for maria, who has no factor")
	}
	b.shoot("console-users-factors.png")
	b.run("reset grace's second factor",
		chromedp.Click(`button[data-reset-mfa="grace"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
	)
	if got := b.text("#confirm-text"); !strings.Contains(got, "grace") || !strings.Contains(got, "every session of theirs ends") {
		t.Fatalf("the confirmation reads %q", got)
	}
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery), chromedp.WaitNotPresent(`button[data-reset-mfa="grace"]`, chromedp.ByQuery))
	if got := b.text("#flash"); !strings.Contains(got, "Second factors of grace reset; 1 session(s) ended") {
		t.Fatalf("after the reset: %q", got)
	}
	if got := factorsOf("grace"); got != "none" {
		t.Fatalf("after the reset grace has %q", got)
	}
	wantProblem(t, e.do("GET", "/v1/auth/me", grace.access(), nil), 401, "session_revoked")
	w.clean("the reset")

	// A manager (optional) adds an app after her password, then removes it
	// after a code; she is offered no reset.
	b.run("sign out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	b.signIn("maria", "correct horse")
	b.run("open the users as a manager",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//td[contains(., "ada")]`),
	)
	if b.displayed(`button[data-reset-mfa]`) {
		t.Fatal("a manager is offered a reset of second factors")
	}
	b.run("set up an app",
		chromedp.Click(`a[data-nav="security"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="factors-table"]//td[contains(., "No second factor yet")]`),
		chromedp.Click("#totp-open", chromedp.ByQuery),
		chromedp.WaitVisible("#reauth-password input", chromedp.ByQuery),
	)
	if got := b.text("#passkeys-off"); !strings.Contains(got, "Passkeys are off on this server") || !strings.Contains(got, "--public-url") {
		t.Fatalf("without --public-url the page says %q of passkeys", got)
	}
	if b.displayed("#reauth-code") || !strings.Contains(b.text("#security-policy"), "optional") {
		t.Fatal("without a factor, the confirmation asks for a code, or the policy is not optional")
	}
	b.run("confirm with the password",
		chromedp.SendKeys("#reauth-password input", "correct horse", chromedp.ByQuery),
		chromedp.Click("#reauth-ok", chromedp.ByQuery),
		chromedp.WaitVisible("#security-setup", chromedp.ByQuery),
	)
	var mariaKey string
	b.eval(`document.querySelector("#setup-secret").value`, &mariaKey)
	if u, err := url.Parse(b.qrText("#setup-qr")); err != nil || u.Query().Get("secret") != mariaKey {
		t.Fatalf("the setup's QR code holds %v (%v); want the key %s", u, err, mariaKey)
	}
	b.shoot("console-security-setup.png")
	b.apps["maria"] = &totpApp{secret: mariaKey}
	b.run("a wrong code", chromedp.SendKeys("#setup-form input[name=code]", "000000", chromedp.ByQuery),
		chromedp.Click("#setup-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#setup-form .errors:not(:empty)", chromedp.ByQuery))
	b.run("the app's code", chromedp.SetValue("#setup-form input[name=code]", b.code("maria"), chromedp.ByQuery),
		chromedp.Click("#setup-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#security-codes [data-codes] li", chromedp.ByQuery),
		chromedp.WaitVisible(`#factors-table tr[data-kind="totp"]`, chromedp.ByQuery))
	if b.displayed("#security-setup") || b.secretInPage(mariaKey) {
		t.Fatal("once confirmed, the key still shows")
	}
	if !w.expect("status of 400") {
		t.Fatal("the browser did not report the wrong code's refusal")
	}
	b.run("remove it",
		chromedp.Click(`#factors-table tr[data-kind="totp"] button`, chromedp.ByQuery),
		chromedp.WaitVisible("#reauth-code input", chromedp.ByQuery),
		chromedp.SendKeys("#reauth-code input", b.code("maria"), chromedp.ByQuery),
		chromedp.Click("#reauth-ok", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="factors-table"]//td[contains(., "No second factor yet")]`),
	)
	if got := e.recoveryCodesOf("maria"); got != 0 {
		t.Fatalf("with her last factor removed maria keeps %d recovery codes", got)
	}
	w.clean("a manager's own factor")
}
