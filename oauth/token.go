package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/auth"
	"tether/device"
	"tether/storage"
)

// TokenRequest is a request to the token endpoint: the client's
// credentials and the form. Its DPoP proof, if any, travels in the
// context (auth.WithProof), as on the native API.
type TokenRequest struct {
	ClientAuth
	// DPoP says the request carried a DPoP header.
	DPoP bool
}

// Tokens is the token endpoint's answer (RFC 6749 section 5.1, OpenID
// Connect Core section 3.1.3.3, RFC 9449 section 5).
type Tokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// Token serves the token endpoint: it authenticates the client, checks
// that the client may use the grant, and issues tokens.
func (p *Provider) Token(ctx context.Context, r TokenRequest) (Tokens, error) {
	gt, oe := single(r.Form, "grant_type")
	if oe != nil {
		return Tokens{}, oe
	}
	if gt == "" {
		return Tokens{}, oerr(CodeInvalidRequest, "grant_type is missing")
	}
	if !slices.Contains(grantTypes, gt) {
		return Tokens{}, oerrf(CodeUnsupportedGrantType, "grant_type %q is not supported", truncate(gt, 64))
	}
	for name, v := range r.Form {
		if len(v) > 1 {
			return Tokens{}, oerrf(CodeInvalidRequest, "%s is given more than once", truncate(name, 64))
		}
	}
	c, oe := p.authenticateClient(ctx, r.ClientAuth, p.Endpoint(PathToken))
	if oe != nil {
		return Tokens{}, oe
	}
	if !slices.Contains(c.GrantTypes, gt) {
		return Tokens{}, oerrf(CodeUnauthorizedClient, "the client may not use the %s grant", gt)
	}
	if c.DPoPBound && !r.DPoP {
		return Tokens{}, oerr(CodeInvalidDPoPProof, "this client's tokens are DPoP-bound: send a DPoP proof")
	}
	// A proof without the server's nonce is refused before a grant uses
	// its code up: the client is meant to retry with the nonce.
	if err := p.auth.CheckNonce(ctx); err != nil {
		return Tokens{}, fromAuth(err)
	}
	var (
		t   Tokens
		err error
	)
	switch gt {
	case GrantAuthorizationCode:
		t, err = p.redeemCode(ctx, c, r)
	case GrantRefreshToken:
		t, err = p.refresh(ctx, c, r)
	case GrantPassword:
		t, err = p.password(ctx, c, r)
	case GrantDeviceCode:
		t, err = p.redeemDeviceCode(ctx, c, r)
	case GrantClientCredentials:
		t, err = p.clientCredentials(ctx, c, r)
	}
	if err != nil {
		return Tokens{}, fromAuth(err)
	}
	return t, nil
}

var errCodeInvalid = oerr(CodeInvalidGrant, "the authorization code is not valid, has expired or was used")

// redeemCode is the authorization_code grant (RFC 6749 section 4.1.3,
// RFC 7636 section 4.6). The code is used up by the first redemption that
// gets as far as the client's check, whatever comes after: a wrong
// verifier cannot be retried. The one exception is a DPoP proof without
// the server's nonce, which RFC 9449 section 8 has the client retry. A
// code presented again revokes the session its first redemption opened
// (section 4.1.2), even if that one is still being opened.
func (p *Provider) redeemCode(ctx context.Context, c storage.OAuthClient, r TokenRequest) (Tokens, error) {
	code, verifier, redirect := r.Form.Get("code"), r.Form.Get("code_verifier"), r.Form.Get("redirect_uri")
	switch {
	case code == "":
		return Tokens{}, oerr(CodeInvalidRequest, "code is missing")
	case verifier == "":
		return Tokens{}, oerr(CodeInvalidRequest, "code_verifier is missing: PKCE is required")
	case !validVerifier(verifier):
		return Tokens{}, oerr(CodeInvalidRequest, "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	case len(code) > 256:
		return Tokens{}, errCodeInvalid
	}
	dev, oe := formDevice(r)
	if oe != nil {
		return Tokens{}, oe
	}
	now := p.now()
	var (
		verdict *Error
		replay  bool
	)
	rec, err := p.store.UpdateAuthCode(ctx, hashSecret(code), func(cur storage.AuthCode) (storage.AuthCode, error) {
		verdict, replay = nil, false
		switch {
		case !cur.UsedAt.IsZero():
			// Presented again: whatever it opened dies, now or, if its
			// session is still being opened, as soon as it is.
			replay, cur.Replayed = true, true
			return cur, nil
		case subtle.ConstantTimeCompare([]byte(cur.ClientID), []byte(c.ID)) != 1:
			// Another client's code: not used up, so the client it was
			// made for can still redeem it.
			return cur, errCodeInvalid
		}
		cur.UsedAt = now.UTC()
		switch {
		case !now.Before(cur.ExpiresAt):
			verdict = oerr(CodeInvalidGrant, "the authorization code has expired")
		case redirect != cur.RedirectURI:
			verdict = oerr(CodeInvalidGrant, "redirect_uri is not the one of the authorization request")
		case subtle.ConstantTimeCompare([]byte(codeChallenge(verifier)), []byte(cur.CodeChallenge)) != 1:
			verdict = oerr(CodeInvalidGrant, "code_verifier does not match the code_challenge")
		}
		return cur, nil
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return Tokens{}, errCodeInvalid
	case err != nil:
		return Tokens{}, err
	case replay:
		p.codeReplayed(ctx, rec)
		return Tokens{}, errCodeInvalid
	case verdict != nil:
		return Tokens{}, verdict
	}
	req := auth.LoginRequest{
		ClientID: c.ID, Scope: rec.Scope, AuthTime: rec.AuthTime, DPoPJKT: rec.DPoPJKT, AMR: rec.AMR,
		Persistent: hasScope(rec.Scope, ScopeOfflineAccess), Device: dev, BoundDevice: rec.DeviceID,
		DeviceRef: rec.DeviceID,
	}
	if rec.DeviceID == "" {
		req.DeviceRef = rec.DeviceName
		if dev != nil {
			return Tokens{}, oerr(CodeInvalidGrant, "the authorization request named no handset: send the device payload there")
		}
	}
	g, err := p.auth.Open(ctx, rec.UserID, req)
	if errors.Is(err, auth.ErrUseNonce) {
		// The client retries with the server's nonce (RFC 9449 section
		// 8): the code is given back for that retry, unless it was
		// presented again meanwhile.
		if _, uerr := p.store.UpdateAuthCode(ctx, rec.Hash, func(cur storage.AuthCode) (storage.AuthCode, error) {
			if !cur.Replayed && cur.SessionID == "" && cur.UsedAt.Equal(rec.UsedAt) {
				cur.UsedAt = time.Time{}
			}
			return cur, nil
		}); uerr != nil {
			p.log.ErrorContext(ctx, "give an authorization code back", "error", uerr)
		}
		return Tokens{}, err
	}
	if err != nil {
		return Tokens{}, err
	}
	// Tell the code its session; if it was replayed meanwhile, the
	// session dies at once.
	rec, err = p.store.UpdateAuthCode(ctx, rec.Hash, func(cur storage.AuthCode) (storage.AuthCode, error) {
		cur.SessionID = g.Session.ID
		return cur, nil
	})
	if err != nil || rec.Replayed {
		p.revoke(ctx, g.Session.ID, "authorization_code_reused")
		if err != nil {
			return Tokens{}, err
		}
		return Tokens{}, errCodeInvalid
	}
	return p.tokens(ctx, c, g, rec.Nonce)
}

// codeReplayed revokes what a code's first redemption opened.
func (p *Provider) codeReplayed(ctx context.Context, rec storage.AuthCode) {
	ev := storage.NewEvent(ctx, p.now(), "oauth.code_reused", "failure", "")
	ev.UserID, ev.SessionID, ev.Reason = rec.UserID, rec.SessionID, "authorization_code_reused"
	ev.Detail = map[string]string{"client": rec.ClientID}
	p.record(ctx, ev)
	if rec.SessionID != "" {
		p.revoke(ctx, rec.SessionID, "authorization_code_reused")
	}
}

// revoke ends a session on the provider's word.
func (p *Provider) revoke(ctx context.Context, sessionID, reason string) {
	if err := p.auth.EndSession(ctx, sessionID, reason); err != nil && !errors.Is(err, storage.ErrNotFound) {
		p.log.ErrorContext(ctx, "revoke a session", "session", sessionID, "error", err)
	}
}

// formDevice reads the device parameter of a token request.
func formDevice(r TokenRequest) (*device.Payload, *Error) {
	raw := r.Form.Get("device")
	if raw == "" {
		return nil, nil
	}
	return parseDevice(raw)
}

// refresh is the refresh_token grant: auth/'s one refresh, with its
// rotation, reuse detection and grace, for this client's sessions only.
func (p *Provider) refresh(ctx context.Context, c storage.OAuthClient, r TokenRequest) (Tokens, error) {
	raw := r.Form.Get("refresh_token")
	if raw == "" {
		return Tokens{}, oerr(CodeInvalidRequest, "refresh_token is missing")
	}
	g, err := p.auth.RefreshFor(ctx, c.ID, raw, r.Form.Get("device_id"))
	if err != nil {
		return Tokens{}, err
	}
	// A narrower scope may be asked for (RFC 6749 section 6); tokens keep
	// the session's, so anything but a subset of it is refused.
	if asked := r.Form.Get("scope"); asked != "" {
		for _, s := range strings.Fields(asked) {
			if !hasScope(g.Session.Scope, s) {
				return Tokens{}, oerrf(CodeInvalidScope, "scope %q was not granted", truncate(s, 64))
			}
		}
	}
	return p.tokens(ctx, c, g, "")
}

// password is the resource owner password grant, for the field apps that
// sign in with their own form: a login, with the device payload as the
// device parameter.
func (p *Provider) password(ctx context.Context, c storage.OAuthClient, r TokenRequest) (Tokens, error) {
	username, password := r.Form.Get("username"), r.Form.Get("password")
	if username == "" || password == "" {
		return Tokens{}, oerr(CodeInvalidRequest, "username and password are required")
	}
	scope, oe := grantScope(c, r.Form.Get("scope"))
	if oe != nil {
		return Tokens{}, oe
	}
	dev, oe := formDevice(r)
	if oe != nil {
		return Tokens{}, oe
	}
	g, err := p.auth.Login(ctx, auth.LoginRequest{
		Username: username, Password: password, Device: dev, DeviceRef: r.Form.Get("device_id"),
		ClientID: c.ID, Scope: scope, Persistent: hasScope(scope, ScopeOfflineAccess),
	})
	if err != nil {
		return Tokens{}, err
	}
	return p.tokens(ctx, c, g, "")
}

// clientCredentials is the client_credentials grant: a token naming the
// client itself, for a back-end service. Tether accepts it only at its
// introspection endpoint; other resource servers may take it for the
// client's own calls.
func (p *Provider) clientCredentials(ctx context.Context, c storage.OAuthClient, r TokenRequest) (Tokens, error) {
	if s := r.Form.Get("scope"); s != "" {
		return Tokens{}, oerr(CodeInvalidScope, "a client_credentials token takes no scope")
	}
	jkt, err := p.auth.ProveClientKey(ctx)
	if err != nil {
		return Tokens{}, err
	}
	tok, exp, err := p.auth.ClientToken(ctx, c.ID, jkt)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: tok, TokenType: tokenType(jkt), ExpiresIn: expiresIn(exp, p.now())}, nil
}

func tokenType(jkt string) string {
	if jkt != "" {
		return "DPoP"
	}
	return "Bearer"
}

func expiresIn(exp, now time.Time) int64 {
	s := int64(exp.Sub(now).Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// tokens is the answer for a grant that opened or refreshed a session:
// the refresh token only to a client that may use it, and an ID token
// where the scope has openid (on a refresh, without nonce, as OpenID
// Connect Core section 12.2 allows).
func (p *Provider) tokens(ctx context.Context, c storage.OAuthClient, g auth.Grant, nonce string) (Tokens, error) {
	now := p.now()
	t := Tokens{
		AccessToken: g.AccessToken, TokenType: tokenType(g.Session.JKT),
		ExpiresIn: expiresIn(g.AccessExpiresAt, now), Scope: g.Session.Scope,
	}
	if slices.Contains(c.GrantTypes, GrantRefreshToken) {
		t.RefreshToken = g.RefreshToken
	}
	if hasScope(g.Session.Scope, ScopeOpenID) {
		id, err := p.idToken(c, g, nonce)
		if err != nil {
			return Tokens{}, fmt.Errorf("sign the ID token: %w", err)
		}
		t.IDToken = id
	}
	return t, nil
}

// IDClaims are the claims of an ID token (OpenID Connect Core section 2
// and 5.1).
type IDClaims struct {
	jwt.RegisteredClaims
	AuthTime int64    `json:"auth_time"`
	Nonce    string   `json:"nonce,omitempty"`
	ATHash   string   `json:"at_hash"`
	SID      string   `json:"sid"`
	AZP      string   `json:"azp"`
	AMR      []string `json:"amr,omitempty"`
	// DID is the handset the session is bound to.
	DID string `json:"did,omitempty"`
	UserClaims
}

// UserClaims are the claims about the person that the scopes release:
// profile and email (OpenID Connect Core section 5.4).
type UserClaims struct {
	Name              string `json:"name,omitempty"`
	GivenName         string `json:"given_name,omitempty"`
	FamilyName        string `json:"family_name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Picture           string `json:"picture,omitempty"`
	UpdatedAt         int64  `json:"updated_at,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
}

// userClaims are the claims scope releases about u.
func userClaims(u storage.User, scope string) UserClaims {
	var c UserClaims
	if hasScope(scope, ScopeProfile) {
		c.GivenName, c.FamilyName, c.PreferredUsername, c.Picture = u.FirstName, u.LastName, u.Username, u.ImageURL
		c.Name = strings.TrimSpace(u.FirstName + " " + u.LastName)
		if u.Directory != nil && u.Directory.DisplayName != "" {
			c.Name = u.Directory.DisplayName
		}
		c.UpdatedAt = u.UpdatedAt.Unix()
	}
	if hasScope(scope, ScopeEmail) && u.Email != "" {
		// Only the directory vouches for an address; a typed-in one is
		// not verified.
		verified := u.Directory != nil
		c.Email, c.EmailVerified = u.Email, &verified
	}
	return c
}

// idToken signs the ID token of a session's grant, with the client's
// algorithm.
func (p *Provider) idToken(c storage.OAuthClient, g auth.Grant, nonce string) (string, error) {
	now := p.now()
	claims := IDClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: p.cfg.Issuer, Subject: g.User.ID, Audience: jwt.ClaimStrings{c.ID},
			ExpiresAt: jwt.NewNumericDate(g.AccessExpiresAt), IssuedAt: jwt.NewNumericDate(now),
		},
		AuthTime: g.Session.AuthTime.Unix(), Nonce: nonce, SID: g.Session.ID, AZP: c.ID,
		AMR: auth.SessionAMR(g.Session), DID: g.Session.DeviceID, UserClaims: userClaims(g.User, g.Session.Scope),
	}
	alg := c.IDTokenAlg
	if alg == "" {
		alg = "RS256"
	}
	claims.ATHash = halfHash(g.AccessToken, alg)
	return p.auth.SignJWT(claims, alg, map[string]any{"typ": "JWT"})
}

// halfHash is the at_hash of an access token: the left half of its hash
// with the ID token's algorithm's hash, base64url (OpenID Connect Core
// section 3.1.3.6). RS256 and ES256 use SHA-256; EdDSA with Ed25519 is
// taken as SHA-512, as OpenID Connect's errata and most libraries do.
func halfHash(token, alg string) string {
	var sum []byte
	if alg == "EdDSA" {
		h := sha512.Sum512([]byte(token))
		sum = h[:]
	} else {
		h := sha256.Sum256([]byte(token))
		sum = h[:]
	}
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
