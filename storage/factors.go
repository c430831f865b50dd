package storage

import (
	"bytes"
	"slices"
	"time"
)

// PrefixFactor starts the id of a second factor.
const PrefixFactor = "fac_"

// FactorKind is what kind of second factor a Factor is.
type FactorKind string

// The kinds of second factor, each with a member of its own in Factor.
const (
	// FactorTOTP is an authenticator app's time-based one-time password
	// (RFC 6238).
	FactorTOTP FactorKind = "totp"
	// FactorWebAuthn is a passkey or security key (WebAuthn): a public
	// key credential of the browser's authenticator.
	FactorWebAuthn FactorKind = "webauthn"
)

// UserMFA is what a user proves beyond their password: their second
// factors, one-time recovery codes, and what keeps each used once.
type UserMFA struct {
	// Factors are the confirmed factors, oldest first; each has its own
	// id and kind.
	Factors []Factor `json:"factors,omitempty"`
	// Pending is a factor being enrolled: it counts for nothing until it
	// is confirmed with a first code, and is then moved to Factors.
	Pending *Factor `json:"pending,omitempty"`
	// RecoveryCodes are the SHA-256 hashes of the recovery codes not yet
	// used; each used one is removed. RecoveryCodesAt is when the set was
	// made.
	RecoveryCodes   [][]byte  `json:"recoveryCodes,omitempty"`
	RecoveryCodesAt time.Time `json:"recoveryCodesAt,omitzero"`
	// Spent are the sign-in steps already completed (the ids of their
	// tokens), kept until the tokens expire so that none is used twice.
	Spent []SpentStep `json:"spent,omitempty"`
	// Tried are the sign-in steps with wrong codes, and how many, kept
	// until their tokens expire: a step takes a few wrong codes, then is
	// spent.
	Tried []TriedStep `json:"tried,omitempty"`
	// CodeFailures counts wrong codes in a row, over every sign-in, until
	// a right one. Past a limit, authenticator-app codes are refused until
	// CodesLockedUntil (recovery codes and passkeys still serve), each lock
	// twice as long as the one before (CodeLocks, reset by a right code).
	CodeFailures     int       `json:"codeFailures,omitempty"`
	CodeLocks        int       `json:"codeLocks,omitempty"`
	CodesLockedUntil time.Time `json:"codesLockedUntil,omitzero"`
	// ResetAt is when an admin last reset the factors: sign-in steps begun
	// before are void.
	ResetAt time.Time `json:"resetAt,omitzero"`
}

// TriedStep is a sign-in step that took wrong codes.
type TriedStep struct {
	ID    string    `json:"id"`
	Until time.Time `json:"until"`
	Wrong int       `json:"wrong"`
}

// Factor is one second factor of a user.
type Factor struct {
	ID   string     `json:"id"`
	Kind FactorKind `json:"kind"`
	// Name is what the user calls it, such as "phone".
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	// Attempt and ExpiresAt are set on a pending factor: the sign-in step
	// or session that began its enrollment, which alone may confirm it,
	// and until when.
	Attempt   string    `json:"attempt,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// TOTP is set for a FactorTOTP.
	TOTP *TOTPSecret `json:"totp,omitempty"`
	// WebAuthn is set for a FactorWebAuthn.
	WebAuthn *WebAuthnCredential `json:"webauthn,omitempty"`
}

// WebAuthnCredential is the public key credential of a FactorWebAuthn, as
// its registration gave it and its sign-ins updated it. Nothing in it is
// secret.
type WebAuthnCredential struct {
	// ID is the credential id the authenticator chose.
	ID []byte `json:"id"`
	// PublicKey is the credential's public key, COSE-encoded.
	PublicKey       []byte `json:"publicKey"`
	AttestationType string `json:"attestationType,omitempty"`
	// AAGUID names the authenticator's model (16 bytes; zero when it
	// tells none).
	AAGUID []byte `json:"aaguid,omitempty"`
	// SignCount is the authenticator's signature counter at the last
	// sign-in: a later sign-in with a counter not above it (but both 0,
	// an authenticator that keeps none) is refused as a cloned key.
	SignCount  uint32   `json:"signCount"`
	Transports []string `json:"transports,omitempty"`
	// The authenticator data flags: the person was verified (PIN,
	// biometrics), the credential may be synced to other devices
	// (backup eligible), and it is (backed up).
	UserVerified   bool `json:"userVerified,omitempty"`
	BackupEligible bool `json:"backupEligible,omitempty"`
	BackupState    bool `json:"backupState,omitempty"`
	// Ceremony is set on a pending factor: the registration's challenge
	// and what it asked for (JSON), checked and dropped by its
	// confirmation.
	Ceremony []byte `json:"ceremony,omitempty"`
}

// TOTPSecret is the shared secret of a TOTP factor.
type TOTPSecret struct {
	// Secret is the key, sealed with the server's master key when Sealed
	// (bound to the factor's id), else as it is.
	Secret []byte `json:"secret"`
	Sealed bool   `json:"sealed,omitempty"`
	// LastStep is the time step (Unix time / 30 s) of the last code
	// accepted: codes of that step or an earlier one are refused.
	LastStep int64 `json:"lastStep,omitempty"`
}

// SpentStep is a completed sign-in step, remembered until Until.
type SpentStep struct {
	ID    string    `json:"id"`
	Until time.Time `json:"until"`
}

// Confirmed reports whether m has a confirmed factor.
func (m *UserMFA) Confirmed() bool {
	return m != nil && len(m.Factors) > 0
}

// Clone returns a deep copy of m.
func (m *UserMFA) Clone() *UserMFA {
	if m == nil {
		return nil
	}
	c := *m
	c.Factors = make([]Factor, len(m.Factors))
	for i, f := range m.Factors {
		c.Factors[i] = f.Clone()
	}
	if m.Factors == nil {
		c.Factors = nil
	}
	if m.Pending != nil {
		p := m.Pending.Clone()
		c.Pending = &p
	}
	if m.RecoveryCodes != nil {
		c.RecoveryCodes = make([][]byte, len(m.RecoveryCodes))
		for i, h := range m.RecoveryCodes {
			c.RecoveryCodes[i] = bytes.Clone(h)
		}
	}
	c.Spent = slices.Clone(m.Spent)
	c.Tried = slices.Clone(m.Tried)
	return &c
}

// Clone returns a deep copy of f.
func (f Factor) Clone() Factor {
	if f.TOTP != nil {
		t := *f.TOTP
		t.Secret = bytes.Clone(t.Secret)
		f.TOTP = &t
	}
	if f.WebAuthn != nil {
		w := *f.WebAuthn
		w.ID, w.PublicKey, w.AAGUID, w.Ceremony = bytes.Clone(w.ID), bytes.Clone(w.PublicKey), bytes.Clone(w.AAGUID), bytes.Clone(w.Ceremony)
		w.Transports = slices.Clone(w.Transports)
		f.WebAuthn = &w
	}
	return f
}
