package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tether/storage"
)

// The signing algorithms, by their JOSE names (RFC 7518, RFC 8037). A
// KeySet holds an active key of each, so any token can be signed with any
// of them; Config.TokenAlg chooses the one access tokens are signed with.
const (
	// EdDSA is Ed25519: small, fast keys and signatures, but not every
	// resource server or gateway can verify it.
	EdDSA = "EdDSA"
	// ES256 is ECDSA with P-256 and SHA-256.
	ES256 = "ES256"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256, with 2048-bit keys: the
	// algorithm OpenID Connect requires every provider to offer.
	RS256 = "RS256"
)

// Algorithms returns the signing algorithms, EdDSA first.
func Algorithms() []string { return []string{EdDSA, ES256, RS256} }

// ErrUnsupportedAlgorithm is returned for a signing algorithm other than
// those of Algorithms.
var ErrUnsupportedAlgorithm = errors.New("unsupported signing algorithm: want EdDSA, ES256 or RS256")

// rsaBits is the size of new RSA keys. 2048 bits is what NIST (SP 800-57)
// accepts until 2030, and what most identity providers sign with; a key
// signs only until the next rotation. A 3072-bit signature costs three
// times as much (2.4 ms against 0.8 ms on the development machine), and
// every renewal signs one; a key takes five times as long to make.
const rsaBits = 2048

// KeySet holds the keys that sign and verify tokens: for each algorithm an
// active key that signs, and retired keys that verify what they signed
// until their life runs out. The keys live in the store, so every instance
// on one store signs and verifies alike; a KeySet caches them and reloads
// when it meets a key id it does not know (another instance rotated).
type KeySet struct {
	store  storage.SigningKeys
	now    func() time.Time
	master *MasterKey
	// life is how long a retired key keeps verifying: the longest a token
	// it signed can still be used or renewed.
	life time.Duration

	mu sync.RWMutex
	// active holds the active key of each algorithm.
	active map[string]*loadedKey
	// keys holds every key within its life, by id. A retired one verifies
	// until life has passed since it was retired, checked at every use,
	// not only at reloads.
	keys map[string]*loadedKey
	// published holds the same keys, newest first, for JWKS.
	published  []*loadedKey
	lastReload time.Time
	// allSeeds are the seeds of every Ed25519 key known, active first:
	// attestation challenges and DPoP nonces are made with the active one
	// and checked with any.
	allSeeds [][]byte
	// newest is the id of the newest key known. Key ids sort by the time
	// they were made, so an unknown id after it is likely a key another
	// instance just made.
	newest string
	// catchingUp lets one request at a time reload for catchUp.
	catchingUp sync.Mutex
}

// loadedKey is a stored key, opened and parsed. What is parsed never
// changes for an id, so reloads reuse it; only retiredAt moves.
type loadedKey struct {
	id        string
	alg       string
	public    crypto.PublicKey
	signer    crypto.Signer
	seed      []byte // Ed25519 keys only
	jwk       JWK
	retiredAt time.Time
}

// Reloads caused by unknown key ids are limited, so tokens with made-up
// ids cannot turn into a flood of store reads: at most one every
// reloadEvery, or every reloadNewerEvery for an id newer than every key
// known (another instance rotated; its tokens must verify here at once).
const (
	reloadEvery      = 10 * time.Second
	reloadNewerEvery = 100 * time.Millisecond
)

// LoadKeys loads the signing keys, making the active key of any algorithm
// that has none (every one in a new store; ES256 and RS256 in a store of
// an earlier version, which had EdDSA only). Instances starting together
// on one store make one key of each between them. life is how long a
// retired key keeps verifying the tokens it signed (the access token
// lifetime plus the renewal window).
//
// With a master key, keys are stored sealed, and keys found unsealed are
// sealed in place; without one, sealed keys cannot be used (ErrSealed).
func LoadKeys(ctx context.Context, store storage.SigningKeys, life time.Duration, now func() time.Time, master *MasterKey) (*KeySet, error) {
	k := &KeySet{store: store, now: now, life: life, master: master}
	if master != nil {
		if err := k.sealAll(ctx); err != nil {
			return nil, err
		}
	}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	var missing []storage.SigningKey
	for _, alg := range Algorithms() {
		if k.active[alg] != nil {
			continue
		}
		key, err := k.newKey(alg)
		if err != nil {
			return nil, err
		}
		missing = append(missing, key)
	}
	if len(missing) == 0 {
		return k, nil
	}
	// Another instance may be adding its own: the store keeps one of each
	// algorithm, and the reload takes whichever it kept.
	if err := store.AddMissingSigningKeys(ctx, missing); err != nil {
		return nil, fmt.Errorf("first signing keys: %w", err)
	}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	for _, alg := range Algorithms() {
		if k.active[alg] == nil {
			return nil, fmt.Errorf("no active %s signing key after adding one", alg)
		}
	}
	return k, nil
}

// Rotate makes a new signing key of every algorithm: tokens signed from
// now on use them, and the old keys verify what they signed until their
// life runs out. It returns the new keys' ids by algorithm.
func (k *KeySet) Rotate(ctx context.Context, opts ...storage.WriteOption) (map[string]string, error) {
	return k.replace(ctx, "rotate signing keys", func(next []storage.SigningKey) error {
		return k.store.RotateSigningKeys(ctx, next, opts...)
	})
}

// Revoke makes a new signing key of every algorithm and deletes every
// other key at once: for a key that may have been stolen. Access tokens
// they signed stop verifying on every server sharing the store, at its
// next request for any session (see catchUp); sessions go on through their
// refresh tokens, which no signing key makes. It returns the new keys' ids
// by algorithm.
func (k *KeySet) Revoke(ctx context.Context, opts ...storage.WriteOption) (map[string]string, error) {
	return k.replace(ctx, "revoke signing keys", func(next []storage.SigningKey) error {
		return k.store.RevokeSigningKeys(ctx, next, opts...)
	})
}

// replace makes a new key of every algorithm, has write store them (in one
// transaction), and reloads.
func (k *KeySet) replace(ctx context.Context, what string, write func([]storage.SigningKey) error) (map[string]string, error) {
	var next []storage.SigningKey
	ids := map[string]string{}
	for _, alg := range Algorithms() {
		key, err := k.newKey(alg)
		if err != nil {
			return nil, err
		}
		next = append(next, key)
		ids[alg] = key.ID
	}
	if err := write(next); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}

// sync is catchUp for a request that read no session: it asks the store
// which key is newest.
func (k *KeySet) sync(ctx context.Context) error {
	keys, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	newest := ""
	for _, key := range keys {
		newest = max(newest, key.ID)
	}
	return k.catchUp(ctx, newest)
}

// catchUp reloads the keys when newest, the newest key id the store held
// as a request's session was read, is not the newest this set knows:
// another server rotated or revoked. Of requests arriving together, one
// reloads.
func (k *KeySet) catchUp(ctx context.Context, newest string) error {
	known := func() bool {
		k.mu.RLock()
		defer k.mu.RUnlock()
		return newest == "" || newest == k.newest
	}
	if known() {
		return nil
	}
	k.catchingUp.Lock()
	defer k.catchingUp.Unlock()
	if known() {
		return nil
	}
	return k.reload(ctx)
}

// newKey makes a key of alg, sealed with the master key if there is one.
// Ed25519 keys are stored as their seed and public key, as they always
// were; the others as PKCS #8 and PKIX DER.
func (k *KeySet) newKey(alg string) (storage.SigningKey, error) {
	next := storage.SigningKey{ID: storage.NewID(storage.PrefixKey), Alg: alg, CreatedAt: k.now().UTC()}
	var priv crypto.Signer
	switch alg {
	case EdDSA:
		pub, p, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return storage.SigningKey{}, err
		}
		next.Private, next.Public = p.Seed(), pub
	case ES256:
		p, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return storage.SigningKey{}, err
		}
		priv = p
	case RS256:
		p, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return storage.SigningKey{}, err
		}
		priv = p
	default:
		return storage.SigningKey{}, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, alg)
	}
	if priv != nil {
		var err error
		if next.Private, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			return storage.SigningKey{}, err
		}
		if next.Public, err = x509.MarshalPKIXPublicKey(priv.Public()); err != nil {
			return storage.SigningKey{}, err
		}
	}
	if k.master != nil {
		next.Private, next.Sealed = k.master.seal(next.Private, next.ID), true
	}
	return next, nil
}

// reload reads the keys from the store, and deletes the retired ones whose
// life has run out. Of two active keys of one algorithm (instances that
// rotated at once on a store that let them), the newest signs.
func (k *KeySet) reload(ctx context.Context) error {
	stored, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	k.mu.RLock()
	cached := k.keys
	k.mu.RUnlock()
	now := k.now()
	keys := make(map[string]*loadedKey, len(stored))
	active := make(map[string]*loadedKey, len(Algorithms()))
	var published []*loadedKey
	var newest string
	for _, key := range stored {
		newest = max(newest, key.ID)
		if !key.RetiredAt.IsZero() && now.Sub(key.RetiredAt) > k.life {
			if err := k.store.DeleteSigningKey(ctx, key.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("drop expired signing key %s: %w", key.ID, err)
			}
			continue
		}
		lk, ok := cached[key.ID]
		if !ok || lk.alg != key.Algorithm() {
			if lk, err = k.load(key); err != nil {
				return err
			}
		}
		l := *lk
		l.retiredAt = key.RetiredAt
		lk = &l
		keys[lk.id] = lk
		published = append(published, lk)
		if lk.retiredAt.IsZero() {
			active[lk.alg] = lk
		}
	}
	slices.Reverse(published)
	var seeds [][]byte
	if a := active[EdDSA]; a != nil {
		seeds = append(seeds, a.seed)
	}
	for _, lk := range published {
		if lk.seed != nil && lk != active[EdDSA] {
			seeds = append(seeds, lk.seed)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.active, k.keys, k.published, k.lastReload, k.newest = active, keys, published, now, newest
	k.allSeeds = seeds
	return nil
}

// load opens (if sealed) and parses a stored key, and checks that it is
// whole: a private key that does not match its public one is refused.
func (k *KeySet) load(key storage.SigningKey) (*loadedKey, error) {
	if key.Sealed {
		if k.master == nil {
			return nil, ErrSealed
		}
		plain, err := k.master.open(key.Private, key.ID)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", key.ID, err)
		}
		key.Private = plain
	}
	malformed := func(why string) error {
		return fmt.Errorf("signing key %s (%s) is malformed: %s", key.ID, key.Algorithm(), why)
	}
	lk := &loadedKey{id: key.ID, alg: key.Algorithm()}
	switch lk.alg {
	case EdDSA:
		if len(key.Private) != ed25519.SeedSize || len(key.Public) != ed25519.PublicKeySize {
			return nil, malformed("want a 32-byte seed and public key")
		}
		priv := ed25519.NewKeyFromSeed(key.Private)
		if !bytes.Equal(priv.Public().(ed25519.PublicKey), key.Public) {
			return nil, malformed("the public key is not the seed's")
		}
		lk.public, lk.signer, lk.seed = ed25519.PublicKey(key.Public), priv, key.Private
	case ES256, RS256:
		pub, err := x509.ParsePKIXPublicKey(key.Public)
		if err != nil {
			return nil, malformed(err.Error())
		}
		p, err := x509.ParsePKCS8PrivateKey(key.Private)
		if err != nil {
			return nil, malformed(err.Error())
		}
		priv, ok := p.(crypto.Signer)
		if !ok {
			return nil, malformed(fmt.Sprintf("private key of type %T", p))
		}
		if eq, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
			return nil, malformed("the public key is not the private key's")
		}
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			if lk.alg != ES256 || pub.Curve != elliptic.P256() {
				return nil, malformed("want a P-256 key")
			}
		case *rsa.PublicKey:
			if lk.alg != RS256 || pub.N.BitLen() < 2048 {
				return nil, malformed("want an RSA key of at least 2048 bits")
			}
		default:
			return nil, malformed(fmt.Sprintf("public key of type %T", pub))
		}
		lk.public, lk.signer = pub, priv
	default:
		return nil, fmt.Errorf("signing key %s: %w: %q", key.ID, ErrUnsupportedAlgorithm, lk.alg)
	}
	jwk, err := toJWK(lk.id, lk.alg, lk.public)
	if err != nil {
		return nil, malformed(err.Error())
	}
	lk.jwk = jwk
	return lk, nil
}

// sealAll seals, in place, every key stored unsealed.
func (k *KeySet) sealAll(ctx context.Context) error {
	keys, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	for _, key := range keys {
		if key.Sealed {
			continue
		}
		key.Private, key.Sealed = k.master.seal(key.Private, key.ID), true
		if err := k.store.ReplaceSigningKey(ctx, key); err != nil {
			return fmt.Errorf("seal signing key %s: %w", key.ID, err)
		}
	}
	return nil
}

// Sealed reports whether new keys are stored sealed.
func (k *KeySet) Sealed() bool { return k.master != nil }

// signer returns the active key of alg, with the JWT signing method of its
// algorithm; an empty kid for an algorithm it has no key of.
func (k *KeySet) signer(alg string) (kid string, key crypto.Signer, method jwt.SigningMethod) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	a := k.active[alg]
	if a == nil {
		return "", nil, nil
	}
	return a.id, a.signer, jwt.GetSigningMethod(a.alg)
}

// verifier returns the algorithm and public key of the key with the given
// id, reloading once from the store when it is unknown (see reloadEvery).
// known reports whether kid names a key this server holds and may still
// verify with, reading nothing: a token of a session that vouches for it
// is used only while its key is, as its signature would be checked.
func (k *KeySet) known(kid string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.keys[kid]
	return ok && (key.retiredAt.IsZero() || k.now().Sub(key.retiredAt) <= k.life)
}

func (k *KeySet) verifier(ctx context.Context, kid string) (alg string, pub crypto.PublicKey, ok bool) {
	k.mu.RLock()
	key, ok := k.keys[kid]
	if ok && !key.retiredAt.IsZero() && k.now().Sub(key.retiredAt) > k.life {
		// Past its life: nothing it signed may be used any more, whether
		// or not a reload has dropped it yet.
		k.mu.RUnlock()
		return "", nil, false
	}
	since := k.now().Sub(k.lastReload)
	newer := len(kid) == len(k.newest) && strings.HasPrefix(kid, storage.PrefixKey) && kid > k.newest
	k.mu.RUnlock()
	if ok {
		return key.alg, key.public, true
	}
	if since <= reloadEvery && (!newer || since <= reloadNewerEvery) {
		return "", nil, false
	}
	if err := k.reload(ctx); err != nil {
		return "", nil, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if key, ok = k.keys[kid]; !ok {
		return "", nil, false
	}
	return key.alg, key.public, true
}

// JWK is one public key in a JSON Web Key Set (RFC 7517): members for
// Ed25519 (RFC 8037: kty OKP, crv, x), P-256 (kty EC, crv, x, y) or RSA
// (kty RSA, n, e), as its Kty says.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// toJWK is the JWK of a public key.
func toJWK(kid, alg string, pub crypto.PublicKey) (JWK, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	j := JWK{Kid: kid, Use: "sig", Alg: alg}
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(pub)
	case *ecdsa.PublicKey:
		// RFC 7518 section 6.2.1.2: the coordinates are the full size of
		// the curve's field, leading zeros kept.
		raw, err := pub.Bytes() // 0x04 || x || y
		if err != nil {
			return JWK{}, err
		}
		n := (len(raw) - 1) / 2
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64(raw[1:1+n]), b64(raw[1+n:])
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	default:
		return JWK{}, fmt.Errorf("no JWK for a key of type %T", pub)
	}
	return j, nil
}

// JWKS returns every key that may have signed a token still in use, newest
// first: the active key of each algorithm and the retired ones within
// their life.
func (k *KeySet) JWKS() []JWK {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]JWK, 0, len(k.published))
	now := k.now()
	for _, key := range k.published {
		if !key.retiredAt.IsZero() && now.Sub(key.retiredAt) > k.life {
			continue
		}
		out = append(out, key.jwk)
	}
	return out
}

// activeSeed is the active Ed25519 key's seed.
func (k *KeySet) activeSeed() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active[EdDSA].seed
}

// seeds are the seeds of every Ed25519 key known, active first.
func (k *KeySet) seeds() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.allSeeds
}
