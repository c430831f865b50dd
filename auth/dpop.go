package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether"
	"tether/device"
	"tether/storage"
)

// Proof-of-possession errors (API.md section 4; RFC 9449).
var (
	ErrProofRequired = tether.NewError(tether.CodeProofRequired, "a DPoP proof signed by the handset's key is required")
	ErrProofInvalid  = tether.NewError(tether.CodeProofInvalid, "the DPoP proof is not valid")
)

// DeviceProof is the proof-of-possession policy.
type DeviceProof string

// The policies: no proofs at all; proofs from every handset that has an
// enrolled key; proofs from every handset, so a handset without a key
// cannot log in.
const (
	ProofOff      DeviceProof = "off"
	ProofOptional DeviceProof = "optional"
	ProofRequired DeviceProof = "required"
)

// Proof is what a request carries for proof of possession: its DPoP
// header, and the method and URL the proof must name.
type Proof struct {
	JWT    string
	Method string
	URL    string
}

type proofKey struct{}

// WithProof returns ctx carrying the request's proof, for Login, Refresh,
// Renew and Authenticate to check.
func WithProof(ctx context.Context, p Proof) context.Context {
	return context.WithValue(ctx, proofKey{}, p)
}

func proofOf(ctx context.Context) (Proof, bool) {
	p, ok := ctx.Value(proofKey{}).(Proof)
	return p, ok && p.JWT != ""
}

// dpopClaims are a proof's claims (RFC 9449 section 4.2).
type dpopClaims struct {
	jwt.RegisteredClaims
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	Nonce string `json:"nonce,omitempty"`
	ATH   string `json:"ath,omitempty"`
}

// How old and how far ahead a proof's iat may be, and the longest jti.
const (
	proofMaxAge = 60 * time.Second
	proofSkew   = 5 * time.Second
	maxJTI      = 256
	maxProofLen = 8 << 10
	// maxReplays bounds the replay cache: at a proof per request, room for
	// about 3,000 requests a second within a proof's life, in about 50 MiB.
	maxReplays = 200_000
)

// checkedProof is a proof whose signature, method, URL, age and access
// token hash passed: its key's thumbprint, and its jti for the replay
// check once the key is known to be the handset's.
type checkedProof struct {
	jkt   string
	jti   string
	iat   time.Time
	nonce string
}

var errReplayed = proofError("the proof was used before: make a new one for each request")

// ErrUseNonce is the proof_invalid of a proof without the server's current
// nonce (Config.DPoPNonce): the client retries with the nonce of the
// DPoP-Nonce header. It matches ErrProofInvalid too.
var ErrUseNonce error = &nonceError{tether.NewError(tether.CodeProofInvalid, "the DPoP proof is not valid: use the nonce in the DPoP-Nonce header of this answer")}

type nonceError struct{ err *tether.Error }

func (e *nonceError) Error() string { return e.err.Error() }
func (e *nonceError) Unwrap() error { return e.err }

// proofError is ErrProofInvalid saying why; the reasons quote only what
// the client sent.
func proofError(format string, args ...any) error {
	return tether.NewError(tether.CodeProofInvalid, "the DPoP proof is not valid: "+fmt.Sprintf(format, args...))
}

// verifyProof checks a DPoP proof's form, signature, method, URL and age,
// and, when accessToken is not empty, that it is bound to that token
// (ath).
func verifyProof(p Proof, accessToken string, now time.Time) (checkedProof, error) {
	if len(p.JWT) > maxProofLen {
		return checkedProof{}, proofError("the proof is too long")
	}
	var key device.PublicJWK
	claims := &dpopClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256", "EdDSA"})).ParseWithClaims(p.JWT, claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != "dpop+jwt" {
			return nil, errors.New(`typ is not "dpop+jwt"`)
		}
		raw, err := json.Marshal(t.Header["jwk"])
		if err != nil || t.Header["jwk"] == nil {
			return nil, errors.New("no jwk in the header")
		}
		k, pub, err := device.ParseJWK(raw)
		if err != nil {
			return nil, errors.New("the jwk in the header is not a public P-256 or Ed25519 key")
		}
		if t.Method.Alg() != k.Alg() {
			return nil, fmt.Errorf("alg %s does not suit the key", t.Method.Alg())
		}
		key = k
		return pub, nil
	})
	if err != nil {
		return checkedProof{}, proofError("%s", strings.TrimPrefix(err.Error(), "token is unverifiable: error while executing keyfunc: "))
	}
	switch {
	case claims.HTM != p.Method:
		return checkedProof{}, proofError("htm %q is not this request's method %s", claims.HTM, p.Method)
	case !sameURL(claims.HTU, p.URL):
		return checkedProof{}, proofError("htu %q is not this request's URL %s", claims.HTU, p.URL)
	case claims.IssuedAt == nil:
		return checkedProof{}, proofError("no iat")
	case claims.IssuedAt.Before(now.Add(-proofMaxAge)):
		return checkedProof{}, proofError("iat is more than %s ago: make a new proof for each request", proofMaxAge)
	case claims.IssuedAt.After(now.Add(proofSkew)):
		return checkedProof{}, proofError("iat is in the future: check the handset's clock")
	case claims.ID == "" || len(claims.ID) > maxJTI:
		return checkedProof{}, proofError("jti must be a unique value of at most %d characters", maxJTI)
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if subtle.ConstantTimeCompare([]byte(claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return checkedProof{}, proofError("ath is not the hash of the access token sent")
		}
	}
	return checkedProof{jkt: key.Thumbprint(), jti: claims.ID, iat: claims.IssuedAt.Time, nonce: claims.Nonce}, nil
}

// sameURL compares an htu with the request's URL as RFC 9449 asks: scheme
// and host without case, default ports dropped, no query or fragment.
func sameURL(htu, want string) bool {
	a, errA := normalURL(htu)
	b, errB := normalURL(want)
	return errA == nil && errB == nil && a == b
}

func normalURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", errors.New("not an absolute URL")
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// replayCache remembers the proofs seen (key thumbprint and jti) for as
// long as they could be accepted, so each is used once. It holds at most
// max entries; when full of live entries it refuses new ones, which only
// handsets with enrolled keys can make (a proof is recorded only once its
// key is known to be the handset's).
type replayCache struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	order []replayEntry
	max   int
}

type replayEntry struct {
	key     string
	expires time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seen: make(map[string]time.Time), max: max}
}

// use records a proof; it reports false if the proof was seen before, or
// the cache is full.
func (c *replayCache) use(jkt, jti string, iat, now time.Time) bool {
	key := jkt + "." + jti
	c.mu.Lock()
	defer c.mu.Unlock()
	// Entries expire in the order they were made, near enough: drop the
	// expired ones from the front.
	i := 0
	for ; i < len(c.order) && !c.order[i].expires.After(now); i++ {
		if c.seen[c.order[i].key] == c.order[i].expires {
			delete(c.seen, c.order[i].key)
		}
	}
	c.order = c.order[i:]
	if exp, ok := c.seen[key]; ok && exp.After(now) {
		return false
	}
	if len(c.seen) >= c.max {
		return false
	}
	// Kept until the proof's iat is too old to be accepted.
	exp := iat.Add(proofMaxAge + proofSkew)
	c.seen[key] = exp
	c.order = append(c.order, replayEntry{key, exp})
	return true
}

// Len is how many proofs the cache holds.
func (c *replayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// requireProof checks the request's proof against the key thumbprint jkt
// the handset or session is bound to, and uses it up. accessToken is the
// token the proof must be bound to (ath), or empty.
func (s *Service) requireProof(ctx context.Context, jkt, accessToken string) error {
	p, ok := proofOf(ctx)
	if !ok {
		return ErrProofRequired
	}
	now := s.now()
	cp, err := verifyProof(p, accessToken, now)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(cp.jkt), []byte(jkt)) != 1 {
		return proofError("the proof is signed by another key than the handset's")
	}
	if s.cfg.DPoPNonce && !s.validNonce(cp.nonce) {
		return ErrUseNonce
	}
	if !s.replays.use(cp.jkt, cp.jti, cp.iat, now) {
		return errReplayed
	}
	// Instances sharing a database remember proofs there too, so a proof
	// used on one is refused on the others.
	if ledger, ok := s.store.(storage.ProofLedger); ok {
		fresh, err := ledger.UseProof(ctx, cp.jkt+"."+cp.jti, now, cp.iat.Add(proofMaxAge+proofSkew))
		if err != nil {
			return fmt.Errorf("record the proof: %w", err)
		}
		if !fresh {
			return errReplayed
		}
	}
	return nil
}

// bindingOf is the key thumbprint a handset's uses must be proven with,
// under the policy: its enrolled key's, or none.
func (s *Service) bindingOf(d *storage.Device) string {
	if d == nil || d.Key == nil || s.proofPolicy(d) == ProofOff {
		return ""
	}
	return d.Key.Thumbprint
}

// proveLogin checks, under the policy, that a login from handset d is
// signed by the handset's key, and returns the key thumbprint its session
// is bound to ("" for none). A key the payload offers is enrolled at the
// handset's first login with one (once the proof shows the handset holds
// it, and its attestation, if any, checks out); a key other than the
// enrolled one is refused: replacing a key is a manager's action.
func (s *Service) proveLogin(ctx context.Context, user storage.User, d *storage.Device, p device.Payload) (string, error) {
	if d == nil {
		return "", nil
	}
	policy := s.proofPolicy(d)
	if policy == ProofOff {
		return "", nil
	}
	bound := s.bindingOf(d)
	// The enrolled key offered again (as an app may on every login) is
	// not enrolled anew, nor its attestation checked again.
	offered, err := s.offeredKey(ctx, p, "user:"+user.ID, bound)
	if err != nil {
		return "", err
	}
	switch {
	case offered != nil && bound != "" && offered.Thumbprint != bound:
		return "", proofError("the handset offers another key than the one enrolled for it: a manager must replace it")
	case offered != nil && bound == "":
		bound = offered.Thumbprint
	case offered != nil:
		offered = nil // the enrolled key, offered again
	}
	if bound == "" {
		if policy == ProofRequired {
			return "", tether.NewError(tether.CodeProofRequired, "this server requires every handset to enroll a key held in its secure hardware: send publicKey with a DPoP proof")
		}
		return "", nil
	}
	if err := s.requireProof(ctx, bound, ""); err != nil {
		return "", err
	}
	if offered == nil {
		return bound, nil
	}
	// The first key: recorded on the handset before the session that is
	// bound to it.
	ev := s.event(ctx, "device.key_enrolled", "success")
	ev.Actor, ev.UserID, ev.Username, ev.DeviceID = "user:"+user.ID, user.ID, user.Username, d.ID
	ev.Detail = keyDetail(offered)
	updated, err := s.store.UpdateDevice(ctx, d.ID, func(cur storage.Device) (storage.Device, error) {
		if cur.Key != nil && cur.Key.Thumbprint != offered.Thumbprint {
			return cur, proofError("the handset offers another key than the one enrolled for it: a manager must replace it")
		}
		cur.Key = offered
		return cur, nil
	}, storage.WithEvents(ev))
	if err != nil {
		return "", err
	}
	s.written(ev)
	*d = updated
	return bound, nil
}

// offeredKey reads the key a payload offers, with its attestation checked
// (and required, under Config.RequireAttestation) unless it is the key of
// thumbprint enrolled; nil when it offers none.
func (s *Service) offeredKey(ctx context.Context, p device.Payload, by, enrolled string) (*storage.DeviceKey, error) {
	if !p.OffersKey() {
		if len(p.Attestation) > 0 {
			return nil, tether.Invalid("device.attestation", "attestation_without_key", "an attestation comes with the publicKey it attests")
		}
		return nil, nil
	}
	k, pub, err := device.KeyOf(p.PublicKey, by, s.now())
	var ve *tether.ValidationError
	if errors.As(err, &ve) {
		for i := range ve.Fields {
			ve.Fields[i].Field = "device." + ve.Fields[i].Field
		}
	}
	if err != nil {
		return nil, err
	}
	if enrolled != "" && k.Thumbprint == enrolled {
		return k, nil
	}
	if k.Attestation, err = s.attest(ctx, p, pub); err != nil {
		return nil, err
	}
	return k, nil
}

// keyDetail is what the audit trail records of a key.
func keyDetail(k *storage.DeviceKey) map[string]string {
	d := map[string]string{"thumbprint": k.Thumbprint}
	if a := k.Attestation; a != nil {
		d["securityLevel"], d["verifiedBootState"] = a.SecurityLevel, a.VerifiedBootState
	}
	return d
}

// proveUse checks, under the policy, that a refresh or renewal of sess is
// signed by the key the session is bound to (or, for a session opened
// before its handset had a key, by that key, which binds the session from
// now on), and returns the thumbprint the new tokens are bound to.
func (s *Service) proveUse(ctx context.Context, sess storage.Session, dev *storage.Device) (string, error) {
	if clientBound(sess, dev) {
		// An OAuth client's own key: the handset policy does not govern
		// it, the client chose it.
		if err := s.requireProof(ctx, sess.JKT, ""); err != nil {
			return "", err
		}
		return sess.JKT, nil
	}
	policy := s.proofPolicy(dev)
	if policy == ProofOff {
		return "", nil
	}
	bound := sess.JKT
	if bound == "" {
		bound = s.bindingOf(dev)
	}
	if bound == "" {
		if policy == ProofRequired && sess.DeviceID != "" {
			return "", tether.NewError(tether.CodeProofRequired, "this server requires every handset to enroll a key held in its secure hardware: log in again with publicKey and a DPoP proof")
		}
		return "", nil
	}
	if err := s.requireProof(ctx, bound, ""); err != nil {
		return "", err
	}
	return bound, nil
}

// clientBound reports whether sess is bound to an OAuth client's own DPoP
// key (RFC 9449) rather than to its handset's enrolled key: such a binding
// holds whatever the handset proof policy is.
func clientBound(sess storage.Session, dev *storage.Device) bool {
	return sess.ClientID != "" && sess.JKT != "" && (dev == nil || dev.Key == nil || dev.Key.Thumbprint != sess.JKT)
}

// Server nonces (RFC 9449 section 8): with Config.DPoPNonce, proofs must
// carry a nonce the server handed out in a DPoP-Nonce header within the
// last nonceWindow or the one before. A nonce holds its window and a MAC
// under a key derived from the active signing key, so every instance
// sharing the keys issues and accepts the same ones, with nothing stored.
const nonceWindow = 5 * time.Minute

// Nonce is the server nonce to hand out now.
func (s *Service) Nonce() string {
	return s.nonceFor(s.keys.activeSeed(), s.now().Unix()/int64(nonceWindow/time.Second))
}

func (s *Service) nonceFor(seed []byte, window int64) string {
	body := binary.BigEndian.AppendUint64(nil, uint64(window))
	return base64.RawURLEncoding.EncodeToString(append(body, s.keys.challengeMAC(append([]byte("nonce\x00"), seed...), body)...))
}

// CheckNonce is ErrUseNonce for a request whose DPoP proof, otherwise
// well formed, lacks a live server nonce (Config.DPoPNonce); nil for any
// other request, even one whose proof is bad in another way: that is for
// the full check. A grant that uses something up (an authorization code)
// asks first, so that the client's retry with the nonce (RFC 9449
// section 8) still finds it unused.
func (s *Service) CheckNonce(ctx context.Context) error {
	if !s.cfg.DPoPNonce {
		return nil
	}
	p, ok := proofOf(ctx)
	if !ok {
		return nil
	}
	cp, err := verifyProof(p, "", s.now())
	if err != nil || s.validNonce(cp.nonce) {
		return nil
	}
	return ErrUseNonce
}

// validNonce reports whether n is a nonce of this window or the last one.
func (s *Service) validNonce(n string) bool {
	now := s.now().Unix() / int64(nonceWindow/time.Second)
	for _, seed := range s.keys.seeds() {
		for _, w := range []int64{now, now - 1} {
			if subtle.ConstantTimeCompare([]byte(n), []byte(s.nonceFor(seed, w))) == 1 {
				return true
			}
		}
	}
	return false
}

// proofPolicy is the policy for a handset: its group's, if the group has
// one of its own (Config.DeviceProofGroups), else the server's.
func (s *Service) proofPolicy(d *storage.Device) DeviceProof {
	if d != nil {
		if p, ok := s.cfg.DeviceProofGroups[d.Group]; ok {
			return p
		}
	}
	return s.cfg.DeviceProof
}
