package oauth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/device"
	"tether/storage"
)

// ClientAuth is what a request to the token, revocation, introspection or
// device authorization endpoint carries to authenticate its client: the
// HTTP Basic credentials, if any, and the form.
type ClientAuth struct {
	// Basic is set when the request had an Authorization: Basic header;
	// BasicID and BasicSecret are its two halves, not yet form-decoded.
	Basic       bool
	BasicID     string
	BasicSecret string
	Form        url.Values
}

// AssertionType is the client_assertion_type of private_key_jwt (RFC 7523).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// errClient is the one answer to a client that failed to authenticate:
// unknown client, wrong secret and wrong method read the same.
func errClient(basic bool, cause error) *Error {
	return &Error{Code: CodeInvalidClient, Description: "client authentication failed", Basic: basic, Err: cause}
}

// single returns the one value of a form parameter; a parameter given
// twice is an error (RFC 6749 section 3.1 and 3.2).
func single(form url.Values, name string) (string, *Error) {
	v := form[name]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", oerrf(CodeInvalidRequest, "%s is given more than once", name)
}

// authenticateClient finds and authenticates the client of a request by
// the one method it used, which must be the method the client registered:
// a client with a secret cannot fall back to none, nor a private_key_jwt
// client to a secret. audience is the endpoint's URL, which a client
// assertion may name instead of the issuer.
func (p *Provider) authenticateClient(ctx context.Context, ca ClientAuth, audience string) (storage.OAuthClient, *Error) {
	formID, oe := single(ca.Form, "client_id")
	if oe != nil {
		return storage.OAuthClient{}, oe
	}
	formSecret, oe := single(ca.Form, "client_secret")
	if oe != nil {
		return storage.OAuthClient{}, oe
	}
	assertionType, oe := single(ca.Form, "client_assertion_type")
	if oe != nil {
		return storage.OAuthClient{}, oe
	}
	assertion, oe := single(ca.Form, "client_assertion")
	if oe != nil {
		return storage.OAuthClient{}, oe
	}
	methods := 0
	for _, used := range []bool{ca.Basic, formSecret != "", assertionType != "" || assertion != ""} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		return storage.OAuthClient{}, oerr(CodeInvalidRequest, "the request uses more than one client authentication method (RFC 6749 section 2.3)")
	}

	var (
		id, method, secret string
	)
	switch {
	case ca.Basic:
		method = AuthClientSecretBasic
		var err1, err2 error
		id, err1 = url.QueryUnescape(ca.BasicID)
		secret, err2 = url.QueryUnescape(ca.BasicSecret)
		if err1 != nil || err2 != nil {
			return storage.OAuthClient{}, errClient(true, errors.New("basic credentials not form-encoded"))
		}
		if formID != "" && formID != id {
			return storage.OAuthClient{}, oerr(CodeInvalidRequest, "client_id differs from the client that authenticated")
		}
	case assertionType != "" || assertion != "":
		method = AuthPrivateKeyJWT
		if assertionType != AssertionType || assertion == "" {
			return storage.OAuthClient{}, oerrf(CodeInvalidRequest, "client_assertion_type must be %s, with a client_assertion", AssertionType)
		}
		var err error
		if id, err = assertionIssuer(assertion); err != nil {
			return storage.OAuthClient{}, errClient(false, err)
		}
		if formID != "" && formID != id {
			return storage.OAuthClient{}, oerr(CodeInvalidRequest, "client_id differs from the client assertion's issuer")
		}
	case formSecret != "":
		method, id, secret = AuthClientSecretPost, formID, formSecret
	default:
		method, id = AuthNone, formID
	}
	if id == "" {
		return storage.OAuthClient{}, errClient(false, errors.New("no client_id"))
	}
	if len(id) > 128 {
		return storage.OAuthClient{}, errClient(ca.Basic, errors.New("client_id too long"))
	}
	c, err := p.store.GetOAuthClient(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		// Compare anyway, so an unknown client costs what a known one does.
		sameHash(hashSecret(secret), make([]byte, 32))
		return storage.OAuthClient{}, errClient(ca.Basic, fmt.Errorf("unknown client %q", truncate(id, 64)))
	}
	if err != nil {
		return storage.OAuthClient{}, fromAuth(err)
	}
	if c.TokenEndpointAuthMethod != method {
		return storage.OAuthClient{}, errClient(ca.Basic, fmt.Errorf("client %s registered %s, used %s", c.ID, c.TokenEndpointAuthMethod, method))
	}
	switch method {
	case AuthClientSecretBasic, AuthClientSecretPost:
		if !sameHash(c.SecretHash, hashSecret(secret)) {
			return storage.OAuthClient{}, errClient(ca.Basic, fmt.Errorf("client %s: wrong secret", c.ID))
		}
	case AuthPrivateKeyJWT:
		if err := p.checkAssertion(ctx, c, assertion, audience); err != nil {
			return storage.OAuthClient{}, errClient(false, err)
		}
	}
	return c, nil
}

// maxAssertionLife is the longest a client assertion may live: it is made
// for one request.
const maxAssertionLife = 5 * time.Minute

// assertionIssuer reads the iss of a client assertion without checking it
// yet, to know whose keys check it.
func assertionIssuer(raw string) (string, error) {
	if len(raw) > 8<<10 {
		return "", errors.New("client assertion too long")
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	if c.Issuer == "" || c.Issuer != c.Subject {
		return "", errors.New("client assertion: iss and sub must both be the client_id")
	}
	return c.Issuer, nil
}

// checkAssertion verifies a private_key_jwt client assertion (RFC 7523
// section 3, OpenID Connect Core section 9): signed by one of the
// client's keys, iss and sub the client, aud the issuer or the endpoint,
// short-lived, and its jti never seen before.
func (p *Provider) checkAssertion(ctx context.Context, c storage.OAuthClient, raw, endpoint string) error {
	keys, err := parseJWKS(c.JWKS)
	if err != nil {
		return err
	}
	var claims jwt.RegisteredClaims
	_, err = jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(p.now),
		jwt.WithLeeway(5*time.Second),
	).ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		// Every key that may have made it, tried in turn.
		kid, _ := t.Header["kid"].(string)
		var set jwt.VerificationKeySet
		for _, k := range keys {
			if k.alg == t.Method.Alg() && (kid == "" || k.kid == "" || k.kid == kid) {
				set.Keys = append(set.Keys, k.pub)
			}
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no key of the client for alg %s kid %q", t.Method.Alg(), kid)
		}
		return set, nil
	})
	if err != nil {
		return fmt.Errorf("client assertion: %w", err)
	}
	switch {
	case claims.Issuer != c.ID || claims.Subject != c.ID:
		return errors.New("client assertion: iss and sub must be the client_id")
	case !slices.ContainsFunc(claims.Audience, func(a string) bool { return a == p.cfg.Issuer || a == endpoint || a == p.Endpoint(PathToken) }):
		return errors.New("client assertion: aud is neither the issuer nor the endpoint")
	case claims.ID == "" || len(claims.ID) > 256:
		return errors.New("client assertion: no jti")
	case claims.ExpiresAt.Sub(p.now()) > maxAssertionLife:
		return errors.New("client assertion: lives longer than five minutes")
	}
	if !p.useAssertion(ctx, c.ID+"."+claims.ID, claims.ExpiresAt.Time) {
		return errors.New("client assertion: jti used before")
	}
	return nil
}

// useAssertion records a client assertion's jti until it expires, in the
// store's proof ledger where there is one (so a second server refuses it
// too), and in memory; false if it was there.
func (p *Provider) useAssertion(ctx context.Context, key string, exp time.Time) bool {
	now := p.now()
	p.mu.Lock()
	for k, e := range p.assertions {
		if e.Before(now) {
			delete(p.assertions, k)
		}
	}
	_, seen := p.assertions[key]
	if !seen {
		p.assertions[key] = exp.Add(5 * time.Second)
	}
	p.mu.Unlock()
	if seen {
		return false
	}
	if ledger, ok := p.store.(storage.ProofLedger); ok {
		fresh, err := ledger.UseProof(ctx, "client_assertion."+key, now, exp.Add(5*time.Second))
		if err != nil {
			p.log.ErrorContext(ctx, "record a client assertion", "error", err)
			return false
		}
		return fresh
	}
	return true
}

// clientKey is one public key of a private_key_jwt client.
type clientKey struct {
	kid string
	alg string
	pub crypto.PublicKey
}

// parseJWKS reads a client's key set: RSA keys of 2048 bits or more
// (RS256), P-256 (ES256) and Ed25519 (EdDSA). Keys for encryption or of
// other types are skipped; a key with private members refuses the set.
func parseJWKS(raw json.RawMessage) ([]clientKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, errors.New(`not a JSON Web Key Set ({"keys":[…]})`)
	}
	if len(set.Keys) > 20 {
		return nil, errors.New("more than 20 keys")
	}
	var out []clientKey
	for i, k := range set.Keys {
		var h struct {
			Kty, Kid, Use, Alg, N, E string
			D                        string `json:"d"`
			P                        string `json:"p"`
		}
		if err := json.Unmarshal(k, &h); err != nil {
			return nil, fmt.Errorf("key %d is not a JSON object", i)
		}
		if h.D != "" || h.P != "" {
			return nil, fmt.Errorf("key %d holds private members: register public keys only", i)
		}
		if h.Use != "" && h.Use != "sig" {
			continue
		}
		switch h.Kty {
		case "RSA":
			pub, err := rsaKey(h.N, h.E)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			out = append(out, clientKey{kid: h.Kid, alg: "RS256", pub: pub})
		case "EC", "OKP":
			jwk, pub, err := device.ParseJWK(k)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			out = append(out, clientKey{kid: h.Kid, alg: jwk.Alg(), pub: pub})
		}
	}
	return out, nil
}

func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err1 := base64.RawURLEncoding.DecodeString(n)
	eb, err2 := base64.RawURLEncoding.DecodeString(e)
	if err1 != nil || err2 != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("n and e must be base64url")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(new(big.Int).SetBytes(eb).Int64())}
	if pub.N.BitLen() < 2048 || pub.N.BitLen() > 8192 || pub.E < 3 || pub.E%2 == 0 {
		return nil, errors.New("an RSA key must have 2048 to 8192 bits and an odd exponent")
	}
	return pub, nil
}
