package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/auth"
	"tether/oauth"
	"tether/storage"
)

// The OAuth 2.0 and OpenID Connect endpoints: oauth/ holds the protocol,
// these handlers decode forms and write its answers. Their errors are
// RFC 6749 JSON bodies, written by handleError for every path below
// /oauth2 (oauthError).

// mountOAuth adds the OAuth routes, or, without a provider (no
// --public-url), routes that say how to turn them on.
func (s *server) mountOAuth(app *fiber.App, admins []fiber.Handler) {
	if s.OAuth == nil {
		// No routes: their 404s say how to turn them on (oauthOff).
		return
	}
	app.Get("/.well-known/openid-configuration", s.discovery)
	app.Get("/.well-known/oauth-authorization-server", s.discovery)
	o := app.Group("/oauth2")
	o.Get("/authorize", s.authorizePage)
	o.Post("/authorize", s.authorizeSubmit)
	o.Post("/token", s.oauthToken)
	o.Post("/revoke", s.oauthRevoke)
	o.Post("/introspect", s.oauthIntrospect)
	o.Get("/userinfo", s.userinfo)
	o.Post("/userinfo", s.userinfo)
	o.Get("/logout", s.logoutPage)
	o.Post("/logout", s.logoutPage)
	o.Post("/device_authorization", s.deviceAuthorization)
	o.Get("/device", s.devicePage)
	o.Post("/device", s.deviceSubmit)
	o.Post("/register", append(admins, s.register)...)
	o.Get("/register/:id", s.readRegistration)
	o.Put("/register/:id", s.updateRegistration)
	o.Delete("/register/:id", s.deleteRegistration)

	clients := app.Group("/v1/oauth/clients", admins...)
	clients.Get("", s.listClients)
	clients.Post("", s.createClient)
	clients.Get("/:id", s.getClient)
	clients.Put("/:id", s.updateClient)
	clients.Delete("/:id", s.deleteClient)
	clients.Post("/:id/secret", s.rotateClientSecret)
}

var errOAuthOff = tether.NewError(tether.CodeNotFound, "OAuth 2.0 and OpenID Connect are served once the server is started with --public-url (its issuer URL)")

// oauthOff is err, or, for a route not found on a server without OAuth,
// where OAuth would have it, errOAuthOff.
func (s *server) oauthOff(c *fiber.Ctx, err error) error {
	var ferr *fiber.Error
	if s.OAuth == nil && errors.As(err, &ferr) && ferr.Code == fiber.StatusNotFound &&
		(isOAuthPath(c.Path()) || strings.HasPrefix(c.Path(), "/v1/oauth/")) {
		return errOAuthOff
	}
	return err
}

// isOAuthPath reports whether errors on path are OAuth JSON errors.
func isOAuthPath(path string) bool {
	return strings.HasPrefix(path, "/oauth2/") || path == "/oauth2" ||
		path == "/.well-known/openid-configuration" || path == "/.well-known/oauth-authorization-server"
}

// oauthStatus is the one place OAuth error codes meet HTTP statuses (RFC
// 6749 section 5.2, RFC 6750 section 3.1, RFC 8628, RFC 9449, RFC 7591).
var oauthStatus = map[string]int{
	oauth.CodeInvalidClient:          fiber.StatusUnauthorized,
	oauth.CodeInvalidToken:           fiber.StatusUnauthorized,
	oauth.CodeInsufficientScope:      fiber.StatusForbidden,
	oauth.CodeServerError:            fiber.StatusInternalServerError,
	oauth.CodeTemporarilyUnavailable: fiber.StatusServiceUnavailable,
}

// toOAuthError classifies any error of an OAuth path as an OAuth error:
// oauth/'s own as they are, the transport's and the bearer checks' by
// their meaning, the rest through oauth.AsError.
func toOAuthError(err error) (*oauth.Error, int) {
	var (
		oe   *oauth.Error
		ferr *fiber.Error
	)
	if errors.As(err, &oe) {
		return oe, statusOfOAuth(oe.Code)
	}
	p := toProblem(err)
	switch {
	case errors.As(err, &ferr) || p.Code == tether.CodeNotFound || p.Code == tether.CodeMethodNotAllowed ||
		p.Code == tether.CodePayloadTooLarge || p.Code == tether.CodeUnsupportedMediaType || p.Code == tether.CodeNotAcceptable ||
		p.Code == tether.CodeValidationFailed || p.Code == tether.CodeInvalidRequest || p.Code == tether.CodeConflict:
		status := p.Status
		if p.Status >= 500 {
			return &oauth.Error{Code: oauth.CodeServerError, Description: p.Detail, Err: err}, p.Status
		}
		desc := p.Detail
		if p.Code == tether.CodeValidationFailed {
			desc = err.Error()
		}
		code := oauth.CodeInvalidRequest
		if p.Code == tether.CodeConflict {
			code = oauth.CodeInvalidClientMetadata
		}
		return &oauth.Error{Code: code, Description: desc, Err: err}, status
	case p.Code == tether.CodeTokenInvalid || p.Code == tether.CodeTokenExpired || p.Code == tether.CodeSessionRevoked || p.Code == tether.CodeSessionEndedByHandover ||
		p.Code == tether.CodeAccountDisabled || p.Code == tether.CodeDeviceSuspended || p.Code == tether.CodeDeviceRetired ||
		p.Code == tether.CodeDeviceNotEnrolled:
		return &oauth.Error{Code: oauth.CodeInvalidToken, Description: p.Detail, Err: err}, fiber.StatusUnauthorized
	case p.Code == tether.CodeProofInvalid || p.Code == tether.CodeProofRequired:
		code := oauth.CodeInvalidDPoPProof
		if errors.Is(err, auth.ErrUseNonce) {
			code = oauth.CodeUseDPoPNonce
		}
		return &oauth.Error{Code: code, Description: p.Detail, Err: err}, fiber.StatusUnauthorized
	case p.Code == tether.CodeForbidden:
		return &oauth.Error{Code: oauth.CodeInsufficientScope, Description: p.Detail, Err: err}, fiber.StatusForbidden
	}
	oe = oauth.AsError(err)
	return oe, statusOfOAuth(oe.Code)
}

func statusOfOAuth(code string) int {
	if s, ok := oauthStatus[code]; ok {
		return s
	}
	return fiber.StatusBadRequest
}

// oauthError writes an OAuth error body, with the headers its code calls
// for: a Basic challenge for a client that tried Basic, a Bearer or DPoP
// challenge at the resource endpoints, the DPoP nonce to use.
func (s *server) oauthError(c *fiber.Ctx, err error) error {
	oe, status := toOAuthError(err)
	if errors.Is(err, errOAuthOff) {
		status = fiber.StatusNotFound
	}
	ctx := c.UserContext()
	if status >= 500 && status != fiber.StatusServiceUnavailable {
		s.log.ErrorContext(ctx, "request failed", "error", err.Error(), "path", c.Path())
	} else {
		s.log.DebugContext(ctx, "request refused", "code", oe.Code, "error", err.Error())
	}
	switch {
	case oe.Code == oauth.CodeInvalidClient && oe.Basic:
		c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="tether"`)
	case oe.Code == oauth.CodeInvalidClient:
		// Credentials in the form, or none: RFC 6749 section 5.2 allows
		// 400, and a 401 would need a challenge for a scheme the client
		// did not use.
		status = fiber.StatusBadRequest
	case status == fiber.StatusUnauthorized || status == fiber.StatusForbidden:
		// The DPoP errors are the DPoP scheme's (RFC 9449 sections 7.1
		// and 12.2): a client reads use_dpop_nonce from a DPoP challenge.
		scheme := "Bearer"
		if _, dpop := credential(c); dpop || oe.DPoP || oe.Code == oauth.CodeInvalidDPoPProof || oe.Code == oauth.CodeUseDPoPNonce {
			scheme = "DPoP"
		}
		c.Set(fiber.HeaderWWWAuthenticate, scheme+` realm="tether", error="`+oe.Code+`", error_description="`+strings.ReplaceAll(oe.Description, `"`, `'`)+`"`)
	}
	if oe.Code == oauth.CodeUseDPoPNonce {
		c.Set("DPoP-Nonce", s.Auth.Nonce())
	}
	if oe.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, retryAfter(oe.RetryAfter))
	}
	noStore(c)
	body, merr := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{oe.Code, oe.Description})
	if merr != nil {
		return c.SendStatus(fiber.StatusInternalServerError)
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(body)
}

// noStore keeps tokens and errors about them out of caches (RFC 6749
// section 5.1).
func noStore(c *fiber.Ctx) {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
}

func (s *server) discovery(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "public, max-age=3600")
	c.Set(fiber.HeaderAccessControlAllowOrigin, "*")
	return c.JSON(s.OAuth.Discovery())
}

var errNotForm = &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "the body must be application/x-www-form-urlencoded"}

// oauthForm reads a form body, keeping every value of a repeated
// parameter so oauth/ can refuse it.
func oauthForm(c *fiber.Ctx) (url.Values, error) {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
	if ct != fiber.MIMEApplicationForm {
		return nil, errNotForm
	}
	v, err := url.ParseQuery(string(c.Body()))
	if err != nil {
		return nil, &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "the form is malformed"}
	}
	return v, nil
}

// formClient reads a form request and its client's credentials.
func formClient(c *fiber.Ctx) (oauth.ClientAuth, error) {
	form, err := oauthForm(c)
	if err != nil {
		return oauth.ClientAuth{}, err
	}
	return clientAuth(c, form)
}

// clientAuth reads a request's client credentials.
func clientAuth(c *fiber.Ctx, form url.Values) (oauth.ClientAuth, error) {
	ca := oauth.ClientAuth{Form: form}
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return ca, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return ca, &oauth.Error{Code: oauth.CodeInvalidClient, Description: "client authentication failed: use HTTP Basic or the form"}
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return ca, &oauth.Error{Code: oauth.CodeInvalidClient, Description: "client authentication failed", Basic: true}
	}
	id, secret, ok := bytes.Cut(raw, []byte(":"))
	if !ok {
		return ca, &oauth.Error{Code: oauth.CodeInvalidClient, Description: "client authentication failed", Basic: true}
	}
	ca.Basic, ca.BasicID, ca.BasicSecret = true, string(id), string(secret)
	return ca, nil
}

func (s *server) oauthToken(c *fiber.Ctx) error {
	ca, err := formClient(c)
	if err != nil {
		return err
	}
	t, err := s.OAuth.Token(c.UserContext(), oauth.TokenRequest{ClientAuth: ca, DPoP: len(c.Request().Header.Peek("DPoP")) > 0})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(t)
}

func (s *server) oauthRevoke(c *fiber.Ctx) error {
	ca, err := formClient(c)
	if err != nil {
		return err
	}
	if err := s.OAuth.Revoke(c.UserContext(), ca); err != nil {
		return err
	}
	noStore(c)
	return c.SendStatus(fiber.StatusOK)
}

func (s *server) oauthIntrospect(c *fiber.Ctx) error {
	form, err := oauthForm(c)
	if err != nil {
		return err
	}
	r := oauth.IntrospectRequest{ClientAuth: oauth.ClientAuth{Form: form}}
	if scheme, rest, _ := strings.Cut(c.Get(fiber.HeaderAuthorization), " "); strings.EqualFold(scheme, "Bearer") {
		r.Bearer = strings.TrimSpace(rest)
	} else if r.ClientAuth, err = clientAuth(c, form); err != nil {
		return err
	}
	in, err := s.OAuth.Introspect(c.UserContext(), r)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(in)
}

// userinfo takes the access token as Bearer or, bound, as DPoP with its
// proof (RFC 9449 section 7); the claims come as JSON.
func (s *server) userinfo(c *fiber.Ctx) error {
	secret, dpopScheme := credential(c)
	if c.Method() == fiber.MethodPost && secret == "" {
		// RFC 6750 section 2.2: the token in the form.
		if form, err := oauthForm(c); err == nil {
			secret = form.Get("access_token")
		}
	}
	if secret == "" || strings.HasPrefix(secret, auth.APIKeyPrefix) {
		return &oauth.Error{Code: oauth.CodeInvalidToken, Description: "an access token is required"}
	}
	errBound := &oauth.Error{Code: oauth.CodeInvalidToken, Description: "the token is DPoP-bound: send it as Authorization: DPoP, with a proof", DPoP: true}
	id, err := s.Auth.Authenticate(c.UserContext(), secret)
	if errors.Is(err, auth.ErrProofRequired) && !dpopScheme {
		// A bound token sent as Bearer, without a proof: the token is
		// what is wrong, not a proof (RFC 9449 section 7.2).
		return errBound
	}
	if err != nil {
		return err
	}
	if auth.TokenTypeOf(id.Claims) == "DPoP" && !dpopScheme {
		return errBound
	}
	claims, err := s.OAuth.UserInfo(id)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(claims)
}

func (s *server) deviceAuthorization(c *fiber.Ctx) error {
	ca, err := formClient(c)
	if err != nil {
		return err
	}
	d, err := s.OAuth.AuthorizeDevice(c.UserContext(), ca)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(d)
}

// Dynamic registration (RFC 7591) for admins, and its management by the
// client holding the registration access token (RFC 7592).

// decodeMetadata reads the client metadata of a registration request (RFC
// 7591 section 2): members the server does not understand are ignored, as
// the RFC says, and a body that cannot be read as metadata (malformed, a
// member of the wrong type) is invalid_client_metadata (section 3.2.2).
func decodeMetadata(c *fiber.Ctx, v any) error {
	err := decodeBody(c, v, false)
	if err == nil || errors.Is(err, errUnsupportedMedia) {
		return err
	}
	desc := toProblem(err).Detail
	var verr *tether.ValidationError
	if errors.As(err, &verr) {
		desc = verr.Error()
	}
	return &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: desc, Err: err}
}

func (s *server) register(c *fiber.Ctx) error {
	var m oauth.Metadata
	if err := decodeMetadata(c, &m); err != nil {
		return err
	}
	cl, err := s.OAuth.CreateClient(c.UserContext(), principal(c), m, true)
	if err != nil {
		return err
	}
	noStore(c)
	return c.Status(fiber.StatusCreated).JSON(cl)
}

// registrationToken is the bearer registration access token.
func registrationToken(c *fiber.Ctx) (string, error) {
	scheme, rest, _ := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
		return "", &oauth.Error{Code: oauth.CodeInvalidToken, Description: "the registration access token is required (Authorization: Bearer)"}
	}
	return strings.TrimSpace(rest), nil
}

func (s *server) readRegistration(c *fiber.Ctx) error {
	tok, err := registrationToken(c)
	if err != nil {
		return err
	}
	cl, err := s.OAuth.ReadRegistration(c.UserContext(), c.Params("id"), tok)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(cl)
}

func (s *server) updateRegistration(c *fiber.Ctx) error {
	tok, err := registrationToken(c)
	if err != nil {
		return err
	}
	var body struct {
		ClientID string `json:"client_id"`
		oauth.Metadata
		// What the server assigned may be sent back; it is not changed.
		ClientSecret          string `json:"client_secret"`
		ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
		ClientSecretExpiresAt int64  `json:"client_secret_expires_at"`
		RegistrationClientURI string `json:"registration_client_uri"`
	}
	if err := decodeMetadata(c, &body); err != nil {
		return err
	}
	id := c.Params("id")
	if body.ClientID != "" && body.ClientID != id {
		return &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "client_id is not the client's"}
	}
	cl, err := s.OAuth.UpdateRegistration(c.UserContext(), id, tok, body.Metadata)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(cl)
}

func (s *server) deleteRegistration(c *fiber.Ctx) error {
	tok, err := registrationToken(c)
	if err != nil {
		return err
	}
	if err := s.OAuth.DeleteRegistration(c.UserContext(), c.Params("id"), tok); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// The manager API's clients: the same metadata, for admins, with problem
// documents for errors as everywhere under /v1.

func (s *server) listClients(c *fiber.Ctx) error {
	cs, err := s.OAuth.ListClients(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": cs})
}

func (s *server) createClient(c *fiber.Ctx) error {
	var m oauth.Metadata
	if err := decodeJSON(c, &m); err != nil {
		return err
	}
	cl, err := s.OAuth.CreateClient(c.UserContext(), principal(c), m, false)
	if err != nil {
		return err
	}
	noStore(c)
	c.Location("/v1/oauth/clients/" + cl.ClientID)
	return c.Status(fiber.StatusCreated).JSON(cl)
}

func (s *server) getClient(c *fiber.Ctx) error {
	cl, err := s.OAuth.GetClient(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(cl)
}

func (s *server) updateClient(c *fiber.Ctx) error {
	var m oauth.Metadata
	if err := decodeJSON(c, &m); err != nil {
		return err
	}
	cl, err := s.OAuth.UpdateClient(c.UserContext(), principal(c), c.Params("id"), m)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(cl)
}

func (s *server) deleteClient(c *fiber.Ctx) error {
	if err := s.OAuth.DeleteClient(c.UserContext(), principal(c), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *server) rotateClientSecret(c *fiber.Ctx) error {
	cl, err := s.OAuth.RotateSecret(c.UserContext(), principal(c), c.Params("id"))
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(cl)
}

var _ = storage.RoleAdmin
