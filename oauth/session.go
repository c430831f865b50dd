package oauth

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/storage"
)

// Revoke serves the revocation endpoint (RFC 7009): the client's refresh
// or access token ends its session. A token that is not valid, or is
// another client's, changes nothing and is answered the same (section
// 2.2): the endpoint tells nobody which tokens exist.
func (p *Provider) Revoke(ctx context.Context, ca ClientAuth) error {
	for name, v := range ca.Form {
		if len(v) > 1 {
			return oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	c, oe := p.authenticateClient(ctx, ca, p.Endpoint(PathRevoke))
	if oe != nil {
		return oe
	}
	raw := ca.Form.Get("token")
	if raw == "" {
		return oerr(CodeInvalidRequest, "token is missing")
	}
	if err := p.auth.RevokeToken(ctx, c.ID, raw); err != nil {
		return fromAuth(err)
	}
	return nil
}

// Introspection is the introspection endpoint's answer (RFC 7662 section
// 2.2); an inactive token is {"active":false} and nothing more.
type Introspection struct {
	Active    bool               `json:"active"`
	Scope     string             `json:"scope,omitempty"`
	ClientID  string             `json:"client_id,omitempty"`
	Username  string             `json:"username,omitempty"`
	TokenType string             `json:"token_type,omitempty"`
	Exp       int64              `json:"exp,omitempty"`
	Iat       int64              `json:"iat,omitempty"`
	Sub       string             `json:"sub,omitempty"`
	Aud       []string           `json:"aud,omitempty"`
	Iss       string             `json:"iss,omitempty"`
	JTI       string             `json:"jti,omitempty"`
	SID       string             `json:"sid,omitempty"`
	DID       string             `json:"did,omitempty"`
	Role      string             `json:"role,omitempty"`
	Cnf       *auth.Confirmation `json:"cnf,omitempty"`
}

// IntrospectRequest is a request to the introspection endpoint: a client
// authenticated as at the token endpoint, or a back-end service holding a
// client_credentials token (Bearer).
type IntrospectRequest struct {
	ClientAuth
	Bearer string
}

// Introspect serves the introspection endpoint. Only a confidential
// client, or a client_credentials token, may ask: a public client's
// question would make the endpoint an oracle for anyone.
func (p *Provider) Introspect(ctx context.Context, r IntrospectRequest) (Introspection, error) {
	for name, v := range r.Form {
		if len(v) > 1 {
			return Introspection{}, oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	if r.Bearer != "" {
		cc, ok := p.clientToken(ctx, r.Bearer)
		if !ok {
			return Introspection{}, &Error{Code: CodeInvalidToken, Description: "the bearer token is not a valid client_credentials token"}
		}
		_ = cc
	} else {
		c, oe := p.authenticateClient(ctx, r.ClientAuth, p.Endpoint(PathIntrospect))
		if oe != nil {
			return Introspection{}, oe
		}
		if c.Public {
			return Introspection{}, errClient(false, errors.New("public clients may not introspect"))
		}
	}
	raw := strings.TrimSpace(r.Form.Get("token"))
	if raw == "" {
		return Introspection{}, oerr(CodeInvalidRequest, "token is missing")
	}
	if in := p.auth.Introspect(ctx, raw); in.Active {
		c := in.Claims
		return Introspection{
			Active: true, Scope: c.Scope, ClientID: c.ClientID, Username: in.Username, TokenType: in.TokenType,
			Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer,
			JTI: c.ID, SID: c.SID, DID: c.DID, Role: string(c.Role), Cnf: c.Cnf,
		}, nil
	}
	if cc, ok := p.clientToken(ctx, raw); ok {
		return Introspection{
			Active: true, ClientID: cc.ClientID, TokenType: auth.TokenTypeOf(&cc.Claims),
			Exp: cc.ExpiresAt.Unix(), Iat: cc.IssuedAt.Unix(), Sub: cc.Subject, Aud: cc.Audience, Iss: cc.Issuer,
			JTI: cc.ID, Cnf: cc.Cnf,
		}, nil
	}
	return Introspection{}, nil
}

// clientToken checks a client_credentials token: signed here, live, and
// its client still registered.
func (p *Provider) clientToken(ctx context.Context, raw string) (*auth.ClientClaims, bool) {
	cc, err := p.auth.ParseClientToken(ctx, raw)
	if err != nil {
		return nil, false
	}
	if _, err := p.store.GetOAuthClient(ctx, cc.ClientID); err != nil {
		return nil, false
	}
	return cc, true
}

// UserInfo serves the userinfo endpoint (OpenID Connect Core section
// 5.3): the claims the session's scope releases about its person. id is
// the caller's access token, authenticated (with its DPoP proof, where it
// is bound) by api/.
func (p *Provider) UserInfo(id auth.Identity) (map[string]any, error) {
	if id.Session.ClientID == "" || !hasScope(id.Session.Scope, ScopeOpenID) {
		return nil, oerr(CodeInsufficientScope, "the token was not granted the openid scope")
	}
	out := map[string]any{"sub": id.User.ID}
	uc := userClaims(id.User, id.Session.Scope)
	// The claims as JSON names, the empty ones left out.
	for k, v := range map[string]any{
		"name": uc.Name, "given_name": uc.GivenName, "family_name": uc.FamilyName,
		"preferred_username": uc.PreferredUsername, "picture": uc.Picture, "email": uc.Email,
	} {
		if s, _ := v.(string); s != "" {
			out[k] = s
		}
	}
	if uc.UpdatedAt != 0 {
		out["updated_at"] = uc.UpdatedAt
	}
	if uc.EmailVerified != nil {
		out["email_verified"] = *uc.EmailVerified
	}
	if id.Session.DeviceID != "" {
		out["did"] = id.Session.DeviceID
	}
	return out, nil
}

// Logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0):
// with an ID token of ours as id_token_hint (expired or not), the session
// it names ends; a post_logout_redirect_uri the client registered is where
// the browser goes next, with state. It returns that URI, or "" to show
// the signed-out page.
func (p *Provider) Logout(ctx context.Context, q url.Values) (string, error) {
	for name, v := range q {
		if len(v) > 1 {
			return "", oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	hint, clientID, redirect := q.Get("id_token_hint"), q.Get("client_id"), q.Get("post_logout_redirect_uri")
	var claims IDClaims
	if hint != "" {
		if err := p.auth.VerifyJWT(ctx, hint, &claims); err != nil || claims.Issuer != p.cfg.Issuer || len(claims.Audience) != 1 {
			return "", oerr(CodeInvalidRequest, "id_token_hint is not an ID token of this server")
		}
		if clientID != "" && clientID != claims.Audience[0] {
			return "", oerr(CodeInvalidRequest, "client_id is not the ID token's audience")
		}
		clientID = claims.Audience[0]
	}
	if redirect != "" {
		if clientID == "" {
			return "", oerr(CodeInvalidRequest, "post_logout_redirect_uri needs id_token_hint or client_id")
		}
		c, err := p.store.GetOAuthClient(ctx, clientID)
		if err != nil || !slices.Contains(c.PostLogoutRedirectURIs, redirect) {
			return "", oerr(CodeInvalidRequest, "post_logout_redirect_uri is not one the client registered")
		}
	}
	if claims.SID != "" {
		// The session must be the one the token was issued for, to its
		// client, for this person.
		if err := p.auth.EndClientSession(ctx, claims.SID, clientID, claims.Subject); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", fromAuth(err)
		}
	}
	if redirect == "" {
		return "", nil
	}
	u, _ := url.Parse(redirect)
	if st := q.Get("state"); st != "" {
		v := u.Query()
		v.Set("state", st)
		u.RawQuery = v.Encode()
	}
	return u.String(), nil
}

var _ jwt.Claims = (*IDClaims)(nil)
