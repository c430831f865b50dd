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

// The kinds of second factor. WebAuthn passkeys will be another kind
// beside TOTP, with a member of their own in Factor.
const (
	// FactorTOTP is an authenticator app's time-based one-time password
	// (RFC 6238).
	FactorTOTP FactorKind = "totp"
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
	return &c
}

// Clone returns a deep copy of f.
func (f Factor) Clone() Factor {
	if f.TOTP != nil {
		t := *f.TOTP
		t.Secret = bytes.Clone(t.Secret)
		f.TOTP = &t
	}
	return f
}
