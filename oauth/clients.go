package oauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/auth"
	"tether/storage"
)

// The grant types the token endpoint serves.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantPassword          = "password"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	GrantClientCredentials = "client_credentials"
)

// The client authentication methods (RFC 7591 section 2).
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// The scopes.
const (
	ScopeOpenID        = "openid"
	ScopeProfile       = "profile"
	ScopeEmail         = "email"
	ScopeOfflineAccess = "offline_access"
)

var (
	grantTypes  = []string{GrantAuthorizationCode, GrantRefreshToken, GrantPassword, GrantDeviceCode, GrantClientCredentials}
	authMethods = []string{AuthNone, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT}
	scopes      = []string{ScopeOpenID, ScopeProfile, ScopeEmail, ScopeOfflineAccess}
	idTokenAlgs = []string{"RS256", "ES256", "EdDSA"}
)

// Metadata is a client's registration, in the names of RFC 7591 section 2
// (and OpenID Connect Dynamic Client Registration): what dynamic
// registration, the manager API and the console send.
type Metadata struct {
	ClientName              string          `json:"client_name,omitempty"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs  []string        `json:"post_logout_redirect_uris,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string        `json:"grant_types,omitempty"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	IDTokenSignedAlg        string          `json:"id_token_signed_response_alg,omitempty"`
	ApplicationType         string          `json:"application_type,omitempty"`
	// DPoPBoundAccessTokens makes DPoP proofs mandatory for the client
	// (RFC 9449 section 5.2).
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens,omitempty"`
}

// Client is a registered client as the APIs show it: its metadata, and
// the secret and registration access token only when they were just made.
type Client struct {
	ClientID string `json:"client_id"`
	// ClientSecret is shown once, when it is made.
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
	// RegistrationAccessToken is shown once, to a client registered at the
	// registration endpoint (RFC 7592).
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri,omitempty"`
	Metadata
	CreatedBy string    `json:"created_by,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// maxClientName bounds client_name; maxURIs the redirect URIs of a client,
// maxURI each of them, maxJWKS the size of a client's key set.
const (
	maxClientName = 128
	maxURIs       = 20
	maxURI        = 2048
	maxJWKS       = 16 << 10
)

// errMetadata is a registration refused for its metadata.
func errMetadata(format string, args ...any) *Error {
	return oerrf(CodeInvalidClientMetadata, format, args...)
}

// record turns metadata into a client record, checking it: every field
// the server understands is honoured or refused, none is silently
// ignored. Metadata it does not know is ignored, as RFC 7591 says.
func (m Metadata) record() (storage.OAuthClient, *Error) {
	c := storage.OAuthClient{
		Name: strings.TrimSpace(m.ClientName), TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		GrantTypes: dedupe(m.GrantTypes), IDTokenAlg: m.IDTokenSignedAlg, DPoPBound: m.DPoPBoundAccessTokens,
	}
	if len(c.Name) > maxClientName || !tether.Printable(c.Name) {
		return c, errMetadata("client_name is printable text of at most %d bytes", maxClientName)
	}
	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = AuthClientSecretBasic
	}
	if !slices.Contains(authMethods, c.TokenEndpointAuthMethod) {
		return c, errMetadata("token_endpoint_auth_method %q is not one of %s", c.TokenEndpointAuthMethod, strings.Join(authMethods, ", "))
	}
	c.Public = c.TokenEndpointAuthMethod == AuthNone
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantAuthorizationCode}
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(grantTypes, g) {
			return c, errMetadata("grant type %q is not one of %s", g, strings.Join(grantTypes, ", "))
		}
	}
	if c.Public && slices.Contains(c.GrantTypes, GrantClientCredentials) {
		return c, errMetadata("client_credentials is for clients that authenticate: a public client (token_endpoint_auth_method none) cannot have it")
	}
	wantCode := slices.Contains(c.GrantTypes, GrantAuthorizationCode)
	for _, rt := range m.ResponseTypes {
		if rt != "code" {
			return c, errMetadata("response type %q is not supported: only code (with PKCE)", rt)
		}
	}
	if len(m.ResponseTypes) > 0 && !wantCode {
		return c, errMetadata("response type code needs the authorization_code grant type")
	}
	if wantCode && len(m.RedirectURIs) == 0 {
		return c, oerr(CodeInvalidRedirectURI, "the authorization_code grant needs at least one redirect_uri")
	}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"redirect_uris", m.RedirectURIs, &c.RedirectURIs}, {"post_logout_redirect_uris", m.PostLogoutRedirectURIs, &c.PostLogoutRedirectURIs}} {
		if len(list.in) > maxURIs {
			return c, oerrf(CodeInvalidRedirectURI, "at most %d %s", maxURIs, list.name)
		}
		for _, raw := range list.in {
			if err := checkRedirectURI(raw); err != nil {
				return c, oerrf(CodeInvalidRedirectURI, "%s: %q %s", list.name, truncate(raw, 200), err)
			}
		}
		*list.out = dedupe(list.in)
	}
	if m.Scope != "" {
		for _, s := range strings.Fields(m.Scope) {
			if !slices.Contains(scopes, s) {
				return c, errMetadata("scope %q is not one of %s", s, strings.Join(scopes, " "))
			}
		}
		c.Scopes = dedupe(strings.Fields(m.Scope))
	}
	if c.IDTokenAlg == "" {
		c.IDTokenAlg = "RS256"
	}
	if !slices.Contains(idTokenAlgs, c.IDTokenAlg) {
		return c, errMetadata("id_token_signed_response_alg %q is not one of %s", c.IDTokenAlg, strings.Join(idTokenAlgs, ", "))
	}
	if m.JWKSURI != "" {
		return c, errMetadata("jwks_uri is not supported: the server fetches nothing; register the public keys themselves as jwks")
	}
	switch {
	case c.TokenEndpointAuthMethod == AuthPrivateKeyJWT && len(m.JWKS) == 0:
		return c, errMetadata("private_key_jwt needs the client's public keys in jwks")
	case c.TokenEndpointAuthMethod != AuthPrivateKeyJWT && len(m.JWKS) > 0:
		return c, errMetadata("jwks is only for private_key_jwt clients")
	case len(m.JWKS) > maxJWKS:
		return c, errMetadata("jwks is larger than %d bytes", maxJWKS)
	case len(m.JWKS) > 0:
		keys, err := parseJWKS(m.JWKS)
		if err != nil {
			return c, errMetadata("jwks: %v", err)
		}
		if len(keys) == 0 {
			return c, errMetadata("jwks holds no RSA (2048 bits or more), P-256 or Ed25519 signing key")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m.JWKS); err != nil {
			return c, errMetadata("jwks is not JSON")
		}
		c.JWKS = buf.Bytes()
	}
	if m.ApplicationType != "" && m.ApplicationType != "native" && m.ApplicationType != "web" {
		return c, errMetadata("application_type is native or web")
	}
	c.ApplicationType = m.ApplicationType
	return c, nil
}

// metadata is the inverse of record.
func metadataOf(c storage.OAuthClient) Metadata {
	m := Metadata{
		ClientName: c.Name, RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, GrantTypes: c.GrantTypes, Scope: strings.Join(c.Scopes, " "),
		JWKS: c.JWKS, IDTokenSignedAlg: c.IDTokenAlg, ApplicationType: c.ApplicationType, DPoPBoundAccessTokens: c.DPoPBound,
	}
	if slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		m.ResponseTypes = []string{"code"}
	}
	return m
}

func (p *Provider) view(c storage.OAuthClient) Client {
	v := Client{ClientID: c.ID, ClientIDIssuedAt: c.CreatedAt.Unix(), Metadata: metadataOf(c), CreatedBy: c.CreatedBy, UpdatedAt: c.UpdatedAt}
	if !c.Public && c.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
		zero := int64(0)
		v.ClientSecretExpiresAt = &zero
	}
	if len(c.RegistrationHash) > 0 {
		v.RegistrationClientURI = p.Endpoint(PathRegister + "/" + c.ID)
	}
	return v
}

// checkRedirectURI applies RFC 6749 section 3.1.2, RFC 8252 section 7 and
// the OAuth 2.0 Security BCP to a redirect URI being registered: absolute,
// no fragment; https anywhere; http only to a loopback IP literal (whose
// port is then free); or a private-use scheme in reverse domain form
// (com.example.app:/callback). Schemes a browser runs or reads locally
// are refused.
func checkRedirectURI(raw string) error {
	if len(raw) > maxURI || !tether.Printable(raw) || strings.ContainsAny(raw, " \t") {
		return fmt.Errorf("is not a URI of at most %d printable characters", maxURI)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return errors.New("is not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("has a fragment (RFC 6749 section 3.1.2)")
	}
	if u.User != nil {
		return errors.New("has user information")
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https":
		if u.Host == "" {
			return errors.New("has no host")
		}
	case scheme == "http":
		if !loopbackIP(u.Hostname()) {
			return errors.New("is http to another host than a loopback IP literal (127.0.0.1 or [::1]; RFC 8252 section 7.3): use https")
		}
	case slices.Contains([]string{"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}, scheme):
		return fmt.Errorf("has the scheme %s, which cannot be a redirect", scheme)
	case !strings.Contains(scheme, "."):
		return errors.New("has a private-use scheme that is not a reverse domain name such as com.example.app (RFC 8252 section 7.1)")
	}
	return nil
}

// loopbackIP reports whether host is a loopback IP literal.
func loopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost is loopbackIP or localhost.
func loopbackHost(host string) bool {
	return loopbackIP(host) || strings.EqualFold(host, "localhost")
}

// matchRedirect finds the registered redirect URI a request names: the
// same string, byte for byte, or, for a registered http loopback URI, the
// same but for the port (RFC 8252 section 7.3: the app listens on a port
// the system gives it). It returns false for anything else: another path,
// a longer one, an added query, another case, another port on another
// host.
func matchRedirect(registered []string, requested string) bool {
	for _, r := range registered {
		if r == requested {
			return true
		}
	}
	q, err := url.Parse(requested)
	if err != nil || q.Scheme != "http" || !loopbackIP(q.Hostname()) {
		return false
	}
	for _, r := range registered {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" || !loopbackIP(u.Hostname()) {
			continue
		}
		if u.Hostname() == q.Hostname() && u.EscapedPath() == q.EscapedPath() && u.RawQuery == q.RawQuery && q.Fragment == "" && q.User == nil && validPort(q.Port()) {
			return true
		}
	}
	return false
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	n := 0
	for _, ch := range p {
		if ch < '0' || ch > '9' {
			return false
		}
		n = n*10 + int(ch-'0')
		if n > 65535 {
			return false
		}
	}
	return true
}

// newSecret makes a client secret or registration access token: 256
// random bits. Being random and long, it is stored as its SHA-256, which
// is as good as a slow hash for it and costs nothing at the token
// endpoint.
func newSecret() (string, []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	return s, hashSecret(s)
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func sameHash(a, b []byte) bool {
	return len(a) == sha256.Size && subtle.ConstantTimeCompare(a, b) == 1
}

// CreateClient registers a client for an admin (the manager API, the
// console, the CLI). dynamic says it came through the registration
// endpoint, so it gets a registration access token to manage itself.
func (p *Provider) CreateClient(ctx context.Context, by auth.Principal, m Metadata, dynamic bool) (Client, error) {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return Client{}, err
	}
	c, oe := m.record()
	if oe != nil {
		return Client{}, oe
	}
	now := p.now().UTC()
	c.ID = storage.NewID(storage.PrefixClient)
	c.CreatedAt, c.UpdatedAt, c.CreatedBy = now, now, by.String()
	var secret, rat string
	if needsSecret(c) {
		secret, c.SecretHash = newSecret()
	}
	if dynamic {
		rat, c.RegistrationHash = newSecret()
	}
	ev := p.event(ctx, "oauth.client.create", "")
	by.Stamp(&ev)
	ev.Detail = map[string]string{"client": c.ID, "name": truncate(c.Name, 64), "grants": strings.Join(c.GrantTypes, " ")}
	if err := p.store.CreateOAuthClient(ctx, c, storage.WithEvents(ev)); err != nil {
		return Client{}, err
	}
	v := p.view(c)
	v.ClientSecret, v.RegistrationAccessToken = secret, rat
	return v, nil
}

func needsSecret(c storage.OAuthClient) bool {
	return c.TokenEndpointAuthMethod == AuthClientSecretBasic || c.TokenEndpointAuthMethod == AuthClientSecretPost
}

// GetClient returns a client, without secrets; storage.ErrNotFound if
// there is none.
func (p *Provider) GetClient(ctx context.Context, id string) (Client, error) {
	c, err := p.store.GetOAuthClient(ctx, id)
	if err != nil {
		return Client{}, err
	}
	return p.view(c), nil
}

// ListClients returns every client, without secrets.
func (p *Provider) ListClients(ctx context.Context) ([]Client, error) {
	cs, err := p.store.ListOAuthClients(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Client, len(cs))
	for i, c := range cs {
		out[i] = p.view(c)
	}
	return out, nil
}

// HasClients reports whether any client is registered.
func (p *Provider) HasClients(ctx context.Context) (bool, error) {
	cs, err := p.store.ListOAuthClients(ctx)
	return len(cs) > 0, err
}

// UpdateClient replaces a client's metadata (RFC 7592 section 2.2: the
// whole registration, not a patch). A change of authentication method to
// one with a secret makes a new secret, shown in the answer; the secret
// of a client that keeps its method is kept.
func (p *Provider) UpdateClient(ctx context.Context, by auth.Principal, id string, m Metadata) (Client, error) {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return Client{}, err
	}
	return p.updateClient(ctx, by.Stamp, id, m)
}

// updateClient updates a client; stamp marks its event as the actor's.
func (p *Provider) updateClient(ctx context.Context, stamp func(*storage.Event), id string, m Metadata) (Client, error) {
	next, oe := m.record()
	if oe != nil {
		return Client{}, oe
	}
	var secret string
	now := p.now().UTC()
	ev := p.event(ctx, "oauth.client.update", "")
	stamp(&ev)
	ev.Detail = map[string]string{"client": id, "name": truncate(next.Name, 64), "grants": strings.Join(next.GrantTypes, " ")}
	c, err := p.store.UpdateOAuthClient(ctx, id, func(cur storage.OAuthClient) (storage.OAuthClient, error) {
		next.ID, next.CreatedAt, next.CreatedBy, next.RegistrationHash = cur.ID, cur.CreatedAt, cur.CreatedBy, cur.RegistrationHash
		next.UpdatedAt = now
		switch {
		case !needsSecret(next):
			next.SecretHash = nil
		case needsSecret(cur):
			next.SecretHash = cur.SecretHash
		default:
			secret, next.SecretHash = newSecret()
		}
		return next, nil
	}, storage.WithEvents(ev))
	if err != nil {
		return Client{}, err
	}
	v := p.view(c)
	v.ClientSecret = secret
	return v, nil
}

// RotateSecret gives a confidential client a new secret, shown once; the
// old one stops working at once.
func (p *Provider) RotateSecret(ctx context.Context, by auth.Principal, id string) (Client, error) {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return Client{}, err
	}
	secret, hash := newSecret()
	ev := p.event(ctx, "oauth.client.secret", "")
	by.Stamp(&ev)
	ev.Detail = map[string]string{"client": id}
	c, err := p.store.UpdateOAuthClient(ctx, id, func(cur storage.OAuthClient) (storage.OAuthClient, error) {
		if !needsSecret(cur) {
			return cur, tether.NewError(tether.CodeConflict, "the client authenticates without a secret ("+cur.TokenEndpointAuthMethod+")")
		}
		cur.SecretHash, cur.UpdatedAt = hash, p.now().UTC()
		return cur, nil
	}, storage.WithEvents(ev))
	if err != nil {
		return Client{}, err
	}
	v := p.view(c)
	v.ClientSecret = secret
	return v, nil
}

// DeleteClient removes a client. Its refresh tokens stop working at once
// (the client no longer authenticates); its access tokens live out their
// few minutes.
func (p *Provider) DeleteClient(ctx context.Context, by auth.Principal, id string) error {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return err
	}
	ev := p.event(ctx, "oauth.client.delete", "")
	by.Stamp(&ev)
	ev.Detail = map[string]string{"client": truncate(id, 64)}
	return p.store.DeleteOAuthClient(ctx, id, storage.WithEvents(ev))
}

// registered finds the client a registration access token is for (RFC
// 7592): the client must exist and the token be its own; either failing
// reads the same (invalid_token).
func (p *Provider) registered(ctx context.Context, id, token string) (storage.OAuthClient, error) {
	c, err := p.store.GetOAuthClient(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return c, err
	}
	if err != nil || !sameHash(c.RegistrationHash, hashSecret(token)) {
		return c, oerr(CodeInvalidToken, "the registration access token is not valid for this client")
	}
	return c, nil
}

// ReadRegistration is RFC 7592 section 2.1.
func (p *Provider) ReadRegistration(ctx context.Context, id, token string) (Client, error) {
	c, err := p.registered(ctx, id, token)
	if err != nil {
		return Client{}, err
	}
	return p.view(c), nil
}

// UpdateRegistration is RFC 7592 section 2.2: the client replaces its own
// metadata. The client_id in the body, if any, must be its own.
func (p *Provider) UpdateRegistration(ctx context.Context, id, token string, m Metadata) (Client, error) {
	if _, err := p.registered(ctx, id, token); err != nil {
		return Client{}, err
	}
	return p.updateClient(ctx, func(ev *storage.Event) { ev.Actor = "client:" + id }, id, m)
}

// DeleteRegistration is RFC 7592 section 2.3.
func (p *Provider) DeleteRegistration(ctx context.Context, id, token string) error {
	if _, err := p.registered(ctx, id, token); err != nil {
		return err
	}
	ev := p.event(ctx, "oauth.client.delete", "client:"+id)
	ev.Detail = map[string]string{"client": id}
	return p.store.DeleteOAuthClient(ctx, id, storage.WithEvents(ev))
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
