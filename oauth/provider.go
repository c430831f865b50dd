// Package oauth is Tether's OAuth 2.0 and OpenID Connect provider: client
// registration and authentication, the authorization endpoint's requests
// and codes (PKCE), the grants of the token endpoint, device
// authorization, ID tokens, userinfo, revocation, introspection, logout
// and discovery.
//
// It holds the protocol, not the rules: every grant that issues tokens for
// a person goes through auth/ (the throttle, the directory, every handset
// rule, the session and its refresh rotation), so a token from here is
// bound to an enrolled handset exactly as one from the native API. It
// knows nothing of HTTP servers: api/ decodes requests into the types
// below and writes the answers, and the errors as RFC 6749 JSON.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"tether/auth"
	"tether/storage"
)

// The endpoints' paths, below the issuer URL.
const (
	PathAuthorize           = "/oauth2/authorize"
	PathToken               = "/oauth2/token"
	PathRevoke              = "/oauth2/revoke"
	PathIntrospect          = "/oauth2/introspect"
	PathUserInfo            = "/oauth2/userinfo"
	PathEndSession          = "/oauth2/logout"
	PathDeviceAuthorization = "/oauth2/device_authorization"
	PathDevice              = "/oauth2/device"
	PathRegister            = "/oauth2/register"
	PathJWKS                = "/.well-known/jwks.json"
)

// Store is what the provider keeps: clients and grants, and the audit
// trail (written with them).
type Store interface {
	storage.OAuthClients
	storage.OAuthGrants
}

// Config tunes the provider. Zero durations take the defaults.
type Config struct {
	// Issuer is the server's public URL (--public-url): the iss of every
	// token and the base of every endpoint in discovery.
	Issuer string
	// CodeTTL is how long an authorization code may wait to be redeemed
	// (60s; RFC 6749 section 4.1.2 advises at most 10 minutes).
	CodeTTL time.Duration
	// DeviceCodeTTL is how long a device authorization waits for the
	// person's approval (10 minutes), and DeviceInterval how often the
	// handset may poll (5s).
	DeviceCodeTTL  time.Duration
	DeviceInterval time.Duration
}

// Defaults for Config.
const (
	DefaultCodeTTL        = time.Minute
	DefaultDeviceCodeTTL  = 10 * time.Minute
	DefaultDeviceInterval = 5 * time.Second
)

// ValidateIssuer checks an issuer URL: absolute, https (or http on a
// loopback address, for trying the server out), no query or fragment
// (OpenID Connect Discovery section 3).
func ValidateIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	switch {
	case err != nil:
		return fmt.Errorf("the public URL %q is not a URL: %w", issuer, err)
	case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
		return fmt.Errorf("the public URL %q must be https (http only on a loopback address)", issuer)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(issuer, "#"):
		return fmt.Errorf("the public URL %q must be scheme://host[:port][/path], without user, query or fragment", issuer)
	}
	return nil
}

// Provider serves the OAuth 2.0 and OpenID Connect endpoints.
type Provider struct {
	cfg   Config
	auth  *auth.Service
	store Store
	audit storage.Audit
	now   func() time.Time
	log   *slog.Logger

	// assertions remembers the jti of client assertions (private_key_jwt)
	// until they expire, so one is not used twice.
	mu         sync.Mutex
	assertions map[string]time.Time
}

// Option configures a Provider.
type Option func(*Provider)

// WithClock sets the provider's clock, for tests.
func WithClock(now func() time.Time) Option { return func(p *Provider) { p.now = now } }

// WithLogger sets the provider's logger.
func WithLogger(l *slog.Logger) Option { return func(p *Provider) { p.log = l } }

// New returns a provider for cfg.Issuer, issuing tokens through a.
func New(cfg Config, a *auth.Service, store interface {
	Store
	storage.Audit
}, opts ...Option) (*Provider, error) {
	if err := ValidateIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.DeviceCodeTTL <= 0 {
		cfg.DeviceCodeTTL = DefaultDeviceCodeTTL
	}
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = DefaultDeviceInterval
	}
	if a == nil || store == nil {
		return nil, errors.New("oauth: the auth service and the store are required")
	}
	p := &Provider{cfg: cfg, auth: a, store: store, audit: store, now: time.Now, log: slog.Default(), assertions: map[string]time.Time{}}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Issuer is the issuer URL, without a final slash.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Endpoint is the absolute URL of one of the paths above.
func (p *Provider) Endpoint(path string) string { return p.cfg.Issuer + path }

// event starts an audit event about OAuth clients.
func (p *Provider) event(ctx context.Context, action, actor string) storage.Event {
	return storage.NewEvent(ctx, p.now(), action, "success", actor)
}

// record writes events outside any other write; a failure is logged.
func (p *Provider) record(ctx context.Context, events ...storage.Event) {
	if err := p.audit.AppendEvents(ctx, events...); err != nil {
		p.log.ErrorContext(ctx, "audit event lost", "action", events[0].Action, "error", err)
	}
}
