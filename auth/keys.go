package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"tether/storage"
)

// KeySet holds the Ed25519 keys that sign and verify access tokens. The keys
// live in the store, so every instance on one store signs and verifies
// alike; a KeySet caches them and reloads when it meets a key id it does not
// know (another instance rotated).
type KeySet struct {
	store  storage.SigningKeys
	now    func() time.Time
	master *MasterKey
	// life is how long a retired key keeps verifying: the longest a token
	// it signed can still be used or renewed.
	life time.Duration

	mu         sync.RWMutex
	activeID   string
	activePriv ed25519.PrivateKey
	public     map[string]ed25519.PublicKey
	// retired holds when each retired key was retired: it verifies until
	// life has passed since, checked at every use, not only at reloads.
	retired    map[string]time.Time
	published  []storage.SigningKey
	lastReload time.Time
	// allSeeds are the seeds of every key known, active first: attestation
	// challenges are made with the active one and checked with any.
	allSeeds [][]byte
	// newest is the id of the newest key known. Key ids sort by the time
	// they were made, so an unknown id after it is likely a key another
	// instance just made.
	newest string
	// catchingUp lets one request at a time reload for catchUp.
	catchingUp sync.Mutex
}

// Reloads caused by unknown key ids are limited, so tokens with made-up
// ids cannot turn into a flood of store reads: at most one every
// reloadEvery, or every reloadNewerEvery for an id newer than every key
// known (another instance rotated; its tokens must verify here at once).
const (
	reloadEvery      = 10 * time.Second
	reloadNewerEvery = 100 * time.Millisecond
)

// LoadKeys loads the signing keys, making the first one if the store has
// none. life is how long a retired key keeps verifying the tokens it signed
// (the access token lifetime plus the renewal window).
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
	if k.activeID == "" {
		if _, err := k.Rotate(ctx); err != nil {
			return nil, fmt.Errorf("first signing key: %w", err)
		}
	}
	return k, nil
}

// Rotate makes a new signing key: tokens signed from now on use it, and the
// old keys verify what they signed until their life runs out. It returns
// the new key's id.
func (k *KeySet) Rotate(ctx context.Context, opts ...storage.WriteOption) (string, error) {
	return k.replace(ctx, "rotate signing key", func(next storage.SigningKey) error {
		return k.store.RotateSigningKey(ctx, next, opts...)
	})
}

// Revoke makes a new signing key and deletes every other one at once: for
// a key that may have been stolen. Access tokens they signed stop
// verifying on every server sharing the store, at its next request for
// any session (see catchUp); sessions go on through their refresh tokens,
// which no signing key makes. It returns the new key's id.
func (k *KeySet) Revoke(ctx context.Context, opts ...storage.WriteOption) (string, error) {
	return k.replace(ctx, "revoke signing keys", func(next storage.SigningKey) error {
		return k.store.RevokeSigningKeys(ctx, next, opts...)
	})
}

// replace makes a new key, has write store it, and reloads.
func (k *KeySet) replace(ctx context.Context, what string, write func(storage.SigningKey) error) (string, error) {
	next, err := k.newKey()
	if err != nil {
		return "", err
	}
	if err := write(next); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := k.reload(ctx); err != nil {
		return "", err
	}
	return next.ID, nil
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

// newKey makes a key, sealed with the master key if there is one.
func (k *KeySet) newKey() (storage.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return storage.SigningKey{}, err
	}
	next := storage.SigningKey{
		ID:        storage.NewID(storage.PrefixKey),
		Private:   priv.Seed(),
		Public:    pub,
		CreatedAt: k.now().UTC(),
	}
	if k.master != nil {
		next.Private, next.Sealed = k.master.seal(next.Private, next.ID), true
	}
	return next, nil
}

// reload reads the keys from the store, and deletes the retired ones whose
// life has run out.
func (k *KeySet) reload(ctx context.Context) error {
	keys, err := k.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	now := k.now()
	public := make(map[string]ed25519.PublicKey, len(keys))
	retired := make(map[string]time.Time)
	var published []storage.SigningKey
	var activeID, newest string
	var activePriv ed25519.PrivateKey
	var seeds [][]byte
	for _, key := range keys {
		newest = max(newest, key.ID)
		if key.Sealed {
			if k.master == nil {
				return ErrSealed
			}
			seed, err := k.master.open(key.Private, key.ID)
			if err != nil {
				return fmt.Errorf("signing key %s: %w", key.ID, err)
			}
			key.Private = seed
		}
		if len(key.Private) != ed25519.SeedSize || len(key.Public) != ed25519.PublicKeySize {
			return fmt.Errorf("signing key %s is malformed", key.ID)
		}
		if !key.RetiredAt.IsZero() && now.Sub(key.RetiredAt) > k.life {
			if err := k.store.DeleteSigningKey(ctx, key.ID); err != nil {
				return fmt.Errorf("drop expired signing key %s: %w", key.ID, err)
			}
			continue
		}
		public[key.ID] = ed25519.PublicKey(key.Public)
		published = append(published, storage.SigningKey{ID: key.ID, Public: key.Public, CreatedAt: key.CreatedAt, RetiredAt: key.RetiredAt})
		if key.RetiredAt.IsZero() {
			activeID, activePriv = key.ID, ed25519.NewKeyFromSeed(key.Private)
			seeds = append([][]byte{key.Private}, seeds...)
		} else {
			seeds = append(seeds, key.Private)
			retired[key.ID] = key.RetiredAt
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.activeID, k.activePriv, k.public, k.published, k.lastReload, k.newest = activeID, activePriv, public, published, now, newest
	k.retired = retired
	k.allSeeds = seeds
	return nil
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

// signer returns the active key.
func (k *KeySet) signer() (string, ed25519.PrivateKey) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.activeID, k.activePriv
}

// verifier returns the public key with the given id, reloading once from
// the store when it is unknown (see reloadEvery).
func (k *KeySet) verifier(ctx context.Context, kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	pub, ok := k.public[kid]
	if at, wasRetired := k.retired[kid]; ok && wasRetired && k.now().Sub(at) > k.life {
		// Past its life: nothing it signed may be used any more, whether
		// or not a reload has dropped it yet.
		k.mu.RUnlock()
		return nil, false
	}
	since := k.now().Sub(k.lastReload)
	newer := len(kid) == len(k.newest) && strings.HasPrefix(kid, storage.PrefixKey) && kid > k.newest
	k.mu.RUnlock()
	if ok || (since <= reloadEvery && (!newer || since <= reloadNewerEvery)) {
		return pub, ok
	}
	if err := k.reload(ctx); err != nil {
		return nil, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	pub, ok = k.public[kid]
	return pub, ok
}

// JWK is one public key in a JSON Web Key Set (RFC 8037 for Ed25519).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns every key that may have signed a token still in use: the
// active one and the retired ones within their life.
func (k *KeySet) JWKS() []JWK {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]JWK, 0, len(k.published))
	now := k.now()
	for i := len(k.published) - 1; i >= 0; i-- { // newest first
		key := k.published[i]
		if !key.RetiredAt.IsZero() && now.Sub(key.RetiredAt) > k.life {
			continue
		}
		out = append(out, JWK{
			Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(key.Public),
			Kid: key.ID, Use: "sig", Alg: "EdDSA",
		})
	}
	return out
}

// activeSeed is the active key's seed.
func (k *KeySet) activeSeed() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.activePriv.Seed()
}

// seeds are the seeds of every key known, active first.
func (k *KeySet) seeds() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.allSeeds
}
