package api

import (
	"strings"

	"tether/oauth"
)

// The OAuth 2.0 and OpenID Connect endpoints in the OpenAPI document: the
// table, and the forms and answers they take that oauth/ has no type for.

// oauthErrorDoc is the error body of every path under /oauth2 and
// /.well-known (RFC 6749 section 5.2), as oauthError writes it.
type oauthErrorDoc struct {
	Error       string `json:"error" doc:"the error code: RFC 6749 (invalid_request, invalid_client, invalid_grant, unauthorized_client, unsupported_grant_type, invalid_scope, access_denied, server_error, temporarily_unavailable), RFC 8628 (authorization_pending, slow_down, expired_token), RFC 9449 (invalid_dpop_proof, use_dpop_nonce), RFC 6750 (invalid_token, insufficient_scope), RFC 7591 (invalid_redirect_uri, invalid_client_metadata)"`
	Description string `json:"error_description,omitempty" doc:"what went wrong, for a person to read; switch on error"`
}

// clientAuthForm are the form members a client authenticates with when it
// does not use HTTP Basic.
type clientAuthForm struct {
	ClientID            string `json:"client_id,omitempty" doc:"the client: a public client (none), client_secret_post and private_key_jwt send it; with HTTP Basic it may be left out, or must be the same"`
	ClientSecret        string `json:"client_secret,omitempty" doc:"client_secret_post: the client's secret"`
	ClientAssertionType string `json:"client_assertion_type,omitempty" enum:"urn:ietf:params:oauth:client-assertion-type:jwt-bearer" doc:"private_key_jwt (RFC 7523)"`
	ClientAssertion     string `json:"client_assertion,omitempty" doc:"private_key_jwt: a JWT signed with one of the client's registered keys (RS256, ES256 or EdDSA); iss and sub the client_id, aud the issuer or this endpoint's URL, exp at most five minutes ahead, a jti never used before"`
}

// clientAuthDoc says how a client authenticates at the endpoints that take
// clientAuthForm.
const clientAuthDoc = "Client authentication by the one method the client registered: client_secret_basic (HTTP Basic, id and secret each form-urlencoded), client_secret_post or private_key_jwt (form members), or none (a public client sends client_id). A failure answers 401 invalid_client, with a Basic challenge if Basic was tried."

type authorizeParams struct {
	ResponseType        string `json:"response_type" enum:"code" doc:"code: the only response type"`
	ClientID            string `json:"client_id" doc:"the client"`
	RedirectURI         string `json:"redirect_uri" doc:"one the client registered, byte for byte (an http loopback one with any port, RFC 8252)"`
	CodeChallenge       string `json:"code_challenge" doc:"PKCE (RFC 7636): the base64url SHA-256 of the code_verifier, 43 characters"`
	CodeChallengeMethod string `json:"code_challenge_method" enum:"S256" doc:"S256; plain is refused"`
	Scope               string `json:"scope,omitempty" doc:"space-separated: openid, profile, email, offline_access, each one the client may have; none asks for all it may have but offline_access"`
	State               string `json:"state,omitempty" doc:"returned with the code, up to 1024 bytes"`
	Nonce               string `json:"nonce,omitempty" doc:"put in the ID token, up to 512 bytes"`
	DPoPJKT             string `json:"dpop_jkt,omitempty" doc:"RFC 9449 section 10: the JWK SHA-256 thumbprint of the key whose DPoP proof must come with the code at the token endpoint"`
	Device              string `json:"device,omitempty" doc:"the handset's device payload (the device member of POST /v1/auth/login) as JSON: the sign-in admits the handset for the person under every handset rule, and the code is bound to it"`
	DeviceID            string `json:"device_id,omitempty" doc:"instead of device: an enrolled handset's id or IMEI, or a device name"`
	LoginHint           string `json:"login_hint,omitempty" doc:"fills the username in"`
	Prompt              string `json:"prompt,omitempty" doc:"none is answered login_required: the server keeps no browser session"`
	ResponseMode        string `json:"response_mode,omitempty" enum:"query" doc:"query, the only one"`
}

type signInForm struct {
	CSRF     string `json:"csrf" doc:"the form's token, which must match its SameSite=Strict cookie"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Action   string `json:"action,omitempty" enum:"approve deny" doc:"approve (sign in) or deny (cancel)"`
}

type tokenForm struct {
	GrantType    string `json:"grant_type" enum:"authorization_code refresh_token password urn:ietf:params:oauth:grant-type:device_code client_credentials" doc:"one the client registered"`
	Code         string `json:"code,omitempty" doc:"authorization_code: the code"`
	RedirectURI  string `json:"redirect_uri,omitempty" doc:"authorization_code: the redirect_uri of the authorization request"`
	CodeVerifier string `json:"code_verifier,omitempty" doc:"authorization_code: the PKCE verifier, 43 to 128 characters"`
	RefreshToken string `json:"refresh_token,omitempty" doc:"refresh_token: the refresh token (rotated by each refresh)"`
	Scope        string `json:"scope,omitempty" doc:"password: the scopes asked for; refresh_token: a subset of the session's; client_credentials: none"`
	Username     string `json:"username,omitempty" doc:"password"`
	Password     string `json:"password,omitempty" doc:"password"`
	Device       string `json:"device,omitempty" doc:"password: the handset's device payload (the device member of POST /v1/auth/login) as JSON. authorization_code: the same payload again, optional, naming the handset of the authorization request (for a key to enroll, publicKey with a DPoP proof)"`
	DeviceID     string `json:"device_id,omitempty" doc:"password: instead of device, an enrolled handset's id or IMEI, or a device name; refresh_token: optional, the session's handset or device name"`
	DeviceCode   string `json:"device_code,omitempty" doc:"device_code: the device_code of the device authorization"`
	clientAuthForm
}

type revokeForm struct {
	Token         string `json:"token" doc:"a refresh or access token of the client's: the session it belongs to ends. Any other token is answered 200 all the same"`
	TokenTypeHint string `json:"token_type_hint,omitempty" doc:"ignored: both kinds are looked for"`
	clientAuthForm
}

type introspectForm struct {
	Token         string `json:"token" doc:"an access or refresh token"`
	TokenTypeHint string `json:"token_type_hint,omitempty" doc:"ignored"`
	clientAuthForm
}

type userinfoForm struct {
	AccessToken string `json:"access_token,omitempty" doc:"the access token, if not in the Authorization header (RFC 6750 section 2.2)"`
}

// userinfoDoc is the userinfo answer: the claims the session's scope
// releases.
type userinfoDoc struct {
	Sub string `json:"sub" doc:"the user's id"`
	oauth.UserClaims
	DID string `json:"did,omitempty" doc:"the handset the session is bound to"`
}

type logoutParams struct {
	IDTokenHint           string `json:"id_token_hint,omitempty" doc:"an ID token of this server (expired or not): its session (sid) ends"`
	ClientID              string `json:"client_id,omitempty" doc:"the client; must be the ID token's audience"`
	PostLogoutRedirectURI string `json:"post_logout_redirect_uri,omitempty" doc:"one the client registered; needs id_token_hint or client_id"`
	State                 string `json:"state,omitempty" doc:"added to the post_logout_redirect_uri"`
}

type deviceAuthorizationForm struct {
	Scope    string `json:"scope,omitempty" doc:"as at the authorization endpoint"`
	Device   string `json:"device,omitempty" doc:"the handset's device payload (the device member of POST /v1/auth/login) as JSON, admitted for the person who approves"`
	DeviceID string `json:"device_id,omitempty" doc:"instead of device: an enrolled handset's id or IMEI, or a device name"`
	clientAuthForm
}

type deviceParams struct {
	UserCode string `json:"user_code,omitempty" doc:"the code the handset shows (BCDF-GHJK; case, spaces and dashes do not matter)"`
}

type deviceForm struct {
	CSRF     string `json:"csrf" doc:"the form's token, which must match its SameSite=Strict cookie"`
	UserCode string `json:"user_code"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Action   string `json:"action,omitempty" enum:"approve deny" doc:"approve (with the person's password) or deny"`
}

// registrationUpdate is the body of an RFC 7592 update: the whole
// metadata, and what the server assigned, which may be sent back as it is.
type registrationUpdate struct {
	ClientID string `json:"client_id,omitempty" doc:"the client's own id, if sent"`
	oauth.Metadata
	ClientSecret          string `json:"client_secret,omitempty" doc:"ignored"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at,omitempty" doc:"ignored"`
	ClientSecretExpiresAt int64  `json:"client_secret_expires_at,omitempty" doc:"ignored"`
	RegistrationClientURI string `json:"registration_client_uri,omitempty" doc:"ignored"`
}

var oauthSecuritySchemes = map[string]any{
	"clientBasic":             map[string]any{"type": "http", "scheme": "basic", "description": "client_secret_basic: the client_id and client_secret, each form-urlencoded (RFC 6749 section 2.3.1)"},
	"clientCredentialsToken":  map[string]any{"type": "http", "scheme": "bearer", "description": "an access token of the client_credentials grant"},
	"registrationAccessToken": map[string]any{"type": "http", "scheme": "bearer", "description": "the registration access token the registration endpoint gave the client (RFC 7592)"},
	"oauthAccessToken":        map[string]any{"type": "http", "scheme": "bearer", "description": "an access token from /oauth2/token of token_type Bearer"},
	"oauthDPoPToken":          map[string]any{"type": "http", "scheme": "DPoP", "description": "an access token from /oauth2/token of token_type DPoP, with a DPoP proof that carries ath (RFC 9449 section 7)"},
}

const (
	formTokenDPoP = "An RFC 9449 proof (ES256 or EdDSA; htm POST, htu this endpoint's URL under the issuer): the tokens are then bound to its key (token_type DPoP, cnf.jkt). Required where the handset has an enrolled key (with that key), where the authorization request named dpop_jkt, to refresh a DPoP-bound session, and for a client registered with dpop_bound_access_tokens. With --dpop-nonce it must carry the server's nonce (use_dpop_nonce and a DPoP-Nonce header otherwise)."
	userinfoDPoP  = "With a DPoP-bound access token: a proof of its key that carries ath, the token's SHA-256."
)

var (
	pageAnswer   = docAnswer{description: "an HTML page", html: true}
	pageAgain    = docAnswer{description: "the page again, with the reason: a wrong password (401), a refused handset (its status as on the native API), too many attempts (429, Retry-After), a stale form (403)", html: true}
	badLink      = docAnswer{description: "an HTML page saying why: the request names no registered client, or a redirect_uri the client did not register (nothing is redirected)", html: true}
	errRedirect  = docAnswer{description: "to the redirect_uri with error, error_description, state and iss (RFC 9207): a bad request whose client and redirect_uri are good", redirect: true}
	codeRedirect = docAnswer{description: "to the redirect_uri with code (single-use, 60 seconds), state and iss (RFC 9207); with action deny, error access_denied", redirect: true}
)

var oauthOperations = []op{
	{method: "GET", path: "/.well-known/openid-configuration", summary: "OpenID Connect Discovery 1.0 metadata: the issuer, every endpoint, grant, method, scope, claim and algorithm", tag: "oauth", okStatus: 200, ok: oauth.Discovery{}, jsonOnly: true, oauthErrors: true},
	{method: "GET", path: "/.well-known/oauth-authorization-server", summary: "RFC 8414 authorization server metadata (the same document)", tag: "oauth", okStatus: 200, ok: oauth.Discovery{}, jsonOnly: true, oauthErrors: true},

	{method: "GET", path: "/oauth2/authorize", summary: "The authorization endpoint: the sign-in page (authorization code with PKCE S256)", tag: "oauth", params: authorizeParams{},
		okStatus: 200, ok: pageAnswer, more: map[string]docAnswer{"303": errRedirect, "400": badLink}, oauthErrors: true},
	{method: "POST", path: "/oauth2/authorize", summary: "The sign-in form's answer: the password is checked as at a login, with the handset the request named", tag: "oauth", params: authorizeParams{}, form: signInForm{},
		okStatus: 303, ok: codeRedirect, more: map[string]docAnswer{"400": badLink, "4XX": pageAgain}, oauthErrors: true},
	{method: "POST", path: "/oauth2/token", summary: "The token endpoint: authorization_code, refresh_token, password, device_code and client_credentials grants", tag: "oauth", auth: "client", form: tokenForm{},
		okStatus: 200, ok: oauth.Tokens{}, jsonOnly: true, oauthErrors: true, dpop: formTokenDPoP,
		description: "The grant must be one the client registered (else unauthorized_client). Every grant that issues tokens for a person admits the handset as a login does."},
	{method: "POST", path: "/oauth2/revoke", summary: "Revoke a refresh or access token: its session ends (RFC 7009)", tag: "oauth", auth: "client", form: revokeForm{},
		okStatus: 200, oauthErrors: true},
	{method: "POST", path: "/oauth2/introspect", summary: "Is a token active? (RFC 7662)", tag: "oauth", auth: "client-or-token", form: introspectForm{},
		okStatus: 200, ok: oauth.Introspection{}, jsonOnly: true, oauthErrors: true,
		description: "A confidential client, or a client_credentials token as Bearer; public clients may not. An inactive token is {\"active\": false}."},
	{method: "GET", path: "/oauth2/userinfo", summary: "The claims the access token's scope releases (OpenID Connect Core 5.3)", tag: "oauth", auth: "token",
		okStatus: 200, ok: userinfoDoc{}, jsonOnly: true, oauthErrors: true, dpop: userinfoDPoP},
	{method: "POST", path: "/oauth2/userinfo", summary: "The claims the access token's scope releases (OpenID Connect Core 5.3)", tag: "oauth", auth: "token", form: userinfoForm{}, formOptional: true,
		okStatus: 200, ok: userinfoDoc{}, jsonOnly: true, oauthErrors: true, dpop: userinfoDPoP},
	{method: "GET", path: "/oauth2/logout", summary: "RP-initiated logout: the ID token's session ends", tag: "oauth", params: logoutParams{},
		okStatus: 200, ok: docAnswer{description: "the signed-out page (no post_logout_redirect_uri)", html: true},
		more: map[string]docAnswer{"303": {description: "to the post_logout_redirect_uri, with state", redirect: true}, "400": {description: "an HTML page saying what is wrong with the request", html: true}}, oauthErrors: true},
	{method: "POST", path: "/oauth2/logout", summary: "RP-initiated logout: the ID token's session ends", tag: "oauth", params: logoutParams{}, form: logoutParams{}, formOptional: true,
		okStatus: 200, ok: docAnswer{description: "the signed-out page (no post_logout_redirect_uri)", html: true},
		more: map[string]docAnswer{"303": {description: "to the post_logout_redirect_uri, with state", redirect: true}, "400": {description: "an HTML page saying what is wrong with the request", html: true}}, oauthErrors: true},
	{method: "POST", path: "/oauth2/device_authorization", summary: "Device authorization (RFC 8628): a user code for a person to approve at /oauth2/device", tag: "oauth", auth: "client", form: deviceAuthorizationForm{},
		okStatus: 200, ok: oauth.DeviceAuthorization{}, jsonOnly: true, oauthErrors: true},
	{method: "GET", path: "/oauth2/device", summary: "The verification page of the device flow: a field for the user code, or, with one, the sign-in form", tag: "oauth", params: deviceParams{},
		okStatus: 200, ok: pageAnswer, more: map[string]docAnswer{"404": {description: "the page again: no sign-in waits for this code", html: true}}, oauthErrors: true},
	{method: "POST", path: "/oauth2/device", summary: "The verification form's answer: approve (the password and the handset checked as at a login) or deny", tag: "oauth", form: deviceForm{},
		okStatus: 200, ok: docAnswer{description: "approved or denied: the handset's next poll gets the tokens, or access_denied", html: true}, more: map[string]docAnswer{"4XX": pageAgain}, oauthErrors: true},
	{method: "POST", path: "/oauth2/register", summary: "Register a client (RFC 7591); the answer holds its secret and registration access token, shown this once", tag: "oauth", auth: "admin", body: oauth.Metadata{},
		okStatus: 201, ok: oauth.Client{}, jsonOnly: true, oauthErrors: true},
	{method: "GET", path: "/oauth2/register/{id}", summary: "A client's registration (RFC 7592)", tag: "oauth", auth: "registration",
		okStatus: 200, ok: oauth.Client{}, jsonOnly: true, oauthErrors: true},
	{method: "PUT", path: "/oauth2/register/{id}", summary: "Replace a client's registration (RFC 7592): the whole metadata", tag: "oauth", auth: "registration", body: registrationUpdate{},
		okStatus: 200, ok: oauth.Client{}, jsonOnly: true, oauthErrors: true,
		description: "A change to a method with a secret makes a new one, shown in the answer; a client that keeps its method keeps its secret."},
	{method: "DELETE", path: "/oauth2/register/{id}", summary: "Delete a client (RFC 7592)", tag: "oauth", auth: "registration",
		okStatus: 204, oauthErrors: true},

	{method: "GET", path: "/v1/oauth/clients", summary: "List OAuth clients, without secrets", tag: "oauth clients", auth: "admin", okStatus: 200, ok: struct {
		Items []oauth.Client `json:"items"`
	}{}, jsonOnly: true},
	{method: "POST", path: "/v1/oauth/clients", summary: "Register an OAuth client (RFC 7591 metadata); the answer holds its secret, shown this once", tag: "oauth clients", auth: "admin", body: oauth.Metadata{},
		okStatus: 201, ok: oauth.Client{}, jsonOnly: true},
	{method: "GET", path: "/v1/oauth/clients/{id}", summary: "An OAuth client, without its secret", tag: "oauth clients", auth: "admin", okStatus: 200, ok: oauth.Client{}, jsonOnly: true},
	{method: "PUT", path: "/v1/oauth/clients/{id}", summary: "Replace an OAuth client's metadata", tag: "oauth clients", auth: "admin", body: oauth.Metadata{},
		okStatus: 200, ok: oauth.Client{}, jsonOnly: true,
		description: "A change to a method with a secret makes a new one, shown in the answer; a client that keeps its method keeps its secret."},
	{method: "DELETE", path: "/v1/oauth/clients/{id}", summary: "Delete an OAuth client: its refresh tokens stop working at once, its access tokens live out their lifetime", tag: "oauth clients", auth: "admin", okStatus: 204},
	{method: "POST", path: "/v1/oauth/clients/{id}/secret", summary: "A new secret for a confidential client, shown this once; the old one stops working at once", tag: "oauth clients", auth: "admin",
		okStatus: 200, ok: oauth.Client{}, jsonOnly: true},
}

// object is the OpenAPI response object of a.
func (a docAnswer) object() map[string]any {
	o := map[string]any{"description": a.description}
	if a.html {
		o["content"] = map[string]any{"text/html": map[string]any{"schema": map[string]any{"type": "string"}}}
	}
	if a.redirect {
		o["headers"] = map[string]any{"Location": map[string]any{"description": "where the browser goes next", "schema": map[string]any{"type": "string", "format": "uri"}}}
	}
	return o
}

// joinDesc joins the non-empty parts of a description.
func joinDesc(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
