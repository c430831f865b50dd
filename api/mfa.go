package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	qrcode "github.com/skip2/go-qrcode"

	"tether"
	"tether/auth"
	"tether/storage"
)

// mfaSummaryView is what a user's record shows of their second factors:
// the kinds they have and how many recovery codes are left, never a
// secret.
type mfaSummaryView struct {
	Factors       []storage.FactorKind `json:"factors"`
	RecoveryCodes int                  `json:"recoveryCodes"`
}

// mfaSummary is the summary of u's factors, for managers and admins (the
// roles that take them); nil for the others.
func mfaSummary(u storage.User) *mfaSummaryView {
	if u.Role != storage.RoleManager && u.Role != storage.RoleAdmin {
		return nil
	}
	v := &mfaSummaryView{Factors: []storage.FactorKind{}}
	if u.MFA != nil {
		for _, f := range u.MFA.Factors {
			v.Factors = append(v.Factors, f.Kind)
		}
		v.RecoveryCodes = len(u.MFA.RecoveryCodes)
	}
	return v
}

// noStore keeps an answer that carries a secret (tokens, a step token, a
// TOTP secret, recovery codes) out of every cache.
func noStoreSecret(c *fiber.Ctx) {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
}

// interrupted reports whether err interrupts a login for its second step.
func interrupted(err error) bool {
	return errors.Is(err, auth.ErrMFARequired) || errors.Is(err, auth.ErrMFAEnrollment)
}

type mfaRequest struct {
	MFAToken string `json:"mfaToken"`
	Code     string `json:"code"`
}

// loginMFA is POST /v1/auth/mfa: the second step of a login that answered
// mfa_required.
func (s *server) loginMFA(c *fiber.Ctx) error {
	var req mfaRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"mfaToken": req.MFAToken, "code": req.Code}); err != nil {
		return err
	}
	g, err := s.Auth.LoginSecondFactor(c.UserContext(), req.MFAToken, req.Code)
	if err != nil {
		return err
	}
	return s.sendGrant(c, g, true)
}

// totpSetupView is a TOTP factor being enrolled: the secret for the
// authenticator app, typed in or scanned (the otpauth URI, and the same
// as a QR image).
type totpSetupView struct {
	FactorID   string    `json:"factorId"`
	Kind       string    `json:"kind"`
	Secret     string    `json:"secret"`
	OtpauthURI string    `json:"otpauthUri"`
	QRPNG      string    `json:"qrPng"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

func (s *server) sendSetup(c *fiber.Ctx, st auth.TOTPSetup) error {
	png, err := qrcode.Encode(st.URI, qrcode.Medium, 256)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return s.respond(c, fiber.StatusOK, totpSetupView{
		FactorID: st.FactorID, Kind: string(storage.FactorTOTP), Secret: st.Secret, OtpauthURI: st.URI,
		QRPNG: base64.StdEncoding.EncodeToString(png), ExpiresAt: st.ExpiresAt,
	}, xmlNames("totpSetup", "item"))
}

type enrollStepRequest struct {
	EnrollmentToken string `json:"enrollmentToken"`
	Code            string `json:"code"`
}

// loginEnroll is POST /v1/auth/mfa/enroll: the TOTP secret for an account
// that must enroll a second factor (a login that answered
// mfa_enrollment_required).
func (s *server) loginEnroll(c *fiber.Ctx) error {
	var req enrollStepRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"enrollmentToken": req.EnrollmentToken}); err != nil {
		return err
	}
	st, err := s.Auth.BeginEnrollment(c.UserContext(), req.EnrollmentToken)
	if err != nil {
		return err
	}
	return s.sendSetup(c, st)
}

// loginEnrollConfirm is POST /v1/auth/mfa/enroll/confirm: the new factor's
// first code; the answer is a login's, with the recovery codes.
func (s *server) loginEnrollConfirm(c *fiber.Ctx) error {
	var req enrollStepRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"enrollmentToken": req.EnrollmentToken, "code": req.Code}); err != nil {
		return err
	}
	g, codes, err := s.Auth.LoginEnrolled(c.UserContext(), req.EnrollmentToken, req.Code)
	if err != nil {
		return err
	}
	return s.sendGrantWith(c, g, true, codes)
}

// factorView is one second factor: never its secret.
type factorView struct {
	ID         string             `json:"id"`
	Kind       storage.FactorKind `json:"kind"`
	Name       string             `json:"name,omitempty"`
	CreatedAt  time.Time          `json:"createdAt"`
	LastUsedAt time.Time          `json:"lastUsedAt,omitzero"`
}

func newFactorView(f auth.FactorInfo) factorView {
	return factorView{ID: f.ID, Kind: f.Kind, Name: f.Name, CreatedAt: f.CreatedAt, LastUsedAt: f.LastUsedAt}
}

// factorsView is a person's own second factors.
type factorsView struct {
	Factors         []factorView `json:"factors"`
	RecoveryCodes   int          `json:"recoveryCodes"`
	RecoveryCodesAt time.Time    `json:"recoveryCodesAt,omitzero"`
	// Required says the person's role must have a second factor.
	Required bool `json:"required"`
	// Passkeys says this server takes passkeys (it has a relying party
	// id), from pages at PasskeyOrigins.
	Passkeys       bool     `json:"passkeys"`
	PasskeyOrigins []string `json:"passkeyOrigins"`
}

// listFactors is GET /v1/auth/factors.
func (s *server) listFactors(c *fiber.Ctx) error {
	st, err := s.Auth.Factors(c.UserContext(), identity(c))
	if err != nil {
		return err
	}
	v := factorsView{Factors: make([]factorView, 0, len(st.Factors)), RecoveryCodes: st.RecoveryCodes, RecoveryCodesAt: st.RecoveryCodesAt, Required: st.Required,
		Passkeys: s.Auth.PasskeysOn(), PasskeyOrigins: s.Auth.PasskeyOrigins()}
	if v.PasskeyOrigins == nil {
		v.PasskeyOrigins = []string{}
	}
	for _, f := range st.Factors {
		v.Factors = append(v.Factors, newFactorView(f))
	}
	return s.respond(c, fiber.StatusOK, v, xmlNames("factors", "item"))
}

// reauthRequest is the fresh proof a change to one's own factors takes.
type reauthRequest struct {
	Password string `json:"password"`
	Code     string `json:"code"`
	// PasskeyToken and Credential: a passkey's answer to the challenge of
	// POST /v1/auth/factors/webauthn/reauth, in place of a code.
	PasskeyToken string          `json:"passkeyToken,omitempty"`
	Credential   json.RawMessage `json:"credential,omitempty"`
}

func (r reauthRequest) reauth() auth.Reauth {
	return auth.Reauth{Password: r.Password, Code: r.Code, PasskeyToken: r.PasskeyToken, Passkey: r.Credential}
}

// readReauth reads the body of a change to one's own factors.
func readReauth(c *fiber.Ctx) (reauthRequest, error) {
	var req reauthRequest
	if err := decodeJSON(c, &req); err != nil {
		return req, err
	}
	return req, req.checkPasskey()
}

// checkPasskey refuses a passkey answer that is no object, or one without
// its token.
func (r reauthRequest) checkPasskey() error {
	if len(r.Credential) == 0 && r.PasskeyToken == "" {
		return nil
	}
	if r.PasskeyToken == "" {
		return tether.Invalid("passkeyToken", "passkeyToken_required", "passkeyToken is required with a credential: the token of POST /v1/auth/factors/webauthn/reauth")
	}
	_, err := credentialMember(r.Credential)
	return err
}

// beginTOTP is POST /v1/auth/factors/totp: a new authenticator app, after
// the password (no factor yet) or a code (to replace one).
func (s *server) beginTOTP(c *fiber.Ctx) error {
	req, err := readReauth(c)
	if err != nil {
		return err
	}
	st, err := s.Auth.BeginTOTP(c.UserContext(), identity(c), req.reauth())
	if err != nil {
		return err
	}
	return s.sendSetup(c, st)
}

type confirmTOTPRequest struct {
	Code string `json:"code"`
}

// enrolledView is a factor just enrolled, with the recovery codes of a
// first factor (shown this once).
type enrolledView struct {
	Factor        factorView `json:"factor"`
	RecoveryCodes []string   `json:"recoveryCodes,omitempty"`
}

// confirmTOTP is POST /v1/auth/factors/totp/confirm: the new app's first
// code.
func (s *server) confirmTOTP(c *fiber.Ctx) error {
	var req confirmTOTPRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	f, codes, err := s.Auth.ConfirmTOTP(c.UserContext(), identity(c), req.Code)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return s.respond(c, fiber.StatusCreated, enrolledView{Factor: newFactorView(f), RecoveryCodes: codes}, xmlNames("enrolled", "code"))
}

// removeFactor is POST /v1/auth/factors/{id}/remove.
func (s *server) removeFactor(c *fiber.Ctx) error {
	req, err := readReauth(c)
	if err != nil {
		return err
	}
	if err := s.Auth.RemoveFactor(c.UserContext(), identity(c), param(c, "id"), req.reauth()); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// recoveryCodesView is a new set of recovery codes, shown this once.
type recoveryCodesView struct {
	RecoveryCodes []string `json:"recoveryCodes"`
}

// regenerateRecoveryCodes is POST /v1/auth/recovery-codes.
func (s *server) regenerateRecoveryCodes(c *fiber.Ctx) error {
	req, err := readReauth(c)
	if err != nil {
		return err
	}
	codes, err := s.Auth.RegenerateRecoveryCodes(c.UserContext(), identity(c), req.reauth())
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return s.respond(c, fiber.StatusOK, recoveryCodesView{RecoveryCodes: codes}, xmlNames("recoveryCodes", "code"))
}

// resetMFA is POST /v1/users/{id}/mfa/reset: an admin removes another
// account's second factors; its sessions end.
func (s *server) resetMFA(c *fiber.Ctx) error {
	n, err := s.Users.ResetMFA(c.UserContext(), principal(c), param(c, "id"))
	if err != nil {
		return err
	}
	return s.respond(c, fiber.StatusOK, fiber.Map{"revoked": n}, xmlNames("mfaReset", "item"))
}
