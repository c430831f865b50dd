package oauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"

	"tether/auth"
	"tether/device"
	"tether/storage"
)

// Authorization is a request to the authorization endpoint whose client
// and redirect URI are known good: from here on, what goes wrong is told
// to the client at its redirect URI.
type Authorization struct {
	Client      storage.OAuthClient
	RedirectURI string
	State       string
	// Scope is the scope granted: the scopes asked for, each one the
	// client may have.
	Scope         string
	Nonce         string
	CodeChallenge string
	DPoPJKT       string
	// Device is the handset payload the app sent (the device parameter),
	// and DeviceRef the handset's id, IMEI or device name (device_id);
	// both empty for a sign-in without a handset.
	Device    *device.Payload
	DeviceRef string
	// LoginHint fills the username in.
	LoginHint string
}

// Bounds of what an authorization request carries.
const (
	maxState     = 1024
	maxNonce     = 512
	maxDeviceArg = 8 << 10
)

// ParseAuthorization checks an authorization request (RFC 6749 section
// 4.1.1, RFC 7636, OpenID Connect Core section 3.1.2.1, RFC 9449 section
// 10). A request with an unknown client or a redirect URI the client did
// not register returns a nil *Authorization and an error to show the
// person: it must not redirect anywhere. Any other error comes with the
// Authorization, and goes back to its redirect URI (ErrorRedirect).
func (p *Provider) ParseAuthorization(ctx context.Context, q url.Values) (*Authorization, *Error) {
	for name, v := range q {
		if len(v) > 1 {
			return nil, oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	id := q.Get("client_id")
	if id == "" || len(id) > 128 {
		return nil, oerr(CodeInvalidRequest, "client_id is missing")
	}
	c, err := p.store.GetOAuthClient(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, oerr(CodeInvalidRequest, "the client is not registered here")
	}
	if err != nil {
		return nil, fromAuth(err)
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return nil, oerr(CodeInvalidRequest, "redirect_uri is missing")
	}
	if !matchRedirect(c.RedirectURIs, redirect) {
		return nil, oerr(CodeInvalidRequest, "the redirect_uri is not one the client registered")
	}
	a := &Authorization{Client: c, RedirectURI: redirect, State: q.Get("state")}
	if len(a.State) > maxState {
		a.State = ""
		return a, oerrf(CodeInvalidRequest, "state is longer than %d bytes", maxState)
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return a, oerr(CodeUnauthorizedClient, "the client may not use the authorization_code grant")
	}
	if q.Has("request") || q.Has("request_uri") {
		return a, oerr("request_not_supported", "request objects are not supported")
	}
	if rt := q.Get("response_type"); rt != "code" {
		return a, oerr(CodeUnsupportedResponseType, "response_type must be code")
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return a, oerr(CodeInvalidRequest, "response_mode must be query")
	}
	switch q.Get("code_challenge_method") {
	case "S256":
	case "":
		return a, oerr(CodeInvalidRequest, "PKCE is required: send code_challenge with code_challenge_method S256")
	default:
		return a, oerr(CodeInvalidRequest, "code_challenge_method must be S256; plain is refused")
	}
	a.CodeChallenge = q.Get("code_challenge")
	if !isB64Hash(a.CodeChallenge) {
		return a, oerr(CodeInvalidRequest, "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)")
	}
	scope, oe := grantScope(c, q.Get("scope"))
	if oe != nil {
		return a, oe
	}
	a.Scope = scope
	if a.Nonce = q.Get("nonce"); len(a.Nonce) > maxNonce {
		return a, oerrf(CodeInvalidRequest, "nonce is longer than %d bytes", maxNonce)
	}
	if a.DPoPJKT = q.Get("dpop_jkt"); a.DPoPJKT != "" && !isB64Hash(a.DPoPJKT) {
		return a, oerr(CodeInvalidRequest, "dpop_jkt must be a JWK SHA-256 thumbprint, base64url (43 characters)")
	}
	if q.Get("prompt") == "none" {
		return a, oerr(CodeLoginRequired, "the person must sign in: this server keeps no browser session")
	}
	if raw := q.Get("device"); raw != "" {
		d, oe := parseDevice(raw)
		if oe != nil {
			return a, oe
		}
		a.Device = d
	}
	a.DeviceRef = q.Get("device_id")
	if len(a.DeviceRef) > 256 {
		return a, oerr(CodeInvalidRequest, "device_id is too long")
	}
	if a.LoginHint = q.Get("login_hint"); len(a.LoginHint) > 256 {
		a.LoginHint = ""
	}
	return a, nil
}

// parseDevice reads the device parameter: the handset payload of
// /v1/auth/login's device member, as JSON.
func parseDevice(raw string) (*device.Payload, *Error) {
	if len(raw) > maxDeviceArg {
		return nil, oerrf(CodeInvalidRequest, "device is longer than %d bytes", maxDeviceArg)
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var d device.Payload
	if err := dec.Decode(&d); err != nil {
		return nil, oerr(CodeInvalidRequest, "device must be the handset payload as a JSON object: "+truncate(err.Error(), 200))
	}
	if dec.More() {
		return nil, oerr(CodeInvalidRequest, "device must be one JSON object")
	}
	return &d, nil
}

// grantScope checks the scopes asked for: each must be one the server
// knows and the client may have; none asked for grants the client's
// default (all it may have, but offline_access).
func grantScope(c storage.OAuthClient, asked string) (string, *Error) {
	allowed := c.Scopes
	if len(allowed) == 0 {
		allowed = scopes
	}
	fields := strings.Fields(asked)
	if len(fields) == 0 {
		for _, s := range allowed {
			if s != ScopeOfflineAccess {
				fields = append(fields, s)
			}
		}
	}
	if len(fields) > 16 {
		return "", oerr(CodeInvalidScope, "too many scopes")
	}
	for _, s := range fields {
		if !slices.Contains(allowed, s) {
			return "", oerrf(CodeInvalidScope, "scope %q is not one the client may have", truncate(s, 64))
		}
	}
	return strings.Join(dedupe(fields), " "), nil
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// isB64Hash reports whether s is 32 bytes in unpadded base64url.
func isB64Hash(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// ErrorRedirect is where to send the browser with err (RFC 6749 section
// 4.1.2.1), with state and iss (RFC 9207).
func (p *Provider) ErrorRedirect(a *Authorization, err *Error) string {
	v := url.Values{"error": {err.Code}}
	if err.Description != "" {
		v.Set("error_description", err.Description)
	}
	return p.redirect(a, v)
}

func (p *Provider) redirect(a *Authorization, v url.Values) string {
	if a.State != "" {
		v.Set("state", a.State)
	}
	v.Set("iss", p.cfg.Issuer)
	u, err := url.Parse(a.RedirectURI)
	if err != nil {
		// Registered URIs parse; this cannot happen.
		return a.RedirectURI
	}
	q := u.Query()
	for k, vs := range v {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// SignIn is the person's answer at the sign-in page: their password is
// checked, with the handset the app named, as a login is (the throttle,
// the directory, every handset rule), and an authorization code is made
// for the client. It returns where to send the browser. A wrong password
// or a refused handset is returned as auth/'s error, for the page to show
// (the person may try again); it sends nobody anywhere.
//
// A manager or admin with a second factor gets auth.ErrMFARequired (its
// mfaToken for SignInSecondFactor), and one that must enroll one
// auth.ErrMFAEnrollment (its enrollmentToken for BeginEnrollment and
// SignInEnrolled): the page asks for the second step.
func (p *Provider) SignIn(ctx context.Context, a *Authorization, username, password string) (string, error) {
	req := signInRequest(a)
	req.Username, req.Password = username, password
	in, err := p.auth.SignIn(ctx, req)
	if err != nil {
		return "", err
	}
	return p.issueCode(ctx, a, in)
}

// signInRequest is the sign-in an authorization request asks for: its
// client, scope and handset; a page takes a second step.
func signInRequest(a *Authorization) auth.LoginRequest {
	return auth.LoginRequest{
		Device: a.Device, DeviceRef: a.DeviceRef, ClientID: a.Client.ID, Scope: a.Scope, DPoPJKT: a.DPoPJKT,
		SecondFactor: true,
	}
}

// SignInSecondFactor is the person's second factor at the sign-in page
// (after SignIn's auth.ErrMFARequired): the step's token and a code. It
// returns where to send the browser, with a code whose amr says how.
func (p *Provider) SignInSecondFactor(ctx context.Context, a *Authorization, token, code string) (string, error) {
	in, err := p.auth.SignInSecondFactor(ctx, signInRequest(a), token, code)
	if err != nil {
		return "", err
	}
	return p.issueCode(ctx, a, in)
}

// BeginEnrollment is the secret of the authenticator app a person whose
// sign-in answered auth.ErrMFAEnrollment sets up, at the sign-in page.
func (p *Provider) BeginEnrollment(ctx context.Context, token string) (auth.TOTPSetup, error) {
	return p.auth.BeginEnrollment(ctx, token)
}

// SignInEnrolled confirms the new app with its first code: the person is
// shown the recovery codes, and goes on (SignInResume) once they saved
// them.
func (p *Provider) SignInEnrolled(ctx context.Context, a *Authorization, token, code string) (auth.Enrolled, error) {
	return p.auth.SignInEnrolled(ctx, signInRequest(a), token, code)
}

// SignInResume finishes a sign-in whose factor SignInEnrolled enrolled.
func (p *Provider) SignInResume(ctx context.Context, a *Authorization, token string) (string, error) {
	in, err := p.auth.SignInResume(ctx, signInRequest(a), token)
	if err != nil {
		return "", err
	}
	return p.issueCode(ctx, a, in)
}

// issueCode makes the authorization code of a sign-in, and returns where
// to send the browser with it.
func (p *Provider) issueCode(ctx context.Context, a *Authorization, in auth.SignedIn) (string, error) {
	code := newCode()
	rec := storage.AuthCode{
		ID: storage.NewID(storage.PrefixAuthCode), Hash: hashSecret(code), ClientID: a.Client.ID,
		RedirectURI: a.RedirectURI, Scope: a.Scope, Nonce: a.Nonce, CodeChallenge: a.CodeChallenge,
		DPoPJKT: a.DPoPJKT, UserID: in.User.ID, DeviceName: in.DeviceName,
		AuthTime: in.At, AMR: in.AMR, ExpiresAt: in.At.Add(p.cfg.CodeTTL),
	}
	if in.Device != nil {
		rec.DeviceID = in.Device.ID
	}
	if err := p.store.CreateAuthCode(ctx, rec); err != nil {
		return "", err
	}
	return p.redirect(a, url.Values{"code": {code}}), nil
}

// Deny is the person's "cancel" at the sign-in page.
func (p *Provider) Deny(a *Authorization) string {
	return p.ErrorRedirect(a, oerr(CodeAccessDenied, "the person declined to sign in"))
}

// newCode makes an authorization or device code: 256 random bits.
func newCode() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// codeChallenge is the S256 PKCE challenge of a verifier (RFC 7636
// section 4.2).
func codeChallenge(verifier string) string {
	h := hashSecret(verifier)
	return base64.RawURLEncoding.EncodeToString(h)
}

// validVerifier checks a code_verifier's form (RFC 7636 section 4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || bytes.IndexByte([]byte("-._~"), ch) >= 0) {
			return false
		}
	}
	return true
}
