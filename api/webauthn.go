package api

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/gofiber/fiber/v2"

	"tether"
	"tether/storage"
)

// credentialMember is a request's "credential": the browser's
// PublicKeyCredential as JSON, an object, kept as sent for the WebAuthn
// library to read.
func credentialMember(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, tether.Invalid("credential", "credential_required", "credential is required: the PublicKeyCredential the browser gave, as JSON")
	}
	if raw[0] != '{' {
		return nil, tether.Invalid("credential", "credential_invalid", "credential must be an object: the PublicKeyCredential the browser gave, as JSON")
	}
	return raw, nil
}

type passkeyStepRequest struct {
	MFAToken   string          `json:"mfaToken"`
	Credential json.RawMessage `json:"credential"`
}

// loginPasskeyOptions is POST /v1/auth/mfa/webauthn: the WebAuthn
// assertion that continues a login that answered mfa_required, for the
// browser's navigator.credentials.get().
func (s *server) loginPasskeyOptions(c *fiber.Ctx) error {
	var req passkeyStepRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"mfaToken": req.MFAToken}); err != nil {
		return err
	}
	if len(req.Credential) > 0 {
		return tether.Invalid("credential", "credential_unexpected", "credential goes to /v1/auth/mfa/webauthn/finish")
	}
	a, err := s.Auth.BeginPasskeyLogin(c.UserContext(), req.MFAToken)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return c.Status(fiber.StatusOK).JSON(a)
}

// loginPasskey is POST /v1/auth/mfa/webauthn/finish: the passkey's answer
// ends the login with its tokens.
func (s *server) loginPasskey(c *fiber.Ctx) error {
	var req passkeyStepRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"mfaToken": req.MFAToken}); err != nil {
		return err
	}
	cred, err := credentialMember(req.Credential)
	if err != nil {
		return err
	}
	g, err := s.Auth.LoginPasskey(c.UserContext(), req.MFAToken, cred)
	if err != nil {
		return err
	}
	return s.sendGrant(c, g, true)
}

// loginEnrollPasskey is POST /v1/auth/mfa/enroll/webauthn: for an account
// that must enroll a second factor (mfa_enrollment_required), the options
// of a new passkey, in place of an authenticator app.
func (s *server) loginEnrollPasskey(c *fiber.Ctx) error {
	var req enrollStepRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"enrollmentToken": req.EnrollmentToken}); err != nil {
		return err
	}
	if req.Code != "" {
		return tether.Invalid("code", "code_unexpected", "a passkey takes no code")
	}
	st, err := s.Auth.BeginPasskeyEnrollment(c.UserContext(), req.EnrollmentToken)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return c.Status(fiber.StatusOK).JSON(passkeySetupView{FactorID: st.FactorID, Kind: storage.FactorWebAuthn, Options: st.Options, ExpiresAt: st.ExpiresAt})
}

type enrollPasskeyRequest struct {
	EnrollmentToken string          `json:"enrollmentToken"`
	Credential      json.RawMessage `json:"credential"`
}

// loginEnrollPasskeyConfirm is POST /v1/auth/mfa/enroll/webauthn/confirm:
// the new passkey registered, the answer is a login's, with the recovery
// codes.
func (s *server) loginEnrollPasskeyConfirm(c *fiber.Ctx) error {
	var req enrollPasskeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := missing(map[string]string{"enrollmentToken": req.EnrollmentToken}); err != nil {
		return err
	}
	cred, err := credentialMember(req.Credential)
	if err != nil {
		return err
	}
	g, codes, err := s.Auth.LoginEnrolledPasskey(c.UserContext(), req.EnrollmentToken, cred)
	if err != nil {
		return err
	}
	return s.sendGrantWith(c, g, true, codes)
}

type beginPasskeyRequest struct {
	reauthRequest
	Name string `json:"name"`
}

// passkeySetupView is a passkey being registered: the options for the
// browser's navigator.credentials.create().
type passkeySetupView struct {
	FactorID  string                       `json:"factorId"`
	Kind      storage.FactorKind           `json:"kind"`
	Options   *protocol.CredentialCreation `json:"options"`
	ExpiresAt time.Time                    `json:"expiresAt"`
}

// beginPasskey is POST /v1/auth/factors/webauthn: a new passkey, after the
// password (no factor yet) or a code.
func (s *server) beginPasskey(c *fiber.Ctx) error {
	var req beginPasskeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := req.checkPasskey(); err != nil {
		return err
	}
	st, err := s.Auth.BeginPasskey(c.UserContext(), identity(c), req.reauth(), req.Name)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return c.Status(fiber.StatusOK).JSON(passkeySetupView{FactorID: st.FactorID, Kind: storage.FactorWebAuthn, Options: st.Options, ExpiresAt: st.ExpiresAt})
}

// passkeyReauthView is a passkey challenge to confirm a change to one's
// own factors with.
type passkeyReauthView struct {
	PasskeyToken string                        `json:"passkeyToken"`
	PublicKey    *protocol.CredentialAssertion `json:"options"`
	ExpiresAt    time.Time                     `json:"expiresAt"`
}

// passkeyReauth is POST /v1/auth/factors/webauthn/reauth: a challenge for
// the caller's passkey, whose answer confirms one change to their factors
// (in place of a code), from this session.
func (s *server) passkeyReauth(c *fiber.Ctx) error {
	if len(c.Body()) > 0 {
		var none struct{}
		if err := decodeJSON(c, &none); err != nil {
			return err
		}
	}
	r, err := s.Auth.BeginPasskeyReauth(c.UserContext(), identity(c))
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return c.Status(fiber.StatusOK).JSON(passkeyReauthView{PasskeyToken: r.Token, PublicKey: r.Options, ExpiresAt: r.ExpiresAt})
}

type confirmPasskeyRequest struct {
	Credential json.RawMessage `json:"credential"`
}

// confirmPasskey is POST /v1/auth/factors/webauthn/confirm: the browser's
// new credential registers the passkey.
func (s *server) confirmPasskey(c *fiber.Ctx) error {
	var req confirmPasskeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	cred, err := credentialMember(req.Credential)
	if err != nil {
		return err
	}
	f, codes, err := s.Auth.ConfirmPasskey(c.UserContext(), identity(c), cred)
	if err != nil {
		return err
	}
	noStoreSecret(c)
	return s.respond(c, fiber.StatusCreated, enrolledView{Factor: newFactorView(f), RecoveryCodes: codes}, xmlNames("enrolled", "code"))
}

// What /openapi.json says of the WebAuthn options, which the WebAuthn
// library writes (W3C WebAuthn Level 3, the JSON of
// PublicKeyCredentialCreationOptions and PublicKeyCredentialRequestOptions,
// binary members in base64url).
type (
	passkeyAssertionDoc struct {
		PublicKey map[string]any `json:"publicKey" doc:"PublicKeyCredentialRequestOptions as JSON: challenge, rpId, allowCredentials, userVerification, timeout"`
	}
	passkeyReauthDoc struct {
		PasskeyToken string              `json:"passkeyToken" doc:"goes back with the answer, as passkeyToken"`
		Options      passkeyAssertionDoc `json:"options" doc:"for navigator.credentials.get()"`
		ExpiresAt    time.Time           `json:"expiresAt"`
	}
	passkeySetupDoc struct {
		FactorID string `json:"factorId"`
		Kind     string `json:"kind" doc:"webauthn"`
		Options  struct {
			PublicKey map[string]any `json:"publicKey" doc:"PublicKeyCredentialCreationOptions as JSON: rp, user, challenge, pubKeyCredParams, excludeCredentials, authenticatorSelection, attestation"`
		} `json:"options" doc:"for navigator.credentials.create()"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
)

// The request bodies as /openapi.json describes them.
type (
	mfaTokenDoc struct {
		MFAToken string `json:"mfaToken"`
	}
	passkeyFinishDoc struct {
		MFAToken   string         `json:"mfaToken"`
		Credential map[string]any `json:"credential" doc:"the PublicKeyCredential navigator.credentials.get() gave, as JSON (PublicKeyCredential.toJSON(): id, rawId, type, response.clientDataJSON, authenticatorData, signature, userHandle in base64url)"`
	}
	enrollTokenDoc struct {
		EnrollmentToken string `json:"enrollmentToken"`
	}
	enrollPasskeyDoc struct {
		EnrollmentToken string         `json:"enrollmentToken"`
		Credential      map[string]any `json:"credential" doc:"the PublicKeyCredential navigator.credentials.create() gave, as JSON (PublicKeyCredential.toJSON(): id, rawId, type, response.clientDataJSON, attestationObject, transports in base64url)"`
	}
	confirmPasskeyDoc struct {
		Credential map[string]any `json:"credential" doc:"the PublicKeyCredential navigator.credentials.create() gave, as JSON (PublicKeyCredential.toJSON(): id, rawId, type, response.clientDataJSON, attestationObject, transports in base64url)"`
	}
)
