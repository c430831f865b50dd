package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/storage"
)

// What the OAuth provider (oauth/) needs of tokens and sessions beyond a
// login and a refresh: the tokens of client_credentials, which name a
// client and no session; verifying its own ID tokens; ending a client's
// session on the client's word.

// ClientClaims are the claims of a client_credentials access token (RFC
// 9068): the client is its subject; there is no session, person or
// handset.
type ClientClaims struct {
	Claims
}

// ClientToken signs a client_credentials access token for clientID,
// bound to the DPoP key jkt if not empty, living the access lifetime.
func (s *Service) ClientToken(ctx context.Context, clientID, jkt string) (string, time.Time, error) {
	if s.cfg.OAuthIssuer == "" {
		return "", time.Time{}, errors.New("client token: no OAuth issuer")
	}
	if err := s.keys.sync(ctx); err != nil {
		return "", time.Time{}, err
	}
	now := s.now().UTC()
	exp := now.Add(s.cfg.AccessTTL)
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.OAuthIssuer, Subject: clientID, Audience: jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), ID: newJTI(),
		},
		ClientID: clientID,
	}
	if jkt != "" {
		c.Cnf = &Confirmation{JKT: jkt}
	}
	tok, err := s.SignJWT(c, s.cfg.TokenAlg, map[string]any{"typ": "at+jwt"})
	return tok, exp, err
}

// ParseClientToken verifies a client_credentials access token: signed by
// a live key of ours in its own algorithm, from the OAuth issuer, for the
// audience, live, its subject its client, and no session.
func (s *Service) ParseClientToken(ctx context.Context, raw string) (*ClientClaims, error) {
	if len(raw) == 0 || len(raw) > 4096 || s.cfg.OAuthIssuer == "" {
		return nil, ErrTokenInvalid
	}
	var c ClientClaims
	if err := s.verify(ctx, raw, &c.Claims, jwt.WithIssuer(s.cfg.OAuthIssuer), jwt.WithAudience(s.cfg.Audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(s.now)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	switch {
	case c.ClientID == "" || c.Subject != c.ClientID || c.SID != "" || c.ID == "":
		return nil, fmt.Errorf("%w: not a client token", ErrTokenInvalid)
	case c.ExpiresAt.Sub(c.IssuedAt.Time) > s.cfg.AccessTTL+time.Second:
		return nil, fmt.Errorf("%w: lives longer than the access lifetime", ErrTokenInvalid)
	}
	return &c, nil
}

// VerifyJWT checks that raw is signed by a live key of this server, with
// the key's own algorithm, and reads its claims into claims; the claims
// themselves (times included) are the caller's to check. It is how the
// OAuth provider reads back its ID tokens (id_token_hint).
func (s *Service) VerifyJWT(ctx context.Context, raw string, claims jwt.Claims) error {
	if len(raw) == 0 || len(raw) > 8192 {
		return ErrTokenInvalid
	}
	return s.verify(ctx, raw, claims, jwt.WithoutClaimsValidation())
}

// verify checks raw's signature against the key its kid names, in that
// key's algorithm only.
func (s *Service) verify(ctx context.Context, raw string, claims jwt.Claims, opts ...jwt.ParserOption) error {
	opts = append(opts, jwt.WithValidMethods(Algorithms()))
	_, err := jwt.NewParser(opts...).ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		_, pub, err := s.keyOf(ctx, t)
		return pub, err
	})
	return err
}

// RevokeToken ends the session of an OAuth client's refresh or access
// token, on that client's word (RFC 7009). A token that is not valid, not
// a session's, or another client's changes nothing and is no error: the
// client is told nothing about tokens that are not its own.
func (s *Service) RevokeToken(ctx context.Context, clientID, raw string) error {
	sessionID := ""
	if _, b, err := s.refreshSession(ctx, raw); err == nil {
		sessionID = b.Session.ID
		if subtle.ConstantTimeCompare([]byte(b.Session.ClientID), []byte(clientID)) != 1 {
			return nil
		}
	} else if c, err := s.parseAccess(ctx, raw, true); err == nil {
		if subtle.ConstantTimeCompare([]byte(c.ClientID), []byte(clientID)) != 1 {
			return nil
		}
		sessionID = c.SID
	}
	if sessionID == "" {
		return nil
	}
	err := s.EndClientSession(ctx, sessionID, clientID, "")
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, errOtherClient) {
		return nil
	}
	return err
}

var errOtherClient = fmt.Errorf("%w: the session is another client's", ErrTokenInvalid)

// EndClientSession ends session id, which must be clientID's and, if sub
// is not empty, that user's (RP-initiated logout names both from an ID
// token). Ending an ended session is no error.
func (s *Service) EndClientSession(ctx context.Context, id, clientID, sub string) error {
	sess, err := s.store.GetSession(ctx, id)
	if err != nil {
		return err
	}
	if sess.ClientID != clientID || (sub != "" && sess.UserID != sub) {
		return errOtherClient
	}
	return s.EndSession(ctx, id, "revoked_by_client")
}
