// Package auth holds the rules about who may do what: password hashing,
// accounts and their roles, API keys, and (as they arrive) tokens, sessions,
// renewal, throttling and the audit events they emit. It knows nothing of
// HTTP or of a particular store.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters. They are stored in every hash, so
// raising them never breaks existing passwords.
type Params struct {
	// Memory in KiB.
	Memory  uint32
	Time    uint32
	Threads uint8
	KeyLen  uint32
	SaltLen uint32
}

// DefaultParams are the production costs: 64 MiB and three passes (RFC 9106
// section 4's second recommendation, with the threads this class of machine
// has).
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 2, KeyLen: 32, SaltLen: 16}

// Bounds on the parameters Verify accepts from a stored hash, so a corrupt or
// hostile record cannot make one login allocate gigabytes.
const (
	maxMemory  = 1 << 20 // 1 GiB
	maxTime    = 64
	maxKeyLen  = 128
	minKeyLen  = 16
	maxSaltLen = 64
	minSaltLen = 8
)

// Password length limits, in bytes of UTF-8.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

var errMalformedHash = errors.New("malformed password hash")

// Hasher hashes and verifies passwords with argon2id. At most one hash per
// CPU runs at a time, whatever asks for it (logins, new users, password
// changes): each takes Params.Memory, and a burst must not add up to more.
type Hasher struct {
	params Params
	slots  chan struct{}
}

// NewHasher returns a Hasher that makes new hashes with p.
func NewHasher(p Params) *Hasher {
	return &Hasher{params: p, slots: make(chan struct{}, runtime.NumCPU())}
}

func (h *Hasher) acquire() func() {
	h.slots <- struct{}{}
	return func() { <-h.slots }
}

// Hash returns a PHC-format hash of password:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<key>.
func (h *Hasher) Hash(password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	p := h.params
	release := h.acquire()
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	release()
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches an encoded hash, comparing in
// constant time with the parameters the hash was made with.
func (h *Hasher) Verify(password, encoded string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	release := h.acquire()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	release()
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// NeedsRehash reports whether an encoded hash was made with other
// parameters than the Hasher's, so it should be replaced at the next login.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return true
	}
	return p.Memory != h.params.Memory || p.Time != h.params.Time || p.Threads != h.params.Threads ||
		uint32(len(key)) != h.params.KeyLen || uint32(len(salt)) != h.params.SaltLen
}

func decodeHash(encoded string) (Params, []byte, []byte, error) {
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, errMalformedHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Params{}, nil, nil, fmt.Errorf("argon2 version %q: %w", parts[2], errMalformedHash)
	}
	var p Params
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil || n != 3 {
		return Params{}, nil, nil, errMalformedHash
	}
	if p.Memory < 8 || p.Memory > maxMemory || p.Time < 1 || p.Time > maxTime || threads < 1 || threads > 255 {
		return Params{}, nil, nil, fmt.Errorf("argon2 parameters out of range: %w", errMalformedHash)
	}
	p.Threads = uint8(threads)
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return Params{}, nil, nil, errMalformedHash
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return Params{}, nil, nil, errMalformedHash
	}
	p.KeyLen, p.SaltLen = uint32(len(key)), uint32(len(salt))
	return p, salt, key, nil
}
