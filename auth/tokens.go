package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/internal/codec"
	"tether/storage"
)

// Claims are the claims of an access token (API.md section 4).
type Claims struct {
	jwt.RegisteredClaims
	// SID is the session id, and Role its user's role: both absent from a
	// client's own token (client_credentials), which has no session.
	SID string `json:"sid,omitempty"`
	// DID is the device id; absent for tokens issued without a handset.
	DID  string       `json:"did,omitempty"`
	Role storage.Role `json:"role,omitempty"`
	// Cnf binds the token to a handset key (RFC 9449 section 6.1): it is
	// used only with a DPoP proof signed by the key of that thumbprint.
	Cnf *Confirmation `json:"cnf,omitempty"`
	// ClientID and Scope are set on the tokens of an OAuth client's
	// session (RFC 9068 section 2.2), with AuthTime.
	ClientID string `json:"client_id,omitempty"`
	Scope    string `json:"scope,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
	// AMR is how the person signed in (RFC 8176): ["pwd"], or with a
	// second factor ["pwd","otp"], ["pwd","recovery"], or with a passkey
	// ["pwd","hwk"] or ["pwd","swk"].
	AMR []string `json:"amr,omitempty"`

	// kid is the id of the key the token was verified with.
	kid string
}

// Confirmation is the cnf claim of a key-bound token.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// signAccess makes an access token for a session, signed with the key of
// Config.TokenAlg.
func (s *Service) signAccess(sess storage.Session, role storage.Role, jti string, iat, exp time.Time) (string, error) {
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   sess.UserID,
			Audience:  jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        jti,
		},
		SID:  sess.ID,
		DID:  sess.DeviceID,
		Role: role,
		AMR:  SessionAMR(sess),
	}
	if sess.JKT != "" {
		claims.Cnf = &Confirmation{JKT: sess.JKT}
	}
	if sess.ClientID == "" {
		return s.SignJWT(claims, s.cfg.TokenAlg, nil)
	}
	// An OAuth client's: a JWT access token of RFC 9068, from the OpenID
	// provider's issuer.
	claims.Issuer, claims.ClientID, claims.Scope = s.cfg.OAuthIssuer, sess.ClientID, sess.Scope
	claims.AuthTime = sess.AuthTime.Unix()
	return s.SignJWT(claims, s.cfg.TokenAlg, map[string]any{"typ": "at+jwt"})
}

// SessionAMR is how the person behind a session signed in: a session
// from before Tether kept it was opened with a password.
func SessionAMR(sess storage.Session) []string {
	if len(sess.AMR) == 0 {
		return []string{AMRPassword}
	}
	return sess.AMR
}

// SignJWT signs claims with this server's active key of alg (EdDSA, ES256
// or RS256; see Algorithms), naming the key in the "kid" header: a token
// anyone can verify with the JWKS (KeySet.JWKS). header adds members to
// the JOSE header, such as "typ"; it cannot set "alg" or "kid". An
// algorithm of no key is ErrUnsupportedAlgorithm.
//
// It is for tokens other than access tokens, such as OpenID Connect ID
// tokens in the algorithm each client asks for. They verify with the same
// keys as access tokens, so they must not pass for one: access tokens
// carry Config.Audience in "aud" (and "sid", "sub" and "jti"), so give
// them another audience, such as the client's id. It signs with the keys
// this server knows, reading nothing: after another instance revoked the
// keys, it signs with the new ones once this server has caught up, as
// every login, refresh and session read here makes it do; sign after one.
func (s *Service) SignJWT(claims jwt.Claims, alg string, header map[string]any) (string, error) {
	kid, key, method := s.keys.signer(alg)
	if kid == "" {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, alg)
	}
	h := map[string]any{"alg": method.Alg(), "typ": "JWT"}
	for name, v := range header {
		if name == "alg" || name == "kid" {
			return "", fmt.Errorf("sign token: the %q header is the key's", name)
		}
		h[name] = v
	}
	h["kid"] = kid
	// What jwt.Token.SignedString does, with the codec the stores use for
	// JSON (about twice as fast as encoding/json, which a renewal felt).
	hj, err := codec.Encode(h)
	if err != nil {
		return "", fmt.Errorf("sign token: header: %w", err)
	}
	cj, err := codec.Encode(claims)
	if err != nil {
		return "", fmt.Errorf("sign token: claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signing := make([]byte, 0, enc.EncodedLen(len(hj))+enc.EncodedLen(len(cj))+1)
	signing = enc.AppendEncode(signing, hj)
	signing = append(signing, '.')
	signing = enc.AppendEncode(signing, cj)
	sig, err := method.Sign(string(signing), key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signing) + "." + enc.EncodeToString(sig), nil
}

// parseAccess verifies an access token's signature and claims. With
// allowExpired it accepts a token past its expiry (for renewal), leaving the
// time checks to the caller. Only a key of ours verifies, and only with
// its own algorithm: whatever the token's header says, a token of an
// ES256 key verifies as ES256 or not at all; "none", HMAC and unknown key
// ids are refused.
func (s *Service) parseAccess(ctx context.Context, raw string, allowExpired bool) (*Claims, error) {
	if len(raw) == 0 || len(raw) > 4096 {
		return nil, ErrTokenInvalid
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(Algorithms()),
		jwt.WithAudience(s.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
	}
	if allowExpired {
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	var claims Claims
	_, err := jwt.NewParser(opts...).ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, pub, err := s.keyOf(ctx, t)
		claims.kid = kid
		return pub, err
	})
	switch {
	case err == nil:
	case !allowExpired && errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %w", ErrTokenExpired, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if allowExpired {
		// Claims validation was off: check what it would have, but expiry.
		if !audienceHas(claims.Audience, s.cfg.Audience) || claims.ExpiresAt == nil {
			return nil, fmt.Errorf("%w: issuer, audience or expiry wrong", ErrTokenInvalid)
		}
	}
	if err := s.checkClaims(&claims); err != nil {
		return nil, err
	}
	return &claims, nil
}

// checkClaims checks what parseAccess checks of a token's claims besides
// its signature, audience and expiry.
func (s *Service) checkClaims(claims *Claims) error {
	if claims.SID == "" || claims.Subject == "" || claims.ID == "" {
		return fmt.Errorf("%w: missing sid, sub or jti", ErrTokenInvalid)
	}
	// The native API's tokens come from Issuer, OAuth clients' from the
	// OAuth issuer: each kind from its own.
	if want := s.issuerOf(claims.ClientID); want == "" || claims.Issuer != want {
		return fmt.Errorf("%w: issuer %q", ErrTokenInvalid, truncate(claims.Issuer, 64))
	}
	// No token of ours lives longer than the access lifetime, or was
	// issued in the future: one that claims to was not made here, whatever
	// key signed it.
	switch iat := claims.IssuedAt; {
	case iat == nil:
		return fmt.Errorf("%w: no iat", ErrTokenInvalid)
	case claims.ExpiresAt.Sub(iat.Time) > s.cfg.AccessTTL+time.Second:
		return fmt.Errorf("%w: lives %s, longer than the access lifetime", ErrTokenInvalid, claims.ExpiresAt.Sub(iat.Time))
	case iat.After(s.now().Add(maxClockSkew)):
		return fmt.Errorf("%w: issued in the future", ErrTokenInvalid)
	}
	return nil
}

// accessHash is what a session keeps of an access token it issued: its
// SHA-256.
func accessHash(raw string) []byte {
	h := sha256.Sum256([]byte(raw))
	return h[:]
}

// vouches reports whether sess issued the access token raw, byte for byte:
// it is the latest, or the one the last renewal renewed. Then the token is
// the one this server signed, and its signature needs no check. A token
// changed in any byte, or signed by anyone else, is vouched for by no
// session.
func vouches(sess storage.Session, raw string) bool {
	if len(sess.AccessHash) != sha256.Size {
		return false
	}
	h := accessHash(raw)
	cur := subtle.ConstantTimeCompare(h, sess.AccessHash)
	prev := subtle.ConstantTimeCompare(h, sess.PrevAccessHash)
	return cur|prev == 1
}

// readAccess reads an access token's claims and key id without checking
// its signature, for a renewal: nothing read is believed until the
// token's session vouches for it (vouches), or its signature is checked.
func readAccess(raw string) (*Claims, error) {
	if len(raw) == 0 || len(raw) > 4096 {
		return nil, ErrTokenInvalid
	}
	// A JWS in compact form, read as jwt's ParseUnverified reads it, with
	// the stores' codec (a quarter of the time).
	header, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: not a signed token", ErrTokenInvalid)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims Claims
	if err := decodeSegment(header, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrTokenInvalid, err)
	}
	if !slices.Contains(Algorithms(), h.Alg) {
		return nil, fmt.Errorf("%w: algorithm %q", ErrTokenInvalid, h.Alg)
	}
	if err := decodeSegment(payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrTokenInvalid, err)
	}
	claims.kid = h.Kid
	if claims.SID == "" {
		return nil, fmt.Errorf("%w: no sid", ErrTokenInvalid)
	}
	return &claims, nil
}

// decodeSegment decodes one base64url segment of a compact JWS (unpadded,
// as jwt reads it) as JSON into v.
func decodeSegment(seg string, v any) error {
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return codec.Decode(data, v)
}

// keyOf is the key a token's kid names, if it is one of ours and the
// token's alg is that key's own (the algorithm pinned per key).
func (s *Service) keyOf(ctx context.Context, t *jwt.Token) (string, any, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok {
		return "", nil, errors.New("no key id")
	}
	alg, pub, ok := s.keys.verifier(ctx, kid)
	if !ok {
		return "", nil, fmt.Errorf("unknown key id %q", kid)
	}
	if t.Method == nil || t.Method.Alg() != alg {
		return "", nil, fmt.Errorf("algorithm %v for a %s key", t.Header["alg"], alg)
	}
	return kid, pub, nil
}

// issuerOf is the iss of the tokens of a session of clientID ("" for the
// native API).
func (s *Service) issuerOf(clientID string) string {
	if clientID != "" {
		return s.cfg.OAuthIssuer
	}
	return s.cfg.Issuer
}

// maxClockSkew is how far ahead of this server's clock another server
// sharing its store may be.
const maxClockSkew = 30 * time.Second

// keyCurrent checks that the key a token was verified with is still one of
// the store's, given the newest key id the store held when the token's
// session was read: a server that has not yet seen another's revocation
// reloads, and refuses the token if its key is gone.
func (s *Service) keyCurrent(ctx context.Context, c *Claims, newest string) error {
	if err := s.keys.catchUp(ctx, newest); err != nil {
		return err
	}
	if _, _, ok := s.keys.verifier(ctx, c.kid); !ok {
		return fmt.Errorf("%w: key %q revoked", ErrTokenInvalid, c.kid)
	}
	return nil
}

func audienceHas(aud jwt.ClaimStrings, want string) bool {
	for _, a := range aud {
		if a == want {
			return true
		}
	}
	return false
}

// RefreshPrefix starts every refresh token.
const RefreshPrefix = "rt_"

// A refresh token is "rt_" and base64url(family || secret): 16 bytes naming
// the session's token family, then 32 random bytes (256 bits) new at every
// rotation. The store keeps a SHA-256 of the family (to find the session)
// and of the whole token (to tell the current one from older ones).
const (
	familyLen = 16
	secretLen = 32
)

type refreshToken struct {
	raw    string
	family []byte
}

func newRefreshToken(family []byte) refreshToken {
	b := make([]byte, familyLen+secretLen)
	copy(b, family)
	rand.Read(b[familyLen:])
	return refreshToken{raw: RefreshPrefix + base64.RawURLEncoding.EncodeToString(b), family: family}
}

func parseRefreshToken(raw string) (refreshToken, error) {
	body, ok := strings.CutPrefix(raw, RefreshPrefix)
	if !ok || len(body) != base64.RawURLEncoding.EncodedLen(familyLen+secretLen) {
		return refreshToken{}, ErrTokenInvalid
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return refreshToken{}, ErrTokenInvalid
	}
	return refreshToken{raw: raw, family: b[:familyLen]}, nil
}

func (t refreshToken) hash() []byte { return sha256Sum(t.raw) }

func familyHash(family []byte) []byte { return sha256Sum(string(family)) }

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// replay is what a refresh answered, kept sealed so a retry within the grace
// gets the very same answer.
type replay struct {
	AccessToken      string    `json:"a"`
	AccessExpiresAt  time.Time `json:"ae"`
	RefreshToken     string    `json:"r"`
	RefreshExpiresAt time.Time `json:"re"`
}

// replayKey derives the key that seals a refresh's answer from the refresh
// token that asked for it: only its holder can open the answer again.
func replayKey(presented string) []byte {
	return sha256Sum("tether refresh replay\x00" + presented)
}

// renewReplayKey is replayKey for a renewal's answer and the access token
// that asked for it.
func renewReplayKey(presented string) []byte {
	return sha256Sum("tether renew replay\x00" + presented)
}

func seal(key []byte, v replay) ([]byte, error) {
	plain, err := codec.Encode(v)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plain, nil), nil
}

func open(key, sealed []byte) (replay, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return replay{}, err
	}
	if len(sealed) < gcm.NonceSize() {
		return replay{}, errors.New("sealed replay too short")
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
	if err != nil {
		return replay{}, err
	}
	var v replay
	err = codec.Decode(plain, &v)
	return v, err
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// randRead fills b with random bytes. crypto/rand.Read never fails: it
// crashes the program rather than hand out weak randomness.
func randRead(b []byte) { rand.Read(b) }

// newJTI returns a random token id.
func newJTI() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
