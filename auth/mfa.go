package auth

// Second factors (docs/security.md, "Second factors"): managers and admins
// prove a TOTP code (RFC 6238) or a one-time recovery code after their
// password. This file holds the factors themselves: the policy, TOTP
// codes, recovery codes, and sealing the TOTP secrets.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"tether"
	"tether/storage"
)

// MFAPolicy says whether the accounts of a role must have a second factor.
type MFAPolicy string

// The second-factor policies of a role (Config.AdminMFA, ManagerMFA).
const (
	// MFARequired: every account of the role has a second factor; one
	// without is led through enrolling one at its next sign-in.
	MFARequired MFAPolicy = "required"
	// MFAOptional: an account with a second factor proves it at every
	// sign-in; one without signs in with its password alone.
	MFAOptional MFAPolicy = "optional"
)

// How a person proved who they are (RFC 8176 "amr" values; "recovery" is
// Tether's own, for a recovery code).
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
	AMRRecovery = "recovery"
)

// The TOTP parameters (RFC 6238, as every authenticator app takes them):
// HMAC-SHA1, 6 digits, 30-second steps, a code of the step before or after
// the server's accepted for clock skew, and a 160-bit secret (RFC 4226
// section 4).
const (
	totpPeriod    = 30
	totpSkew      = 1
	totpSecretLen = 20
)

// Recovery codes: RecoveryCodeCount of them, each 16 characters of
// Crockford's base32 (80 random bits), shown as four groups of four.
const (
	RecoveryCodeCount = 10
	recoveryLen       = 16
	recoveryAlphabet  = "0123456789abcdefghjkmnpqrstvwxyz"
)

// The errors of second factors.
var (
	// ErrMFARequired interrupts a sign-in whose password was right: the
	// account has a second factor. It carries the mfaToken that continues
	// it, and the methods the account can use.
	ErrMFARequired = tether.NewError(tether.CodeMFARequired, "a second factor is required: send a code from your authenticator app, or a recovery code, with the mfaToken")
	// ErrMFAEnrollment interrupts a sign-in of an account that must have
	// a second factor and has none: it carries the enrollmentToken with
	// which the account enrolls one.
	ErrMFAEnrollment = tether.NewError(tether.CodeMFAEnrollment, "this account must set up a second factor before it signs in: enroll an authenticator app with the enrollmentToken")
	// ErrMFAUnsupported refuses a sign-in that needs a second factor
	// through a client that cannot carry one (the compatibility dialects,
	// the OAuth password grant).
	ErrMFAUnsupported = tether.NewError(tether.CodeMFAUnsupported, "this account signs in with a second factor, which this client cannot send: sign in on the console or through the OAuth sign-in page")
	// ErrCodeWrong is a second-factor code that is wrong, or was used
	// already: the two are not told apart.
	ErrCodeWrong = tether.NewError(tether.CodeInvalidCredentials, "the code is wrong, or was used already")

	errNoFactor       = tether.NewError(tether.CodeConflict, "the account has no second factor: enroll one first")
	errNoPending      = tether.NewError(tether.CodeConflict, "no authenticator app is being set up, or its setup expired: start again")
	errKeepFactor     = tether.NewError(tether.CodeForbidden, "your role must keep a second factor: set up a new authenticator app to replace this one instead")
	errResetOwn       = tether.NewError(tether.CodeForbidden, "an admin resets another account's second factors; manage your own on the Security page")
	errFactorNotFound = fmt.Errorf("factor: %w", storage.ErrNotFound)
)

// errMFAFailed marks a wrong second factor, audited as mfa_failed.
var errMFAFailed = errors.New("mfa_failed")

// wrongCode is ErrCodeWrong, audited as mfa_failed.
func wrongCode() error { return fmt.Errorf("%w%w", ErrCodeWrong, errMFAFailed) }

// mfaPolicy is the policy for role; workers have none (their handset is
// their second factor).
func (c Config) mfaPolicy(r storage.Role) MFAPolicy {
	switch r {
	case storage.RoleAdmin:
		return c.AdminMFA
	case storage.RoleManager:
		return c.ManagerMFA
	}
	return ""
}

// takesFactors reports whether accounts of role r use second factors.
func takesFactors(r storage.Role) bool {
	return r == storage.RoleManager || r == storage.RoleAdmin
}

// MFARequiredFor reports whether accounts of role r must have a second
// factor.
func (s *Service) MFARequiredFor(r storage.Role) bool {
	return s.cfg.mfaPolicy(r) == MFARequired
}

// dueStep is the second step a right password of u leads to: the second
// factor, enrolling one, or none.
func (s *Service) dueStep(u storage.User) stepPurpose {
	switch {
	case !takesFactors(u.Role):
		return ""
	case u.MFA.Confirmed():
		return stepMFA
	case s.MFARequiredFor(u.Role):
		return stepEnroll
	}
	return ""
}

// methodsOf are the ways u can prove their second factor: the kinds of
// their factors, and "recovery" while they have recovery codes.
func methodsOf(m *storage.UserMFA) []string {
	var out []string
	if m == nil {
		return out
	}
	for _, f := range m.Factors {
		if !slices.Contains(out, string(f.Kind)) {
			out = append(out, string(f.Kind))
		}
	}
	if len(m.RecoveryCodes) > 0 {
		out = append(out, AMRRecovery)
	}
	return out
}

// ---- TOTP ----

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// totpOpts are the code parameters.
var totpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTPCode is the code of secret for the 30-second step of t.
func TOTPCode(secret []byte, t time.Time) (string, error) {
	return hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(t.Unix()/totpPeriod), totpOpts)
}

// matchTOTP returns the time step code is the code of: the step of now,
// or one either side of it, and later than last (a code of the last
// accepted step, or an earlier one, is a replay). Every candidate is
// compared in constant time.
func matchTOTP(secret []byte, code string, now time.Time, last int64) (int64, bool) {
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	var found int64
	ok := false
	for step := cur - totpSkew; step <= cur+totpSkew; step++ {
		want, err := hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(step), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && step > last && !ok {
			found, ok = step, true
		}
	}
	return found, ok
}

// totpLabel binds a sealed TOTP secret to its user and factor.
func totpLabel(userID, factorID string) string { return "totp:" + userID + "/" + factorID }

// sealTOTP is how secret is stored: sealed with the master key where the
// server has one, else as it is (as the signing keys are).
func (s *Service) sealTOTP(userID, factorID string, secret []byte) *storage.TOTPSecret {
	if s.master == nil {
		return &storage.TOTPSecret{Secret: secret}
	}
	return &storage.TOTPSecret{Secret: s.master.seal(secret, totpLabel(userID, factorID)), Sealed: true}
}

// errTOTPSealed is a TOTP secret sealed with a master key the server does
// not have.
var errTOTPSealed = errors.New("a TOTP secret in the store is sealed: start with the --master-key-file it was sealed with")

// totpSecret opens a factor's secret.
func (s *Service) totpSecret(userID string, f storage.Factor) ([]byte, error) {
	t := f.TOTP
	if t == nil {
		return nil, fmt.Errorf("factor %s has no TOTP secret", f.ID)
	}
	if !t.Sealed {
		return t.Secret, nil
	}
	if s.master == nil {
		return nil, errTOTPSealed
	}
	plain, err := s.master.open(t.Secret, totpLabel(userID, f.ID))
	if err != nil {
		return nil, fmt.Errorf("the master key does not open the TOTP secret of factor %s", f.ID)
	}
	return plain, nil
}

// TOTPSetup is a TOTP factor being enrolled: what the person puts in their
// authenticator app, by QR code (URI) or by hand (Secret).
type TOTPSetup struct {
	FactorID string
	// Secret is the shared secret in base32, as apps take it typed in.
	Secret string
	// URI is the otpauth:// URI of the Key URI Format, for a QR code.
	URI       string
	ExpiresAt time.Time
}

// totpSetup describes the pending factor p of user u.
func (s *Service) totpSetup(u storage.User, p storage.Factor) (TOTPSetup, error) {
	secret, err := s.totpSecret(u.ID, p)
	if err != nil {
		return TOTPSetup{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.cfg.TOTPIssuer, AccountName: u.Username, Period: totpPeriod,
		Secret: secret, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("otpauth URI: %w", err)
	}
	return TOTPSetup{FactorID: p.ID, Secret: key.Secret(), URI: key.URL(), ExpiresAt: p.ExpiresAt}, nil
}

// ---- recovery codes ----

// newRecoveryCodes makes RecoveryCodeCount codes and their hashes.
func newRecoveryCodes() ([]string, [][]byte) {
	codes := make([]string, RecoveryCodeCount)
	hashes := make([][]byte, RecoveryCodeCount)
	for i := range codes {
		b := make([]byte, recoveryLen)
		rand.Read(b)
		var sb strings.Builder
		for j, x := range b {
			if j > 0 && j%4 == 0 {
				sb.WriteByte('-')
			}
			sb.WriteByte(recoveryAlphabet[x&31])
		}
		codes[i] = sb.String()
		n, _ := normalizeRecovery(codes[i])
		hashes[i] = recoveryHash(n)
	}
	return codes, hashes
}

// normalizeRecovery reads a recovery code as a person may type it: any
// case, with or without separators, O for 0 and I or L for 1.
func normalizeRecovery(code string) (string, bool) {
	var sb strings.Builder
	for _, r := range strings.ToLower(code) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'o':
			r = '0'
		case 'i', 'l':
			r = '1'
		}
		if !strings.ContainsRune(recoveryAlphabet, r) {
			return "", false
		}
		sb.WriteRune(r)
	}
	n := sb.String()
	return n, len(n) == recoveryLen
}

// recoveryHash is what the store keeps of a normalized recovery code.
func recoveryHash(normalized string) []byte {
	h := sha256.Sum256([]byte(normalized))
	return h[:]
}

// matchRecovery returns the index of the hash of code among hashes, or
// -1, comparing with every one in constant time.
func matchRecovery(hashes [][]byte, code string) int {
	n, ok := normalizeRecovery(code)
	if !ok {
		return -1
	}
	h := recoveryHash(n)
	found := -1
	for i, want := range hashes {
		if subtle.ConstantTimeCompare(want, h) == 1 && found < 0 {
			found = i
		}
	}
	return found
}

// useCode checks code against u's second factors and returns u with it
// used up: a TOTP code's step remembered (a code of it or an earlier one
// is refused from then on), a recovery code removed. It returns the
// method it proved (AMROTP or AMRRecovery), or a wrong-code error. u must
// be the caller's own copy.
func (s *Service) useCode(u storage.User, code string, now time.Time) (storage.User, string, error) {
	m := u.MFA
	if !m.Confirmed() {
		return u, "", wrongCode()
	}
	code = strings.TrimSpace(code)
	if digits := strings.ReplaceAll(code, " ", ""); len(digits) == 6 && strings.Trim(digits, "0123456789") == "" {
		if now.Before(m.CodesLockedUntil) {
			// Refused unchecked, and not counted: a code tried now tells
			// nothing, right or wrong.
			return u, "", ErrCodesLocked.After(m.CodesLockedUntil.Sub(now))
		}
		for i, f := range m.Factors {
			if f.Kind != storage.FactorTOTP {
				continue
			}
			secret, err := s.totpSecret(u.ID, f)
			if err != nil {
				return u, "", err
			}
			step, ok := matchTOTP(secret, digits, now, f.TOTP.LastStep)
			if !ok {
				continue
			}
			if !f.TOTP.Sealed && s.master != nil {
				// A secret stored before the server had a master key is
				// sealed at its next use.
				m.Factors[i].TOTP = s.sealTOTP(u.ID, f.ID, secret)
			}
			m.Factors[i].TOTP.LastStep = step
			m.Factors[i].LastUsedAt = now
			return u, AMROTP, nil
		}
		return u, "", wrongCode()
	}
	if i := matchRecovery(m.RecoveryCodes, code); i >= 0 {
		m.RecoveryCodes = slices.Delete(m.RecoveryCodes, i, i+1)
		return u, AMRRecovery, nil
	}
	return u, "", wrongCode()
}

// ---- what the API shows ----

// FactorInfo is a factor as its owner and admins see it: never its
// secret.
type FactorInfo struct {
	ID         string
	Kind       storage.FactorKind
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// MFAStatus is what an account has of second factors.
type MFAStatus struct {
	Factors []FactorInfo
	// RecoveryCodes is how many recovery codes are left unused.
	RecoveryCodes   int
	RecoveryCodesAt time.Time
	// Required says the account's role must have a second factor.
	Required bool
}

// MFAOf describes u's second factors.
func (s *Service) MFAOf(u storage.User) MFAStatus {
	st := MFAStatus{Factors: []FactorInfo{}, Required: s.MFARequiredFor(u.Role)}
	if u.MFA == nil {
		return st
	}
	for _, f := range u.MFA.Factors {
		st.Factors = append(st.Factors, factorInfo(f))
	}
	st.RecoveryCodes, st.RecoveryCodesAt = len(u.MFA.RecoveryCodes), u.MFA.RecoveryCodesAt
	return st
}

func factorInfo(f storage.Factor) FactorInfo {
	return FactorInfo{ID: f.ID, Kind: f.Kind, Name: f.Name, CreatedAt: f.CreatedAt, LastUsedAt: f.LastUsedAt}
}
