package api_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"tether/api"
	"tether/storage"
)

// url starts the app on a loopback port (once) and returns its base URL.
func (e *env) url() string {
	e.t.Helper()
	e.listen.Do(func() {
		ln := e.ln
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				e.t.Fatal(err)
			}
		}
		go e.app.Listener(api.Listener(ln))
		e.root.Cleanup(func() { e.app.Shutdown() })
		*e.addr = ln.Addr().String()
	})
	return "http://" + *e.addr
}

func TestConsoleServesWithStrictHeaders(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/console", "/console/", "/console/app.js", "/console/app.css", "/console/icon.svg"} {
		r := e.do("GET", path, "", nil)
		if r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
	}
	page := string(e.do("GET", "/console/", "", nil).body)
	if strings.Contains(page, "<script>") || strings.Contains(page, " on") && strings.Contains(page, "onclick=") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Fatal("the console page has inline script or loads from another origin")
	}
	for _, path := range []string{"/console/../api_test.go", "/console/console.go", "/console/nope.js", "/console/%2e%2e/errors.go"} {
		if r := e.do("GET", path, "", nil); r.status != 404 {
			t.Fatalf("%s: %d; want 404", path, r.status)
		}
	}
}

// chromium returns the browser the console test drives: Debian's chromium,
// which .ci/run installs. Elsewhere the test skips without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI must run the console test: install chromium")
	}
	t.Skip("no chromium on this machine")
	return ""
}

// artifacts is where the browser test leaves its screenshots.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TETHER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a headless Chromium driving the console of one env.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	// apps are the authenticator apps of the accounts that set one up in
	// this browser, by username.
	apps map[string]*totpApp
	// w, when the test watches the page, hears the 401 that asks for a
	// second factor: signIn takes it as expected.
	w *pageWatch
}

// totpApp is an authenticator app: the secret the console showed, and the
// last TOTP step it gave a code of (a code works once, and the server
// takes no step at or before the last one used).
type totpApp struct {
	secret string
	last   int64
}

// code is a code of the app no older than any it gave before: the
// current step's or, once that was given, the next one's (the server
// takes one step of clock skew); when both were given it waits for the
// clock to move on.
func (a *totpApp) code(t testing.TB) string {
	t.Helper()
	for {
		cur := time.Now().Unix() / 30
		if s := max(cur, a.last+1); s <= cur+1 {
			a.last = s
			code, err := totp.GenerateCode(a.secret, time.Unix(s*30, 0))
			if err != nil {
				t.Fatal(err)
			}
			return code
		}
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)))
	}
}

// code is the next code of the authenticator app username set up in this
// browser.
func (b *browser) code(username string) string {
	b.t.Helper()
	a := b.apps[username]
	if a == nil {
		b.t.Fatalf("%s has set up no authenticator app in this browser", username)
	}
	return a.code(b.t)
}

// newBrowser starts Chromium for e's console, window width by height
// pixels. It skips the test in -short mode or where there is no Chromium
// (but in CI).
func newBrowser(t *testing.T, e *env, width, height int) *browser {
	t.Helper()
	if testing.Short() {
		t.Skip("drives a browser")
	}
	exe := chromium(t)
	base := e.url()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	// Teardown runs in reverse: close the browser and wait for it, stop the
	// allocator, then (registered first, by t.TempDir) remove the profile.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	// chromedp reports protocol events it does not know (newer browsers
	// send more): they are not errors of the page.
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing chromium: %v", err)
		}
		cancel()
	})
	// Start the browser on its own context: the step contexts below only
	// bound each step, and ending one must not end the browser.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base, apps: map[string]*totpApp{}}
}

// run runs one step, with its own time limit so a failing one still
// leaves time for a screenshot (console-failure-<test>.png).
func (b *browser) run(step string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, done := context.WithTimeout(b.ctx, 20*time.Second)
	defer done()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var shot []byte
		sctx, scancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer scancel()
		if chromedp.Run(sctx, chromedp.FullScreenshot(&shot, 100)) == nil {
			os.WriteFile(filepath.Join(artifacts(b.t), "console-failure-"+b.t.Name()+".png"), shot, 0o644)
		}
		var flash string
		chromedp.Run(sctx, chromedp.Text("#flash", &flash, chromedp.ByQuery, chromedp.AtLeast(0)))
		b.t.Fatalf("%s: %v (flash: %q)", step, err, flash)
	}
}

// text is the text of the element sel selects.
func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

// eval evaluates a JavaScript expression into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	b.run("evaluate "+expr, chromedp.Evaluate(expr, out))
}

// save writes a screenshot to the artifacts.
func (b *browser) save(name string, shot []byte) {
	b.t.Helper()
	if err := os.WriteFile(filepath.Join(artifacts(b.t), name), shot, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signedInJS is "fleet" once the console shows the fleet after a sign-in,
// "mfa" or "enroll" at a second step, "error" when it says why not.
const signedInJS = `(() => {
	const shown = (sel) => { const el = document.querySelector(sel); return el && !el.hidden; };
	if (shown("#fleet-view") && document.querySelector("#fleet-table tbody tr td a")) return "fleet";
	if (shown("#mfa-form")) return "mfa";
	if (shown("#enroll-step")) return "enroll";
	if (shown("#flash.bad")) return "error";
	return "";
})()`

// signInPassword opens the console and signs in with a password, and
// returns where that leads: "fleet", "mfa", "enroll" or "error".
func (b *browser) signInPassword(username, password string) string {
	b.t.Helper()
	var at string
	b.run("sign in as "+username,
		chromedp.Navigate(b.base+"/console"),
		chromedp.WaitVisible("#login-form", chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=username]", username, chromedp.ByQuery),
		chromedp.SendKeys("#login-form input[name=password]", password, chromedp.ByQuery),
		chromedp.Click("#login-form button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(signedInJS, &at, chromedp.WithPollingTimeout(15*time.Second)),
	)
	if at == "mfa" || at == "enroll" {
		b.heard401()
	}
	return at
}

// heard401 takes the 401 of a second step as expected, if the page is
// watched.
func (b *browser) heard401() {
	b.t.Helper()
	if b.w != nil && !b.w.expect("status of 401") {
		b.t.Fatal("the browser did not report the 401 that asks for a second factor")
	}
}

// enrollAtSignIn sets up an authenticator app at the enrollment step of a
// sign-in, as a person would with the key the page shows, and returns the
// recovery codes the page then shows once, before it moves on.
func (b *browser) enrollAtSignIn(username string) []string {
	b.t.Helper()
	var secret string
	b.eval(`document.querySelector("#enroll-secret").value`, &secret)
	if secret == "" {
		b.t.Fatal("the enrollment step shows no key")
	}
	b.apps[username] = &totpApp{secret: secret}
	b.run("confirm the authenticator app",
		chromedp.SendKeys("#enroll-form input[name=code]", b.code(username), chromedp.ByQuery),
		chromedp.Click("#enroll-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#login-codes [data-codes] li", chromedp.ByQuery),
	)
	var codes []string
	b.eval(`[...document.querySelectorAll("#login-codes li")].map((li) => li.textContent)`, &codes)
	return codes
}

// signIn opens the console and signs in, with the second factor the
// account has (its authenticator app in this browser) or, when it must
// have one, setting one up; the fleet shows.
func (b *browser) signIn(username, password string) {
	b.t.Helper()
	switch at := b.signInPassword(username, password); at {
	case "fleet":
		return
	case "enroll":
		b.enrollAtSignIn(username)
		b.run("move on from the recovery codes", chromedp.Click("#login-codes [data-done]", chromedp.ByQuery))
	case "mfa":
		b.run("send a code of the app",
			chromedp.SendKeys("#mfa-form input[name=code]", b.code(username), chromedp.ByQuery),
			chromedp.Click("#mfa-form button[type=submit]", chromedp.ByQuery))
	default:
		b.t.Fatalf("signing in as %s led to %q (flash: %q)", username, at, b.text("#flash"))
	}
	b.run("see the fleet", chromedp.WaitVisible("#fleet-table tbody tr td a", chromedp.ByQuery))
}

// TestConsoleInBrowser drives the console in headless Chromium as a manager
// would: sign in, register a handset, find it, suspend it and see its badge
// change, import a file after a dry run, create an enrollment code and see
// its QR image.
func TestConsoleInBrowser(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t, e, 1280, 900)
	e.fleet() // walter (worker) and maria (manager), two handsets
	run, textOf := b.run, b.text

	b.signIn("maria", "correct horse")

	const imei = "359881234567899"
	run("register a handset",
		chromedp.Click("#register-open", chromedp.ByQuery),
		chromedp.WaitVisible("#register-dialog input[name=imei]", chromedp.ByQuery),
		chromedp.SendKeys("#register-dialog input[name=imei]", imei, chromedp.ByQuery),
		chromedp.SendKeys("#register-dialog input[name=label]", "van 99", chromedp.ByQuery),
		chromedp.Click("#register-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#register-dialog", chromedp.ByQuery),
	)
	// The new handset is listed at once, among the others; the search
	// leaves it alone.
	var alone bool
	run("find it by search",
		chromedp.WaitVisible(fmt.Sprintf(`//table[@id="fleet-table"]//a[text()="%s"]`, imei)),
		chromedp.SendKeys("#fleet-filter input[name=q]", "van 99", chromedp.ByQuery),
		chromedp.Click("#fleet-filter button[type=submit]", chromedp.ByQuery),
		chromedp.Poll(fmt.Sprintf(`(() => { const rows = document.querySelectorAll("#fleet-table tbody tr");
			return rows.length === 1 && rows[0].textContent.includes(%q); })()`, imei), &alone, chromedp.WithPollingTimeout(10*time.Second)),
	)
	run("open and suspend it",
		chromedp.Click(fmt.Sprintf(`//table[@id="fleet-table"]//a[text()="%s"]`, imei)),
		chromedp.WaitVisible(`#device-actions button[data-op="suspend"]`, chromedp.ByQuery),
		chromedp.Click(`#device-actions button[data-op="suspend"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.SendKeys("#confirm-reason", "left in a taxi", chromedp.ByQuery),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitVisible(`#device-details .badge[data-status="suspended"]`, chromedp.ByQuery),
	)
	if got := textOf("#device-details .badge"); !strings.EqualFold(got, "suspended") {
		t.Fatalf("badge says %q; want suspended", got)
	}
	if got := textOf("#device-details"); !strings.Contains(got, "Key") || !strings.Contains(got, "none: tokens bound to the device id only") {
		t.Fatalf("the details do not say the handset has no key: %q", got)
	}
	d, err := e.store.GetDeviceByIMEI(t.Context(), imei)
	if err != nil || d.Status != "suspended" || d.StatusReason != "left in a taxi" {
		t.Fatalf("stored device after suspending in the console: %+v, %v", d, err)
	}

	file, err := filepath.Abs(filepath.Join("..", "testdata", "import", "fleet-50.csv"))
	if err != nil {
		t.Fatal(err)
	}
	run("import after a dry run",
		chromedp.Click(`a[data-nav="fleet"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#import-open", chromedp.ByQuery),
		chromedp.Click("#import-open", chromedp.ByQuery),
		chromedp.WaitVisible("#import-dialog", chromedp.ByQuery),
		chromedp.SetUploadFiles("#import-form input[type=file]", []string{file}, chromedp.ByQuery),
		chromedp.Click("#import-dry", chromedp.ByQuery),
		chromedp.WaitVisible("#import-summary", chromedp.ByQuery),
	)
	if got := textOf("#import-summary"); !strings.Contains(got, "50 ready to import") {
		t.Fatalf("dry run says %q", got)
	}
	if n := e.deviceCount(); n != 3 {
		t.Fatalf("the dry run wrote: %d devices", n)
	}
	run("commit the import",
		chromedp.Click("#import-commit", chromedp.ByQuery),
		chromedp.WaitVisible(`//p[@id="import-summary"][contains(., "Imported 50")]`),
	)
	if n := e.deviceCount(); n != 53 {
		t.Fatalf("%d devices after the import; want 53", n)
	}

	var shot []byte
	run("screenshot the fleet",
		chromedp.Click("#import-dialog button[data-close]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#import-dialog", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("#fleet-filter input[name=q]").value = ""`, nil),
		chromedp.Click("#fleet-filter button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="fleet-table"]//a[text()="350000007000009"]`),
		chromedp.FullScreenshot(&shot, 100),
	)
	b.save("console-fleet.png", shot)

	var qrWidth int
	run("create an enrollment code and see its QR",
		chromedp.Click(`a[data-nav="enroll"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#code-form", chromedp.ByQuery),
		chromedp.SendKeys("#code-form input[name=label]", "spares", chromedp.ByQuery),
		chromedp.Click("#code-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#code-result", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector("#code-qr").complete && document.querySelector("#code-qr").naturalWidth`, &qrWidth, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if qrWidth < 100 {
		t.Fatalf("QR image %dpx wide; want it drawn", qrWidth)
	}
	if code := textOf("#code-value"); len(code) != 19 {
		t.Fatalf("code shown %q", code)
	}

	run("create a user and disable it",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#user-open", chromedp.ByQuery),
		chromedp.Click("#user-open", chromedp.ByQuery),
		chromedp.WaitVisible("#user-dialog input[name=username]", chromedp.ByQuery),
		chromedp.SendKeys("#user-dialog input[name=username]", "jesse", chromedp.ByQuery),
		chromedp.SendKeys("#user-dialog input[name=password]", "a long password", chromedp.ByQuery),
		chromedp.Click("#user-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//td[.="jesse"]`),
		chromedp.Click(`//table[@id="users-table"]//tr[td[.="jesse"]]//button[text()="Disable"]`),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//tr[td[.="jesse"]]//button[text()="Enable"]`),
	)
	u, err := e.store.GetUserByUsername(t.Context(), "jesse")
	if err != nil || !u.Disabled {
		t.Fatalf("user after the console disabled it: %+v, %v", u, err)
	}

	// Someone guesses walter's password: the manager sees him held back
	// and clears him.
	for range 6 {
		e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "a guess", "device": handset("490154203237518")})
	}
	wantProblem(t, e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": handset("490154203237518")}), 429, "too_many_attempts")
	run("see a held account and clear it",
		chromedp.Click(`a[data-nav="fleet"]`, chromedp.ByQuery),
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="lockouts-table"]//tr[td[text()="walter"] and td[text()="0.0.0.0"]]//span[contains(@class,"badge")]`),
		chromedp.ScrollIntoView("#lockouts-table", chromedp.ByQuery),
		chromedp.CaptureScreenshot(&shot),
		chromedp.Click(`//table[@id="lockouts-table"]//tr[td[text()="walter"] and td[text()="0.0.0.0"]]//button[text()="Clear"]`),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitNotPresent(`//table[@id="lockouts-table"]//tr[td[text()="walter"] and td[text()="0.0.0.0"]]`),
	)
	b.save("console-lockouts.png", shot)
	if r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "walter", "password": "correct horse", "device": handset("490154203237518")}); r.status != 200 {
		t.Fatalf("walter once the console cleared him: %d %s", r.status, r.body)
	}
}

// displayed reports whether the element sel selects takes up room on the
// page: hidden elements (the hidden attribute, display: none) do not.
func (b *browser) displayed(sel string) bool {
	b.t.Helper()
	var shown bool
	b.eval(fmt.Sprintf(`(() => { const el = document.querySelector(%q);
		return !!el && el.getClientRects().length > 0; })()`, sel), &shown)
	return shown
}

// TestConsoleMenuHiddenUntilSignedIn checks that the menu and "Log out"
// show only to someone signed in, and that every element the script hides
// stays hidden whatever its style (a dialog's reason field among them).
func TestConsoleMenuHiddenUntilSignedIn(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	b := newBrowser(t, e, 1280, 900)
	b.run("open the console", chromedp.Navigate(b.base+"/console"), chromedp.WaitVisible("#login-form", chromedp.ByQuery))
	for _, sel := range []string{"#top", "#logout", `a[data-nav="fleet"]`} {
		if b.displayed(sel) {
			t.Fatalf("before signing in, %s is shown; want it hidden", sel)
		}
	}
	b.signIn("maria", "correct horse")
	for _, sel := range []string{"#top", "#logout", `a[data-nav="audit"]`} {
		if !b.displayed(sel) {
			t.Fatalf("signed in, %s is hidden; want it shown", sel)
		}
	}
	// A confirmation that asks no reason shows no reason field.
	b.run("ask to disable walter",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//tr[td[.="walter"]]//button[text()="Disable"]`),
		chromedp.Click(`//table[@id="users-table"]//tr[td[.="walter"]]//button[text()="Disable"]`),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
	)
	if b.displayed("#confirm-reason") {
		t.Fatal("disabling a user shows a reason field; want it hidden")
	}
	b.run("cancel and sign out",
		chromedp.Click(`#confirm-dialog button[value="no"]`, chromedp.ByQuery),
		chromedp.WaitNotVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.Click("#logout", chromedp.ByQuery),
		chromedp.WaitVisible("#login-form", chromedp.ByQuery),
	)
	for _, sel := range []string{"#top", "#logout"} {
		if b.displayed(sel) {
			t.Fatalf("signed out, %s is shown; want it hidden", sel)
		}
	}
}

// TestConsoleAuditNewestFirst checks that the audit page opens on the
// newest events and that "Older events" goes back in time, to the oldest.
func TestConsoleAuditNewestFirst(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	// More events than a page holds, made before the sign-in below.
	var filler []storage.Event
	for i := range 150 {
		ev := storage.NewEvent(t.Context(), time.Now(), "test.filler", "success", "cli")
		ev.Reason = fmt.Sprint(i)
		filler = append(filler, ev)
	}
	if err := e.store.AppendEvents(t.Context(), filler...); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e, 1366, 900)
	b.signIn("maria", "correct horse")

	// times reads the rows' times, and checks that they go back in time.
	times := func() []float64 {
		t.Helper()
		var ts []float64 // milliseconds
		b.eval(`Array.from(document.querySelectorAll("#audit-table tbody tr td:first-child time")).map((t) => Date.parse(t.dateTime))`, &ts)
		for i := 1; i < len(ts); i++ {
			if ts[i] > ts[i-1] {
				t.Fatalf("row %d is at %v, after row %d at %v; want the newest first", i+1, ts[i], i, ts[i-1])
			}
		}
		return ts
	}
	cell := func(row, col int) string {
		return b.text(fmt.Sprintf("#audit-table tbody tr:nth-child(%d) td:nth-child(%d)", row, col))
	}
	b.run("open the audit trail",
		chromedp.Click(`a[data-nav="audit"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#audit-table tbody tr", chromedp.ByQuery),
	)
	if got := len(times()); got != 100 {
		t.Fatalf("the first page has %d rows; want 100", got)
	}
	// The newest event is maria's sign-in, just now.
	if action, user := cell(1, 2), cell(1, 6); action != "login" || user != "maria" {
		t.Fatalf("the first row is %s by %s; want maria's login, the newest event", action, user)
	}
	b.run("go back in time",
		chromedp.Click("#audit-more", chromedp.ByQuery),
		chromedp.WaitVisible("#audit-table tbody tr:nth-child(101)", chromedp.ByQuery),
	)
	n := len(times())
	// The oldest events are the API keys newEnv made.
	if action := cell(n, 2); action != "apikey.create" {
		t.Fatalf("the last row, after Older events, is %s; want apikey.create, the oldest event", action)
	}
	var more bool
	b.eval(`document.querySelector("#audit-more").disabled`, &more)
	if !more {
		t.Fatal("Older events is still enabled at the oldest event")
	}
}

// TestConsoleNamesPeopleAndHandsets checks that the console shows people
// by username and handsets by IMEI or label, never by their ids, in a
// handset's details, sessions and audit trail and in the audit page; and
// that the audit table fits a 1366-pixel screen.
func TestConsoleNamesPeopleAndHandsets(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	if r := e.do("PATCH", "/v1/devices/"+phone, e.manager, map[string]any{"label": "van 7"}); r.status != 200 {
		t.Fatalf("label: %d %s", r.status, r.body)
	}
	e.loginWorker() // walter, on the phone
	b := newBrowser(t, e, 1366, 900)
	b.signIn("maria", "correct horse")

	ids := regexp.MustCompile(`(usr|dev|ak|ses)_[0-9A-Z]{26}`)
	noIDs := func(where, text string) {
		t.Helper()
		if id := ids.FindString(text); id != "" {
			t.Fatalf("%s shows the id %s; want names:\n%s", where, id, text)
		}
	}
	b.run("open the phone and suspend it",
		chromedp.Navigate(b.base+"/console#device/"+phone),
		chromedp.WaitVisible(`#device-actions button[data-op="suspend"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#device-sessions tbody tr td", chromedp.ByQuery),
	)
	if got := b.text("#device-sessions tbody tr td"); got != "walter" {
		t.Fatalf("the session's user shows as %q; want walter", got)
	}
	b.run("suspend it",
		chromedp.Click(`#device-actions button[data-op="suspend"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm-dialog", chromedp.ByQuery),
		chromedp.Click("#confirm-yes", chromedp.ByQuery),
		chromedp.WaitVisible(`#device-details .badge[data-status="suspended"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="device-audit"]//td[text()="device.suspend"]`),
	)
	details := b.text("#device-details")
	noIDs("the handset's details", strings.ReplaceAll(details, phone, "")) // its own id is shown as such
	if !strings.Contains(details, "API key manager") {
		t.Fatalf("the details do not say the manager key registered it:\n%s", details)
	}
	if got := b.text("#device-audit tbody tr td:nth-child(4)"); got != "maria" {
		t.Fatalf("the suspension's actor shows as %q; want maria", got)
	}
	noIDs("the handset's audit trail", b.text("#device-audit"))

	b.run("open the audit trail",
		chromedp.Click(`a[data-nav="audit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="audit-table"]//td[text()="device.suspend"]`),
	)
	noIDs("the audit page", b.text("#audit-table"))
	var row []string
	b.eval(`Array.from(document.querySelectorAll("#audit-table tbody tr")).find((tr) => tr.textContent.includes("device.suspend")).innerText.split("\t")`, &row)
	if len(row) < 8 || row[4] != "maria" || !strings.Contains(row[6], "490154203237518") || !strings.Contains(row[6], "van 7") {
		t.Fatalf("the suspension's row reads %q; want maria as its actor and the phone by IMEI and label", row)
	}
	var fits bool
	b.eval(`(() => { const w = document.querySelector("#audit-view .table-wrap");
		return w.scrollWidth <= w.clientWidth && document.documentElement.scrollWidth <= window.innerWidth; })()`, &fits)
	var shot []byte
	b.run("screenshot the audit trail", chromedp.CaptureScreenshot(&shot))
	b.save("console-audit.png", shot)
	if !fits {
		t.Fatal("the audit table is wider than a 1366-pixel window (see console-audit.png)")
	}
}

// TestConsoleEditHandset edits a handset's label, group, assigned users and
// notes in the console, and finds it among its user's handsets.
func TestConsoleEditHandset(t *testing.T) {
	e := newEnv(t)
	phone, _ := e.fleet()
	b := newBrowser(t, e, 1280, 900)
	b.signIn("maria", "correct horse")
	fill := func(sel, value string) chromedp.Action {
		return chromedp.SetValue(sel, value, chromedp.ByQuery)
	}
	b.run("edit the phone",
		chromedp.Navigate(b.base+"/console#device/"+phone),
		chromedp.WaitVisible("#device-edit", chromedp.ByQuery),
		chromedp.Click("#device-edit", chromedp.ByQuery),
		chromedp.WaitVisible("#device-dialog input[name=notes]", chromedp.ByQuery),
		fill("#device-dialog input[name=label]", "van 12"),
		fill("#device-dialog input[name=group]", "east"),
		fill("#device-dialog input[name=assignedUsers]", "walter"),
		fill("#device-dialog input[name=notes]", "screen cracked; charger in the glovebox"),
		chromedp.Click("#device-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#device-dialog", chromedp.ByQuery),
		chromedp.WaitVisible(`//dl[@id="device-details"]/dd[.="screen cracked; charger in the glovebox"]`),
	)
	details := b.text("#device-details")
	for _, want := range []string{"van 12", "east", "walter"} {
		if !strings.Contains(details, want) {
			t.Fatalf("the details after editing lack %q:\n%s", want, details)
		}
	}
	d, err := e.store.GetDevice(t.Context(), phone)
	if err != nil || d.Label != "van 12" || d.Group != "east" || len(d.AssignedUsers) != 1 || d.Notes != "screen cracked; charger in the glovebox" {
		t.Fatalf("stored device after editing in the console: %+v, %v", d, err)
	}
	// A bad edit is refused in the dialog, naming the field.
	b.run("assign a user who does not exist",
		chromedp.Click("#device-edit", chromedp.ByQuery),
		chromedp.WaitVisible("#device-dialog input[name=assignedUsers]", chromedp.ByQuery),
		fill("#device-dialog input[name=assignedUsers]", "walter, nobody"),
		chromedp.Click("#device-dialog button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible(`//dialog[@id="device-dialog"]//div[contains(@class,"errors")][contains(., "nobody")]`),
		chromedp.Click("#device-dialog button[data-close]", chromedp.ByQuery),
		chromedp.WaitNotVisible("#device-dialog", chromedp.ByQuery),
	)

	// walter's page lists the phone, and where he is logged in.
	e.loginWorker()
	b.run("open walter's page from the users",
		chromedp.Click(`a[data-nav="users"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`//table[@id="users-table"]//a[.="walter"]`),
		chromedp.Click(`//table[@id="users-table"]//a[.="walter"]`),
		chromedp.WaitVisible(`//table[@id="user-devices"]//a[.="490154203237518"]`),
		chromedp.WaitVisible(`//table[@id="user-sessions"]//a[.="490154203237518"]`),
	)
	if got := b.text("#user-devices tbody"); !strings.Contains(got, "van 12") || strings.Contains(got, "356938035643809") {
		t.Fatalf("walter's handsets read %q; want the phone alone", got)
	}
	var shot []byte
	b.run("screenshot walter's page", chromedp.FullScreenshot(&shot, 100))
	b.save("console-user.png", shot)
	b.run("from his handset back to the handset's page",
		chromedp.Click(`//table[@id="user-devices"]//a[.="490154203237518"]`),
		chromedp.WaitVisible(`//h1[@id="device-title"][contains(., "490154203237518")]`),
	)
}

// TestConsoleImportValidRows checks an import with invalid rows: the dry
// run counts rows (not problems), the all-or-nothing import stays off, and
// an explicit button imports the valid rows, listing the others.
func TestConsoleImportValidRows(t *testing.T) {
	e := newEnv(t)
	e.fleet()
	// Row 3 has two problems; row 4 repeats a registered IMEI.
	file := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(file, []byte("imei,label,assignedUsers\n"+
		"359881234567899,ok,walter\n"+
		"490154203237519,bad check digit,nobody\n"+
		"490154203237518,taken,\n"+
		"352099001761481,ok too,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e, 1280, 900)
	b.signIn("maria", "correct horse")
	b.run("check the file",
		chromedp.Click("#import-open", chromedp.ByQuery),
		chromedp.WaitVisible("#import-dialog", chromedp.ByQuery),
		chromedp.SetUploadFiles("#import-form input[type=file]", []string{file}, chromedp.ByQuery),
		chromedp.Click("#import-dry", chromedp.ByQuery),
		chromedp.WaitVisible("#import-summary", chromedp.ByQuery),
	)
	if got := b.text("#import-summary"); !strings.Contains(got, "4 rows: 2 ready to import, 2 with errors") {
		t.Fatalf("the dry run says %q; want it to count 2 rows with errors (of 3 problems)", got)
	}
	if n := len(strings.Split(strings.TrimSpace(b.text("#import-report tbody")), "\n")); n != 3 {
		t.Fatalf("the report lists %d problems; want 3", n)
	}
	var all bool
	b.eval(`document.querySelector("#import-commit").disabled`, &all)
	if !all {
		t.Fatal("Import (all or nothing) is enabled for a file with invalid rows")
	}
	if !b.displayed("#import-valid") {
		t.Fatal("no button imports the valid rows")
	}
	if got := b.text("#import-valid"); got != "Import the 2 valid rows" {
		t.Fatalf("the button says %q; want Import the 2 valid rows", got)
	}
	var shot []byte
	b.run("screenshot the dry run", chromedp.CaptureScreenshot(&shot))
	b.save("console-import.png", shot)
	b.run("import the valid rows",
		chromedp.Click("#import-valid", chromedp.ByQuery),
		chromedp.WaitVisible(`//p[@id="import-summary"][contains(., "Imported 2 handsets")]`),
	)
	if got := b.text("#import-summary"); !strings.Contains(got, "2 rows with errors were left out") {
		t.Fatalf("after importing the valid rows the summary says %q", got)
	}
	if got := b.text("#import-report tbody"); !strings.Contains(got, "imei_checksum") || !strings.Contains(got, "user_unknown") || !strings.Contains(got, "imei_taken") {
		t.Fatalf("the invalid rows are no longer listed: %q", got)
	}
	if n := e.deviceCount(); n != 4 {
		t.Fatalf("%d devices after importing the valid rows; want 4", n)
	}
	if b.displayed("#import-valid") {
		t.Fatal("the button to import the valid rows is still there after the import")
	}
}

// TestConsoleCodeWarnings: where self-enrollment is off and the console is
// opened at a loopback address without --public-url, a new code comes
// with both warnings, each naming its setting.
func TestConsoleCodeWarnings(t *testing.T) {
	e := newEnv(t) // enrollment mode preregistered, no public URL
	e.fleet()
	b := newBrowser(t, e, 1280, 900)
	b.signIn("maria", "correct horse")
	b.run("create a code",
		chromedp.Click(`a[data-nav="enroll"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#code-form", chromedp.ByQuery),
		chromedp.Click("#code-form button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#code-result", chromedp.ByQuery),
	)
	if code := b.text("#code-value"); len(code) != 19 {
		t.Fatalf("code shown %q; want one made despite the warnings", code)
	}
	if !b.displayed("#code-warnings") {
		t.Fatal("no warnings shown")
	}
	for _, c := range []struct{ code, setting, says string }{
		{"self_enrollment_off", "--enrollment-mode", "self-enrollment is off"},
		{"enroll_url_unreachable", "--public-url", "127.0.0.1, which a handset cannot reach"},
	} {
		got := b.text(fmt.Sprintf(`#code-warnings li[data-code=%q]`, c.code))
		if !strings.Contains(got, c.setting) || !strings.Contains(got, c.says) {
			t.Fatalf("warning %s reads %q; want it to say %q and name %s", c.code, got, c.says, c.setting)
		}
	}
	var shot []byte
	b.run("screenshot the code", chromedp.FullScreenshot(&shot, 100))
	b.save("console-code.png", shot)
}

// TestConsoleDirectoryUsers: a directory user is shown as such, with their
// entry, and without what the directory owns to change (no password
// reset); the users page says when the last sync ran and what it did.
func TestConsoleDirectoryUsers(t *testing.T) {
	e, _ := directoryEnv(t)
	r := e.do("POST", "/v1/auth/login", "", map[string]any{"username": "alice", "password": "alice's secret", "device": handset("490154203237518")})
	if r.status != 200 {
		t.Fatalf("alice: %d %s", r.status, r.body)
	}
	alice := r.json(t)["user"].(map[string]any)["id"].(string)
	if _, err := e.auth.SyncDirectory(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e, 1280, 900)
	b.signIn("maria", "correct horse")
	var shot []byte
	b.run("the users page",
		chromedp.Navigate(b.base+"/console#users"),
		chromedp.WaitVisible(`//table[@id="users-table"]//tr[.//a[text()="alice"]]//span[text()="directory"]`),
		chromedp.WaitVisible("#directory-status", chromedp.ByQuery),
	)
	if status := b.text("#directory-status"); !strings.Contains(status, "last sync") || !strings.Contains(status, "1 checked") {
		t.Fatalf("the sync's status line: %q", status)
	}
	var resets int
	b.eval(`[...document.querySelectorAll("#users-table tr")].filter(tr => tr.textContent.includes("alice") && tr.textContent.includes("Reset password")).length`, &resets)
	if resets != 0 {
		t.Fatal("the users page offers to reset a directory user's password")
	}
	b.run("alice's page",
		chromedp.Navigate(b.base+"/console#user/"+alice),
		chromedp.WaitVisible(`//dl[@id="user-details"]//dd[contains(., "managed in the company directory")]`),
		chromedp.CaptureScreenshot(&shot),
	)
	b.save("console-directory-user.png", shot)
	if details := b.text("#user-details"); !strings.Contains(details, "uid=alice,ou=people") {
		t.Fatalf("alice's details lack her entry:\n%s", details)
	}
	if actions := b.text("#user-actions"); strings.Contains(actions, "Reset password") || !strings.Contains(actions, "Disable") {
		t.Fatalf("alice's actions: %q; want Disable and no password reset", actions)
	}
}
