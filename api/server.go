// Package api is Tether's HTTP transport: routes, request decoding, the one
// error handler that turns errors into problem+json, and authentication of
// callers. The rules it applies live in device/ and auth/.
package api

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/utils"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/events"
	"tether/oauth"
	"tether/storage"
)

// Deps are the services the API serves.
type Deps struct {
	// Store is pinged by /readyz.
	Store   interface{ Ping(context.Context) error }
	Devices *device.Service
	Users   *auth.Users
	APIKeys *auth.APIKeys
	Auth    *auth.Service
	// OAuth serves the OAuth 2.0 and OpenID Connect endpoints; nil when
	// the server has no public URL (they then say how to turn them on).
	OAuth  *oauth.Provider
	Logger *slog.Logger
	// Metrics, if set, is served at /metrics and counts every request.
	Metrics *Metrics
	// Events, if set, delivers the audit trail to its sinks; managers see
	// them and replay their dead letters.
	Events *events.Dispatcher
}

// Options tune the HTTP server. Zero fields take the defaults.
type Options struct {
	// BodyLimit is the largest request body accepted, in bytes (4 MiB: an
	// import file of some 50,000 rows).
	BodyLimit int
	// ReadTimeout bounds reading a whole request (10s), WriteTimeout
	// writing a response (30s), IdleTimeout a keep-alive connection
	// waiting for its next request (120s).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// PublicURL is the address handsets reach the server at, for the
	// enroll URL in QR codes; empty means the address each request came to.
	PublicURL string
	// Version is the server's version, for /openapi.json.
	Version string
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// when they connect; without any, the connection's address is the
	// client's.
	TrustedProxies []netip.Prefix
}

// Defaults for Options.
const (
	DefaultBodyLimit    = 4 << 20
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultIdleTimeout  = 120 * time.Second
)

type server struct {
	Deps
	opts Options
	log  *slog.Logger
}

// New returns the Fiber app serving the whole API.
func New(d Deps, o Options) *fiber.App {
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	s := &server{Deps: d, opts: o, log: d.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}

	app := fiber.New(fiber.Config{
		AppName:               "tether",
		BodyLimit:             o.BodyLimit,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		IdleTimeout:           o.IdleTimeout,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		// Header and body buffers are bounded: 8 KiB of headers is plenty
		// for any client, and more is a 431.
		ReadBufferSize: 8 << 10,
	})

	// Recover first, so a panic anywhere becomes a 500 with a request id;
	// then the id; then the access log, which calls the error handler
	// itself to log each request's final status.
	app.Use(recover.New())
	app.Use(requestID)
	app.Use(s.accessLog)
	app.Use(s.origin)
	app.Use(s.proof)
	app.Use(acceptable)

	if d.Metrics != nil {
		d.Metrics.register(s)
		app.Get("/metrics", d.Metrics.handler())
	}
	app.Get("/openapi.json", s.openapi)
	app.Get("/healthz", s.healthz)
	app.Get("/readyz", s.readyz)
	app.Get("/.well-known/jwks.json", s.jwks)
	app.Get("/console", s.console)
	app.Get("/console/*", s.console)

	// Every protected route authenticates and then checks the role, in its
	// own group, so the handset routes that take no credentials stay open.
	v1 := app.Group("/v1")
	managers := []fiber.Handler{s.authenticate, s.require(storage.RoleManager, storage.RoleAdmin)}
	admins := []fiber.Handler{s.authenticate, s.require(storage.RoleAdmin)}
	s.mountOAuth(app, admins)

	handset := v1.Group("/auth")
	handset.Post("/login", s.login)
	handset.Post("/refresh", s.refresh)
	handset.Post("/renew", s.renew)
	handset.Post("/logout", s.authenticate, s.requireUser, s.logout)
	handset.Post("/end-shift", s.authenticate, s.requireUser, s.endShift)
	handset.Get("/me", s.authenticate, s.requireUser, s.me)
	handset.Post("/password", s.authenticate, s.requireUser, s.changePassword)
	handset.Post("/mfa", s.loginMFA)
	handset.Post("/mfa/enroll", s.loginEnroll)
	handset.Post("/mfa/enroll/confirm", s.loginEnrollConfirm)
	handset.Post("/mfa/webauthn", s.loginPasskeyOptions)
	handset.Post("/mfa/webauthn/finish", s.loginPasskey)
	handset.Post("/mfa/enroll/webauthn", s.loginEnrollPasskey)
	handset.Post("/mfa/enroll/webauthn/confirm", s.loginEnrollPasskeyConfirm)
	// A manager's or admin's own second factors.
	factors := []fiber.Handler{s.authenticate, s.require(storage.RoleManager, storage.RoleAdmin), s.requireUser}
	handset.Get("/factors", append(factors, s.listFactors)...)
	handset.Post("/factors/totp", append(factors, s.beginTOTP)...)
	handset.Post("/factors/totp/confirm", append(factors, s.confirmTOTP)...)
	handset.Post("/factors/webauthn", append(factors, s.beginPasskey)...)
	handset.Post("/factors/webauthn/confirm", append(factors, s.confirmPasskey)...)
	handset.Post("/factors/webauthn/reauth", append(factors, s.passkeyReauth)...)
	handset.Post("/factors/:id/remove", append(factors, s.removeFactor)...)
	handset.Post("/recovery-codes", append(factors, s.regenerateRecoveryCodes)...)
	handset.Post("/introspect", s.authenticate, s.requireAPIKey, s.require(storage.RoleIntrospect, storage.RoleAdmin), s.introspect)
	v1.Post("/enroll", s.enroll)
	v1.Post("/enroll/challenge", s.enrollChallenge)

	devices := v1.Group("/devices", managers...)
	devices.Post("/", s.registerDevice)
	devices.Post("/import", s.importDevices)
	devices.Get("/", s.listDevices)
	devices.Get("/:id", s.getDevice)
	devices.Patch("/:id", s.patchDevice)
	devices.Post("/:id/suspend", s.deviceTransition((*device.Service).Suspend))
	devices.Post("/:id/retire", s.deviceTransition((*device.Service).Retire))
	devices.Post("/:id/reinstate", s.deviceTransition((*device.Service).Reinstate))

	groups := v1.Group("/groups", managers...)
	groups.Get("/", s.listGroups)
	groups.Get("/:name", s.getGroup)
	groups.Put("/:name", s.putGroup)
	groups.Delete("/:name", s.deleteGroup)
	v1.Get("/rack", append(managers, s.rack)...)

	users := v1.Group("/users", managers...)
	users.Post("/", s.createUser)
	users.Get("/", s.listUsers)
	users.Get("/:id", s.getUser)
	users.Patch("/:id", s.patchUser)
	users.Post("/:id/password", s.setPassword)
	users.Post("/:id/logout-all", s.logoutAll)
	users.Post("/:id/mfa/reset", s.require(storage.RoleAdmin), s.resetMFA)

	sessions := v1.Group("/sessions", managers...)
	sessions.Get("/", s.listSessions)
	sessions.Delete("/:id", s.deleteSession)

	v1.Get("/audit", append(managers, s.listEvents)...)
	sinks := v1.Group("/events/sinks", managers...)
	sinks.Get("/", s.listSinks)
	sinks.Get("/:name/dead-letters", s.listDeadLetters)
	sinks.Post("/:name/replay", s.replayDeadLetters)

	v1.Get("/directory", append(managers, s.directoryStatus)...)

	lockouts := v1.Group("/lockouts", managers...)
	lockouts.Get("/", s.listLockouts)
	lockouts.Delete("/", s.clearLockouts)

	codes := v1.Group("/enrollment-codes", managers...)
	codes.Post("/", s.createCode)
	codes.Get("/", s.listCodes)
	codes.Delete("/:id", s.revokeCode)
	codes.Get("/:id/qr.png", s.codeQR)

	v1.Post("/admin/keys/rotate", append(admins, s.rotateKeys)...)
	v1.Get("/admin/backup", append(admins, s.backup)...)

	// The compatibility dialects (docs/compat.md). Routes match in any case,
	// as the servers they stand in for did.
	for path, handler := range s.dialectRoutes() {
		app.Post(path, handler)
	}

	keys := v1.Group("/api-keys", admins...)
	keys.Post("/", s.createAPIKey)
	keys.Get("/", s.listAPIKeys)
	keys.Delete("/:id", s.deleteAPIKey)

	return app
}

func (s *server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

func (s *server) readyz(c *fiber.Ctx) error {
	if err := s.Store.Ping(c.UserContext()); err != nil {
		s.log.ErrorContext(c.UserContext(), "store not ready", "error", err)
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable"})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

type (
	principalKey struct{}
	identityKey  struct{}
)

// principal returns the authenticated caller of a request.
func principal(c *fiber.Ctx) auth.Principal {
	p, _ := c.Locals(principalKey{}).(auth.Principal)
	return p
}

// identity returns the user behind a request's access token; requireUser
// guarantees there is one.
func identity(c *fiber.Ctx) auth.Identity {
	id, _ := c.Locals(identityKey{}).(auth.Identity)
	return id
}

// acceptable refuses, before any work is done, a request whose Accept
// header names no format the server writes. The dialects and the OAuth
// endpoints, which each write one format whatever is asked (an OAuth
// page's HTML, a token's JSON), are not held to it.
func acceptable(c *fiber.Ctx) error {
	if _, _, err := negotiate(c.Get(fiber.HeaderAccept)); err != nil && !isDialect(c.Path()) && !isOAuthPath(c.Path()) {
		return err
	}
	return c.Next()
}

// origin records where a request came from, for the audit trail and
// throttling.
func (s *server) origin(c *fiber.Ctx) error {
	c.SetUserContext(tether.WithOrigin(c.UserContext(), tether.Origin{
		IP:        s.clientIP(c),
		UserAgent: utils.CopyString(c.Get(fiber.HeaderUserAgent)),
	}))
	return c.Next()
}

var errTwoProofs = tether.NewError(tether.CodeProofInvalid, "the DPoP proof is not valid: send exactly one DPoP header")

// proof hands the request's DPoP proof (RFC 9449), with the method and URL
// it must name, to the auth service through the request's context.
func (s *server) proof(c *fiber.Ctx) error {
	if s.Auth.Config().DPoPNonce {
		c.Set("DPoP-Nonce", s.Auth.Nonce())
	}
	headers := c.Request().Header.PeekAll("DPoP")
	switch len(headers) {
	case 0:
		return c.Next()
	case 1:
	default:
		return errTwoProofs
	}
	c.SetUserContext(auth.WithProof(c.UserContext(), auth.Proof{
		JWT:    string(headers[0]),
		Method: c.Method(),
		URL:    s.serverURL(c) + c.Path(),
	}))
	return c.Next()
}

// credential returns the secret a request presents, and whether it came
// under the DPoP scheme: an X-API-Key header or an Authorization header of
// the Bearer or DPoP scheme.
func credential(c *fiber.Ctx) (secret string, dpopScheme bool) {
	if k := c.Get("X-API-Key"); k != "" {
		return strings.TrimSpace(k), false
	}
	scheme, rest, ok := strings.Cut(c.Get(fiber.HeaderAuthorization), " ")
	if ok && (strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "DPoP")) {
		return strings.TrimSpace(rest), strings.EqualFold(scheme, "DPoP")
	}
	return "", false
}

var errBoundTokenAsBearer = tether.NewError(tether.CodeTokenInvalid, "the token is bound to a handset key: send it as Authorization: DPoP, with a DPoP proof")

// authenticate admits a request that presents a valid API key or a user's
// access token, and records its principal. Without one the answer is 401.
// A token bound to a handset key is accepted only under the DPoP scheme
// (RFC 9449 section 7.1): a client that sends it as a Bearer token does
// not know, or hides, that it must prove the key.
func (s *server) authenticate(c *fiber.Ctx) error {
	secret, dpopScheme := credential(c)
	if secret == "" {
		return auth.ErrUnauthenticated
	}
	if strings.HasPrefix(secret, auth.APIKeyPrefix) || c.Get("X-API-Key") != "" {
		p, err := s.APIKeys.Authenticate(c.UserContext(), secret)
		if err != nil {
			return err
		}
		c.Locals(principalKey{}, p)
		return c.Next()
	}
	id, err := s.Auth.Authenticate(c.UserContext(), secret)
	if err != nil {
		return err
	}
	if auth.TokenTypeOf(id.Claims) == "DPoP" && !dpopScheme {
		return errBoundTokenAsBearer
	}
	c.Locals(principalKey{}, id.Principal())
	c.Locals(identityKey{}, id)
	return c.Next()
}

// requireUser admits only requests made with a user's access token.
func (s *server) requireUser(c *fiber.Ctx) error {
	if principal(c).Kind != auth.KindUser {
		return errUserTokenRequired
	}
	return c.Next()
}

// requireAPIKey admits only requests made with an API key.
func (s *server) requireAPIKey(c *fiber.Ctx) error {
	if principal(c).Kind != auth.KindAPIKey {
		return errAPIKeyRequired
	}
	return c.Next()
}

var (
	errUserTokenRequired = tether.NewError(tether.CodeForbidden, "this endpoint takes a user's access token, not an API key")
	errAPIKeyRequired    = tether.NewError(tether.CodeForbidden, "this endpoint takes an API key")
)

// require admits principals holding one of roles; others get 403.
func (s *server) require(roles ...storage.Role) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := principal(c).Require(roles...); err != nil {
			return err
		}
		return c.Next()
	}
}
