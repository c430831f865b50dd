package api

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/oauth"
)

// The pages a person sees in a browser during an OAuth flow: the sign-in
// page of the authorization endpoint, the device verification page, and
// the signed-out page. Plain HTML from the binary, styled by the
// console's stylesheet, under the console's CSP; their forms carry a
// token that must match a SameSite=Strict cookie, so no other site can
// submit them.

var pages = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} · Tether</title>
<link rel="icon" href="/console/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/app.css">
</head>
<body>
<main>
<div class="card narrow">
<h1>{{.Title}}</h1>
{{if .Client}}<p class="muted"><strong>{{.Client}}</strong> asks you to sign in{{if .Handset}} on {{.Handset}}{{end}}.</p>{{end}}
{{if .Error}}<p class="errors" role="alert" id="error">{{.Error}}</p>{{end}}
{{if .Message}}<p id="message">{{.Message}}</p>{{end}}
{{if .SignIn}}
<form method="post" action="{{.Action}}" autocomplete="on">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .UserCode}}<label>Code shown on the handset<input name="user_code" value="{{.UserCode}}" readonly class="mono"></label>{{end}}
<label>Username<input name="username" value="{{.Username}}" autocomplete="username" required{{if not .Username}} autofocus{{end}} autocapitalize="none" spellcheck="false"></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required{{if .Username}} autofocus{{end}}></label>
<div class="actions">
<button type="submit" name="action" value="approve" id="submit">Sign in</button>
<button type="submit" name="action" value="deny" class="quiet" formnovalidate id="cancel">{{if .UserCode}}Deny{{else}}Cancel{{end}}</button>
</div>
</form>
{{end}}
{{if .Step}}
<form method="post" action="{{.Action}}" autocomplete="off">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="step" value="{{.Step}}">
<input type="hidden" name="step_token" value="{{.StepToken}}">
<input type="hidden" name="username" value="{{.Username}}">
{{if .UserCode}}<input type="hidden" name="user_code" value="{{.UserCode}}">{{end}}
{{if eq .Step "mfa"}}
<p>Enter the code your authenticator app shows{{if .Username}} for <strong>{{.Username}}</strong>{{end}}, or one of your recovery codes.</p>
<label>Code<input name="code" id="code" autocomplete="one-time-code" required autofocus autocapitalize="none" spellcheck="false" class="mono" maxlength="32"></label>
{{end}}
{{if eq .Step "enroll"}}
<p>Your account must have a second factor before it signs in. Scan this code with an authenticator app on your phone (such as Google Authenticator, Microsoft Authenticator or FreeOTP), or type the key into it, then enter the six-digit code it shows.</p>
<div class="qr">{{.QR}}</div>
<label>Key<input id="secret" value="{{.Secret}}" readonly class="mono"></label>
<label>Code<input name="code" id="code" autocomplete="one-time-code" inputmode="numeric" required autofocus class="mono" maxlength="16"></label>
{{end}}
{{if eq .Step "resume"}}
<p>Your authenticator app is set up. <strong>Save these recovery codes now</strong>: each signs you in once if you lose your phone, and they are not shown again.</p>
<ol class="codes mono" id="recovery-codes">{{range .Codes}}<li>{{.}}</li>{{end}}</ol>
<p><a download="tether-recovery-codes.txt" href="{{.CodesFile}}" id="codes-download">Download them as a text file</a></p>
{{end}}
<div class="actions">
<button type="submit" name="action" value="approve" id="submit">{{if eq .Step "resume"}}I have saved them: continue{{else}}Verify{{end}}</button>
<button type="submit" name="action" value="deny" class="quiet" formnovalidate id="cancel">{{if .UserCode}}Deny{{else}}Cancel{{end}}</button>
</div>
</form>
{{end}}
{{if .AskCode}}
<form method="get" action="{{.Action}}">
<label>Code shown on the handset<input name="user_code" value="{{.UserCode}}" required autofocus autocapitalize="characters" spellcheck="false" class="mono" placeholder="BCDF-GHJK"></label>
<div class="actions"><button type="submit" id="next">Next</button></div>
</form>
{{end}}
</div>
</main>
</body>
</html>
`))

type htmlPage struct {
	Title    string
	Client   string
	Handset  string
	Error    string
	Message  string
	SignIn   bool
	AskCode  bool
	Action   string
	CSRF     string
	Username string
	UserCode string

	// Step is the second step of a sign-in the page asks for: "mfa" (a
	// code), "enroll" (a new authenticator app: QR and Secret) or
	// "resume" (the recovery codes, then on), with its token.
	Step      string
	StepToken string
	QR        template.HTML
	Secret    string
	Codes     []string
	CodesFile template.URL
}

const csrfCookie = "tether_oauth_form"

// render writes a page with the console's CSP, form-action widened to
// formTarget (the origin or scheme the form's answer redirects to), if
// any: browsers hold a form's redirect to form-action too.
func (s *server) render(c *fiber.Ctx, status int, p htmlPage, formTarget string) error {
	var buf bytes.Buffer
	if err := pages.Execute(&buf, p); err != nil {
		return err
	}
	csp := consoleCSP
	if formTarget != "" {
		csp = strings.Replace(csp, "form-action 'self'", "form-action 'self' "+formTarget, 1)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set(fiber.HeaderContentSecurityPolicy, csp)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
	noStore(c)
	return c.Status(status).Send(buf.Bytes())
}

// formTarget is the CSP source of a redirect URI: its origin for http and
// https, its scheme for a private-use scheme. Registered URIs were
// checked, so what comes out has no spaces or semicolons.
func formTarget(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil || strings.ContainsAny(redirect, " ;,'\"") {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

// csrf sets a fresh form token cookie and returns the token.
func (s *server) csrf(c *fiber.Ctx) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	c.Cookie(&fiber.Cookie{
		Name: csrfCookie, Value: tok, Path: "/oauth2", HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
		Secure: strings.HasPrefix(s.OAuth.Issuer(), "https://"), Expires: time.Now().Add(30 * time.Minute),
	})
	return tok
}

// checkCSRF compares the form's token with the cookie's.
func checkCSRF(c *fiber.Ctx) bool {
	cookie, form := c.Cookies(csrfCookie), c.FormValue("csrf")
	return cookie != "" && subtle.ConstantTimeCompare([]byte(cookie), []byte(form)) == 1
}

var errStaleForm = "The form expired or came from elsewhere: sign in again."

// sentence makes an error description (lower case, no final stop, as
// error strings are) read as a sentence on a page.
func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// typedCode is a user code someone typed, to show again beside the
// error: what fits in the field.
func typedCode(code string) string {
	if len(code) > 32 {
		return ""
	}
	return code
}

// invalidLink is the page for an authorization request that cannot be
// answered at its redirect URI: it names the fault for whoever set the
// app up, and tells the person what to do.
func invalidLink(oe *oauth.Error) htmlPage {
	return htmlPage{
		Title: "This sign-in link is not valid", Error: sentence(oe.Description),
		Message: "Go back to the app and start again. If this keeps happening, the app is not set up for this server: tell whoever looks after it.",
	}
}

// queryOf is the request's query string, with every value of a repeated
// parameter.
func queryOf(c *fiber.Ctx) url.Values {
	q, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return url.Values{"_malformed": {""}, "_malformed2": {""}}
	}
	return q
}

func clientName(a *oauth.Authorization) string {
	if a.Client.Name != "" {
		return a.Client.Name
	}
	return a.Client.ID
}

func handsetName(a *oauth.Authorization) string {
	if a.Device != nil && a.Device.DeviceInfo != nil {
		return strings.TrimSpace(a.Device.DeviceInfo.Manufacturer + " " + a.Device.DeviceInfo.Model)
	}
	return ""
}

// authorizePage is the authorization endpoint: the sign-in page for a
// good request, an error page for a request that names no client or a
// redirect URI it did not register, the client's redirect URI for the
// rest.
func (s *server) authorizePage(c *fiber.Ctx) error {
	a, oe := s.OAuth.ParseAuthorization(c.UserContext(), queryOf(c))
	if oe != nil {
		if a == nil {
			return s.render(c, fiber.StatusBadRequest, invalidLink(oe), "")
		}
		return c.Redirect(s.OAuth.ErrorRedirect(a, oe), fiber.StatusSeeOther)
	}
	return s.render(c, fiber.StatusOK, htmlPage{
		Title: "Sign in", Client: clientName(a), Handset: handsetName(a), SignIn: true,
		Action: c.OriginalURL(), CSRF: s.csrf(c), Username: a.LoginHint,
	}, formTarget(a.RedirectURI))
}

// authorizeSubmit is the sign-in form's answer.
func (s *server) authorizeSubmit(c *fiber.Ctx) error {
	a, oe := s.OAuth.ParseAuthorization(c.UserContext(), queryOf(c))
	if oe != nil {
		if a == nil {
			return s.render(c, fiber.StatusBadRequest, invalidLink(oe), "")
		}
		return c.Redirect(s.OAuth.ErrorRedirect(a, oe), fiber.StatusSeeOther)
	}
	again := htmlPage{
		Title: "Sign in", Client: clientName(a), Handset: handsetName(a), SignIn: true,
		Action: c.OriginalURL(), Username: c.FormValue("username"),
	}
	if !checkCSRF(c) {
		again.Error, again.CSRF = errStaleForm, s.csrf(c)
		return s.render(c, fiber.StatusForbidden, again, formTarget(a.RedirectURI))
	}
	if c.FormValue("action") == "deny" {
		return c.Redirect(s.OAuth.Deny(a), fiber.StatusSeeOther)
	}
	ctx := c.UserContext()
	step, token, code := c.FormValue("step"), c.FormValue("step_token"), c.FormValue("code")
	var (
		to  string
		err error
	)
	switch step {
	case "":
		to, err = s.OAuth.SignIn(ctx, a, c.FormValue("username"), c.FormValue("password"))
	case "mfa":
		to, err = s.OAuth.SignInSecondFactor(ctx, a, token, code)
	case "enroll":
		var done auth.Enrolled
		if done, err = s.OAuth.SignInEnrolled(ctx, a, token, code); err == nil {
			return s.render(c, fiber.StatusOK, s.resumePage(c, again, done), formTarget(a.RedirectURI))
		}
	case "resume":
		to, err = s.OAuth.SignInResume(ctx, a, token)
	default:
		err = errUnknownStep
	}
	if err != nil {
		status, page := s.signInAgain(c, again, step, token, err)
		return s.render(c, status, page, formTarget(a.RedirectURI))
	}
	// The cookie has done its work.
	c.ClearCookie(csrfCookie)
	return c.Redirect(to, fiber.StatusSeeOther)
}

var errUnknownStep = tether.NewError(tether.CodeInvalidRequest, "the form is not one of this server's: sign in again")

// signInAgain is the page after a refused sign-in or second step: the
// second step the sign-in asks for (a code, or a new authenticator app),
// that step again with what went wrong, or, once the step is over (its
// token expired or used), the sign-in form.
func (s *server) signInAgain(c *fiber.Ctx, again htmlPage, step, token string, err error) (int, htmlPage) {
	var te *tether.Error
	if errors.As(err, &te) && interrupted(err) {
		// The password was right: on to the second step.
		tok, _ := te.Extra["mfaToken"].(string)
		next := "mfa"
		if errors.Is(err, auth.ErrMFAEnrollment) {
			tok, _ = te.Extra["enrollmentToken"].(string)
			next = "enroll"
		}
		return s.stepPage(c, again, next, tok, "")
	}
	status, msg := s.pageError(c, err)
	if step == "" || step == "resume" || stepOver(err) {
		again.Error, again.CSRF = msg, s.csrf(c)
		return status, again
	}
	status2, page := s.stepPage(c, again, step, token, msg)
	if page.Step == "" {
		return status2, page
	}
	return status, page
}

// stepOver reports whether err ends a second step: its token is no longer
// good, so the person signs in again.
func stepOver(err error) bool {
	var te *tether.Error
	if !errors.As(err, &te) {
		return false
	}
	switch te.Code {
	case tether.CodeTokenInvalid, tether.CodeTokenExpired, tether.CodeTokenAlreadyUsed, tether.CodeAccountDisabled, tether.CodeInvalidRequest:
		return true
	}
	return false
}

// stepPage is the page of a second step: a code field ("mfa"), or a new
// authenticator app ("enroll": its QR code and key, shown again as they
// were). msg says what went wrong with the last try.
func (s *server) stepPage(c *fiber.Ctx, base htmlPage, step, token, msg string) (int, htmlPage) {
	p := base
	p.SignIn, p.Error, p.CSRF = false, msg, s.csrf(c)
	p.Step, p.StepToken = step, token
	switch step {
	case "mfa":
		p.Title = "Second factor"
	case "enroll":
		p.Title = "Set up an authenticator app"
		setup, err := s.OAuth.BeginEnrollment(c.UserContext(), token)
		if err == nil {
			p.QR, err = qrSVG(setup.URI)
		}
		if err != nil {
			status, m := s.pageError(c, err)
			base.Error, base.CSRF = m, p.CSRF
			return status, base
		}
		p.Secret = setup.Secret
	}
	status := fiber.StatusOK
	if msg != "" {
		status = fiber.StatusBadRequest
	}
	return status, p
}

// resumePage shows the recovery codes of a factor enrolled at a sign-in
// page, with the form that goes on.
func (s *server) resumePage(c *fiber.Ctx, base htmlPage, done auth.Enrolled) htmlPage {
	p := base
	p.Title, p.SignIn, p.CSRF = "Recovery codes", false, s.csrf(c)
	p.Step, p.StepToken, p.Codes = "resume", done.Resume, done.RecoveryCodes
	p.CodesFile = template.URL("data:text/plain;charset=utf-8," + url.PathEscape(recoveryCodesText(p.Username, done.RecoveryCodes)))
	return p
}

// recoveryCodesText is the text file of a person's recovery codes.
func recoveryCodesText(username string, codes []string) string {
	var b strings.Builder
	b.WriteString("Tether recovery codes")
	if username != "" {
		b.WriteString(" for " + username)
	}
	b.WriteString("\nEach signs you in once, in place of a code from your authenticator app.\n\n")
	for _, code := range codes {
		b.WriteString(code + "\n")
	}
	return b.String()
}

// pageError is what a page says about a refused sign-in: the same safe
// message the API would give, and its status.
func (s *server) pageError(c *fiber.Ctx, err error) (int, string) {
	p := toProblem(err)
	if p.Code == tether.CodeInternal {
		s.log.ErrorContext(c.UserContext(), "sign-in page failed", "error", err.Error())
		return p.Status, "The server failed. Try again in a moment."
	}
	if p.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(p.retryAfter))
	}
	if p.Status == fiber.StatusUnauthorized {
		// A page, not an HTTP authentication challenge: 401 would need
		// WWW-Authenticate.
		p.Status = fiber.StatusBadRequest
	}
	msg := p.Detail
	if len(p.Errors) > 0 {
		parts := make([]string, len(p.Errors))
		for i, f := range p.Errors {
			parts[i] = f.Message
			if strings.HasPrefix(f.Field, "device.") {
				parts[i] = "the handset's " + strings.TrimPrefix(f.Field, "device.") + ": " + f.Message
			}
		}
		msg = strings.Join(parts, "; ")
	}
	return p.Status, sentence(msg)
}

// devicePage is the verification page of the device flow: with a user
// code that waits, what asks and the sign-in form; without one, a field
// for it.
func (s *server) devicePage(c *fiber.Ctx) error {
	code := c.Query("user_code")
	action := oauth.PathDevice
	if code == "" {
		return s.render(c, fiber.StatusOK, htmlPage{Title: "Sign in a handset", AskCode: true, Action: action}, "")
	}
	pd, err := s.OAuth.LookupDevice(c.UserContext(), code)
	if err != nil {
		status, msg := s.pageError(c, err)
		return s.render(c, status, htmlPage{Title: "Sign in a handset", AskCode: true, Action: action, Error: msg, UserCode: typedCode(code)}, "")
	}
	return s.render(c, fiber.StatusOK, s.devicePageOf(pd, c), "")
}

func (s *server) devicePageOf(pd oauth.PendingDevice, c *fiber.Ctx) htmlPage {
	handset := pd.Model
	if pd.IMEI != "" {
		handset = strings.TrimSpace(handset + " (IMEI ending " + pd.IMEI[max(0, len(pd.IMEI)-4):] + ")")
	}
	if handset == "" {
		handset = pd.DeviceRef
	}
	return htmlPage{
		Title: "Sign in a handset", Client: pd.ClientName, Handset: handset, SignIn: true,
		Action: oauth.PathDevice, CSRF: s.csrf(c), UserCode: pd.UserCode,
	}
}

// deviceSubmit is the verification form's answer: approve (with the
// person's password) or deny.
func (s *server) deviceSubmit(c *fiber.Ctx) error {
	code := c.FormValue("user_code")
	pd, err := s.OAuth.LookupDevice(c.UserContext(), code)
	if err != nil {
		status, msg := s.pageError(c, err)
		return s.render(c, status, htmlPage{Title: "Sign in a handset", AskCode: true, Action: oauth.PathDevice, Error: msg, UserCode: typedCode(code)}, "")
	}
	again := s.devicePageOf(pd, c)
	again.Username = c.FormValue("username")
	if !checkCSRF(c) {
		again.Error = errStaleForm
		return s.render(c, fiber.StatusForbidden, again, "")
	}
	if c.FormValue("action") == "deny" {
		if err := s.OAuth.DenyDevice(c.UserContext(), code); err != nil {
			status, msg := s.pageError(c, err)
			again.Error = msg
			return s.render(c, status, again, "")
		}
		c.ClearCookie(csrfCookie)
		return s.render(c, fiber.StatusOK, htmlPage{Title: "Sign-in denied", Message: "The handset will not be signed in. You can close this page."}, "")
	}
	var err2 error
	switch step := c.FormValue("step"); step {
	case "":
		err2 = s.OAuth.ApproveDevice(c.UserContext(), code, c.FormValue("username"), c.FormValue("password"))
	case "mfa", "enroll", "resume":
		var done *auth.Enrolled
		done, err2 = s.OAuth.ApproveDeviceStep(c.UserContext(), code, oauth.DeviceStep{Kind: step, Token: c.FormValue("step_token"), Code: c.FormValue("code")})
		if err2 == nil && done != nil {
			return s.render(c, fiber.StatusOK, s.resumePage(c, again, *done), "")
		}
	default:
		err2 = errUnknownStep
	}
	if err2 != nil {
		status, page := s.signInAgain(c, again, c.FormValue("step"), c.FormValue("step_token"), err2)
		return s.render(c, status, page, "")
	}
	c.ClearCookie(csrfCookie)
	return s.render(c, fiber.StatusOK, htmlPage{Title: "Handset signed in", Message: "The handset is signing in now. You can close this page."}, "")
}

// logoutPage is RP-initiated logout: the session the ID token names ends,
// and the browser goes to the client's registered page, or is told it is
// signed out.
func (s *server) logoutPage(c *fiber.Ctx) error {
	q := queryOf(c)
	if c.Method() == fiber.MethodPost {
		form, err := oauthForm(c)
		if err != nil {
			return err
		}
		for k, v := range form {
			q[k] = append(q[k], v...)
		}
	}
	to, err := s.OAuth.Logout(c.UserContext(), q)
	if err != nil {
		var oe *oauth.Error
		msg := "The sign-out request is not valid."
		if errors.As(err, &oe) {
			msg = sentence(oe.Description)
		}
		return s.render(c, fiber.StatusBadRequest, htmlPage{Title: "Sign out", Error: msg}, "")
	}
	if to != "" {
		return c.Redirect(to, fiber.StatusSeeOther)
	}
	return s.render(c, fiber.StatusOK, htmlPage{Title: "Signed out", Message: "You are signed out. You can close this page."}, "")
}
