package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"time"
)

// More record ID prefixes.
const (
	PrefixClient     = "cli_"
	PrefixAuthCode   = "acd_"
	PrefixDeviceCode = "dvc_"
)

// OAuthClient is an application registered to get tokens through the
// OAuth 2.0 / OpenID Connect endpoints.
type OAuthClient struct {
	// ID is the client_id.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Public clients (native apps) hold no secret; confidential ones
	// authenticate with TokenEndpointAuthMethod.
	Public bool `json:"public"`
	// TokenEndpointAuthMethod is "none" (public), "client_secret_basic",
	// "client_secret_post" or "private_key_jwt".
	TokenEndpointAuthMethod string `json:"tokenEndpointAuthMethod"`
	// SecretHash is the SHA-256 of the client secret, for the
	// client_secret_* methods.
	SecretHash []byte `json:"secretHash,omitempty"`
	// JWKS holds the public keys of a private_key_jwt client.
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	RedirectURIs []string        `json:"redirectUris,omitempty"`
	// PostLogoutRedirectURIs are where RP-initiated logout may send the
	// browser back to.
	PostLogoutRedirectURIs []string `json:"postLogoutRedirectUris,omitempty"`
	// GrantTypes are the grants the client may use.
	GrantTypes []string `json:"grantTypes"`
	// Scopes are the scopes it may ask for; empty for the defaults.
	Scopes []string `json:"scopes,omitempty"`
	// IDTokenAlg signs its ID tokens: "RS256" (default), "ES256", "EdDSA".
	IDTokenAlg string `json:"idTokenAlg,omitempty"`
	// ApplicationType is "native" or "web" as registered, or empty.
	ApplicationType string `json:"applicationType,omitempty"`
	// DPoPBound makes DPoP proofs mandatory for the client at the token
	// endpoint (dpop_bound_access_tokens, RFC 9449 section 5.2).
	DPoPBound bool `json:"dpopBound,omitempty"`
	// RegistrationHash is the SHA-256 of its registration access token
	// (RFC 7592), for clients registered dynamically.
	RegistrationHash []byte    `json:"registrationHash,omitempty"`
	CreatedAt        time.Time `json:"createdAt"`
	CreatedBy        string    `json:"createdBy,omitempty"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

// Clone returns a deep copy of c.
func (c OAuthClient) Clone() OAuthClient {
	c.SecretHash = bytes.Clone(c.SecretHash)
	c.JWKS = bytes.Clone(c.JWKS)
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	c.GrantTypes = slices.Clone(c.GrantTypes)
	c.Scopes = slices.Clone(c.Scopes)
	c.RegistrationHash = bytes.Clone(c.RegistrationHash)
	return c
}

// OAuthClients persists OAuth clients. IDs and registration hashes are
// unique.
type OAuthClients interface {
	// CreateOAuthClient stores a new client, or returns a *ConflictError
	// if its ID is taken.
	CreateOAuthClient(ctx context.Context, c OAuthClient, opts ...WriteOption) error
	// GetOAuthClient returns the client with the given ID, or ErrNotFound.
	GetOAuthClient(ctx context.Context, id string) (OAuthClient, error)
	// ListOAuthClients returns every client, in ID order.
	ListOAuthClients(ctx context.Context) ([]OAuthClient, error)
	// UpdateOAuthClient replaces the client with what fn returns (see the
	// package contract). Changing the ID is an error; changing the
	// registration hash to one that is taken is a *ConflictError.
	UpdateOAuthClient(ctx context.Context, id string, fn func(OAuthClient) (OAuthClient, error), opts ...WriteOption) (OAuthClient, error)
	// DeleteOAuthClient removes a client, or returns ErrNotFound; the
	// write options run in the same transaction.
	DeleteOAuthClient(ctx context.Context, id string, opts ...WriteOption) error
}

// AuthCode is an authorization code: what a person's sign-in at the
// authorization endpoint granted a client, until the client redeems it.
type AuthCode struct {
	ID string `json:"id"`
	// Hash is the SHA-256 of the code; the code itself is never stored.
	Hash        []byte `json:"hash"`
	ClientID    string `json:"clientId"`
	RedirectURI string `json:"redirectUri"`
	Scope       string `json:"scope,omitempty"`
	Nonce       string `json:"nonce,omitempty"`
	// CodeChallenge is the PKCE S256 challenge.
	CodeChallenge string `json:"codeChallenge"`
	// DPoPJKT binds the code to a DPoP key (dpop_jkt), or is empty.
	DPoPJKT string `json:"dpopJkt,omitempty"`
	UserID  string `json:"userId"`
	// DeviceID is the handset the sign-in was admitted on, or empty;
	// DeviceName the device name it gave instead, or empty.
	DeviceID   string    `json:"deviceId,omitempty"`
	DeviceName string    `json:"deviceName,omitempty"`
	AuthTime   time.Time `json:"authTime"`
	// AMR are how the person authenticated, for the ID token.
	AMR       []string  `json:"amr,omitempty"`
	ExpiresAt time.Time `json:"expiresAt"`
	// UsedAt is when the code was redeemed, and SessionID the session its
	// tokens belong to: a code redeemed again revokes that session.
	UsedAt    time.Time `json:"usedAt,omitzero"`
	SessionID string    `json:"sessionId,omitempty"`
	// Replayed is set when the code was presented after its redemption:
	// the session of the redemption, once it has one, is revoked.
	Replayed bool `json:"replayed,omitempty"`
}

// Clone returns a deep copy of c.
func (c AuthCode) Clone() AuthCode {
	c.Hash = bytes.Clone(c.Hash)
	c.AMR = slices.Clone(c.AMR)
	return c
}

// DeviceCode is an RFC 8628 device authorization: a handset without a
// keyboard polls with the device code while a person approves the user
// code on another screen.
type DeviceCode struct {
	ID string `json:"id"`
	// Hash is the SHA-256 of the device code; UserCode is what the person
	// types, normalised (upper case, no separators), unique while pending.
	Hash     []byte `json:"hash"`
	UserCode string `json:"userCode"`
	ClientID string `json:"clientId"`
	Scope    string `json:"scope,omitempty"`
	// Device is the handset payload the device authorization request
	// carried, as JSON, or empty.
	Device json.RawMessage `json:"device,omitempty"`
	// DeviceRef is the handset's id or IMEI, or a device name, that the
	// request gave instead of a payload, or empty.
	DeviceRef string `json:"deviceRef,omitempty"`
	// DPoPJKT binds the grant to a DPoP key, or is empty.
	DPoPJKT string `json:"dpopJkt,omitempty"`
	// Status is "pending", "approved", "denied" or "used".
	Status string `json:"status"`
	// UserID is who approved (or denied) it.
	UserID   string    `json:"userId,omitempty"`
	AuthTime time.Time `json:"authTime,omitzero"`
	// AMR are how the person who approved it authenticated.
	AMR []string `json:"amr,omitempty"`
	// Interval is the polling interval the client must keep, in seconds;
	// LastPolledAt the last poll, for slow_down.
	Interval     int       `json:"interval"`
	LastPolledAt time.Time `json:"lastPolledAt,omitzero"`
	ExpiresAt    time.Time `json:"expiresAt"`
	CreatedAt    time.Time `json:"createdAt"`
	SessionID    string    `json:"sessionId,omitempty"`
}

// Clone returns a deep copy of c.
func (c DeviceCode) Clone() DeviceCode {
	c.Hash = bytes.Clone(c.Hash)
	c.Device = bytes.Clone(c.Device)
	c.AMR = slices.Clone(c.AMR)
	return c
}

// Device code statuses.
const (
	DeviceCodePending  = "pending"
	DeviceCodeApproved = "approved"
	DeviceCodeDenied   = "denied"
	DeviceCodeUsed     = "used"
)

// OAuthGrants persists the short-lived records of OAuth grants:
// authorization codes and device codes. Hashes are unique; a user code is
// unique among the device codes not yet expired.
type OAuthGrants interface {
	// CreateAuthCode stores a new authorization code.
	CreateAuthCode(ctx context.Context, c AuthCode, opts ...WriteOption) error
	// UpdateAuthCode finds the code whose hash is hash (or returns
	// ErrNotFound) and replaces it with what fn returns, atomically with
	// respect to every other update of it (see the package contract): a
	// code is redeemed once, however many redeem it at once. Changing the
	// ID or the hash is an error.
	UpdateAuthCode(ctx context.Context, hash []byte, fn func(AuthCode) (AuthCode, error), opts ...WriteOption) (AuthCode, error)
	// CreateDeviceCode stores a new device code, or returns a
	// *ConflictError (Field "userCode") if a live one has its user code.
	CreateDeviceCode(ctx context.Context, c DeviceCode, opts ...WriteOption) error
	// UpdateDeviceCode finds the device code whose hash is hash (or
	// returns ErrNotFound) and replaces it with what fn returns, as
	// UpdateAuthCode does. Changing the ID, the hash or the user code is
	// an error.
	UpdateDeviceCode(ctx context.Context, hash []byte, fn func(DeviceCode) (DeviceCode, error), opts ...WriteOption) (DeviceCode, error)
	// UpdateDeviceCodeByUserCode is UpdateDeviceCode by user code, among
	// the codes not expired at now; ErrNotFound if none.
	UpdateDeviceCodeByUserCode(ctx context.Context, userCode string, now time.Time, fn func(DeviceCode) (DeviceCode, error), opts ...WriteOption) (DeviceCode, error)
	// PurgeOAuthGrants deletes the authorization and device codes that
	// expired before t, and returns how many.
	PurgeOAuthGrants(ctx context.Context, before time.Time) (int, error)
}
