package auth

// Passkeys (WebAuthn) as a second factor (docs/security.md, "Passkeys"): a
// signed-in manager registers one from the console; a sign-in proves it in
// place of a code. The relying party id is the host of --public-url (or
// --webauthn-rp-id), and only the origins the server names are accepted:
// a passkey signs the origin of the page that asked, so a look-alike site
// gets an answer this server refuses.
//
// No challenge is kept for a sign-in: it is derived from the id of the
// sign-in step (random, made by this server, in the mfaToken), so an
// answer fits that step alone, and a step is completed once. A
// registration's challenge is kept in the pending factor, bound to the
// session that began it, and dropped by its confirmation.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"tether"
	"tether/storage"
)

// How a passkey proved a sign-in (RFC 8176): "hwk", a key bound to its
// authenticator; "swk", a key that may be synced to other devices (its
// authenticator says it is backup eligible), so a copy may live in
// software elsewhere.
const (
	AMRHardwareKey = "hwk"
	AMRSoftwareKey = "swk"
)

// maxPasskeyResponse bounds a credential a browser sends (an attestation
// may carry a certificate chain).
const maxPasskeyResponse = 32 << 10

// maxPasskeys bounds the passkeys of one account.
const maxPasskeys = 10

// The errors of passkeys.
var (
	// ErrPasskeysOff refuses passkeys on a server without a relying party
	// id.
	ErrPasskeysOff = tether.NewError(tether.CodeNotFound, "passkeys are off on this server: they are served once --public-url (or --webauthn-rp-id) is set")
	// ErrPasskeyWrong is a passkey's answer that does not fit the sign-in:
	// another challenge, origin or account, a bad signature, a counter
	// gone backwards, a step completed already.
	ErrPasskeyWrong = tether.NewError(tether.CodeInvalidCredentials, "the passkey's answer does not fit this sign-in: try again")

	errPasskeyMalformed = tether.Invalid("credential", "credential_invalid", "credential is not a WebAuthn credential as a browser gives it (a PublicKeyCredential as JSON)")
	errPasskeyRejected  = tether.Invalid("credential", "credential_rejected", "the passkey's answer does not fit this registration: start again")
	errPasskeyName      = tether.Invalid("name", "name_invalid", "name: printable text of up to 64 characters")
	errNoPasskey        = tether.NewError(tether.CodeConflict, "the account has no passkey: use a code from the authenticator app, or a recovery code")
	errPasskeyTaken     = tether.NewError(tether.CodeConflict, "this passkey is registered already")
	errTooManyPasskeys  = tether.NewError(tether.CodeConflict, fmt.Sprintf("an account has at most %d passkeys: remove one first", maxPasskeys))
	errNoPendingPasskey = tether.NewError(tether.CodeConflict, "no passkey is being registered, or its registration expired: start again")
)

// errClonedKey marks a passkey whose signature counter went backwards.
var errClonedKey = errors.New("passkey counter went backwards")

// passkeyWrong is ErrPasskeyWrong, audited as mfa_failed.
func passkeyWrong() error { return fmt.Errorf("%w%w", ErrPasskeyWrong, errMFAFailed) }

// newPasskeys is the relying party of cfg, or nil when passkeys are off.
func newPasskeys(cfg Config) (*webauthn.WebAuthn, error) {
	if cfg.WebAuthnRPID == "" {
		return nil, nil
	}
	w, err := webauthn.New(&webauthn.Config{
		RPID:          cfg.WebAuthnRPID,
		RPDisplayName: cfg.TOTPIssuer,
		RPOrigins:     cfg.WebAuthnOrigins,
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys (--webauthn-rp-id, --webauthn-origins): %w", err)
	}
	return w, nil
}

// PasskeysOn reports whether this server takes passkeys.
func (s *Service) PasskeysOn() bool { return s.passkeys != nil }

// PasskeyOrigins are the origins whose passkey answers this server takes
// (none when passkeys are off).
func (s *Service) PasskeyOrigins() []string {
	if s.passkeys == nil {
		return nil
	}
	return slices.Clone(s.cfg.WebAuthnOrigins)
}

// passkeyUser is a user as the WebAuthn library sees them. The user
// handle is the user's id: random, and no personal data.
type passkeyUser struct{ u storage.User }

func (p passkeyUser) WebAuthnID() []byte   { return []byte(p.u.ID) }
func (p passkeyUser) WebAuthnName() string { return p.u.Username }
func (p passkeyUser) WebAuthnDisplayName() string {
	if name := strings.TrimSpace(p.u.FirstName + " " + p.u.LastName); name != "" {
		return name
	}
	return p.u.Username
}

func (p passkeyUser) WebAuthnCredentials() []webauthn.Credential {
	var out []webauthn.Credential
	for _, f := range passkeysOf(p.u) {
		w := f.WebAuthn
		c := webauthn.Credential{
			ID: bytes.Clone(w.ID), PublicKey: bytes.Clone(w.PublicKey), AttestationType: w.AttestationType,
			Flags: webauthn.CredentialFlags{
				UserPresent: true, UserVerified: w.UserVerified, BackupEligible: w.BackupEligible, BackupState: w.BackupState,
			},
			Authenticator: webauthn.Authenticator{AAGUID: bytes.Clone(w.AAGUID), SignCount: w.SignCount},
		}
		for _, t := range w.Transports {
			c.Transport = append(c.Transport, protocol.AuthenticatorTransport(t))
		}
		out = append(out, c)
	}
	return out
}

// passkeysOf is u's confirmed passkey factors.
func passkeysOf(u storage.User) []storage.Factor {
	if u.MFA == nil {
		return nil
	}
	var out []storage.Factor
	for _, f := range u.MFA.Factors {
		if f.Kind == storage.FactorWebAuthn && f.WebAuthn != nil {
			out = append(out, f)
		}
	}
	return out
}

// passkeyAMR is how a passkey with these flags proves a sign-in.
func passkeyAMR(backupEligible bool) string {
	if backupEligible {
		return AMRSoftwareKey
	}
	return AMRHardwareKey
}

// ---- registration, by a signed-in manager ----

// PasskeySetup is a passkey being registered: the options for the
// browser's navigator.credentials.create().
type PasskeySetup struct {
	FactorID  string
	Options   *protocol.CredentialCreation
	ExpiresAt time.Time
}

// BeginPasskey starts registering a passkey named name for the user behind
// id, after r proves it is them (as BeginTOTP). The registration is
// pending, for this session alone, until ConfirmPasskey confirms it
// within ten minutes; it replaces any other factor being set up.
func (s *Service) BeginPasskey(ctx context.Context, id Identity, r Reauth, name string) (PasskeySetup, error) {
	if s.passkeys == nil {
		return PasskeySetup{}, ErrPasskeysOff
	}
	name = strings.TrimSpace(name)
	if len([]rune(name)) > 64 || (name != "" && !tether.Printable(name)) {
		return PasskeySetup{}, errPasskeyName
	}
	ev := s.ownEvent(ctx, id, "user.mfa_enrolled")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return PasskeySetup{}, err
	}
	if len(passkeysOf(user)) >= maxPasskeys {
		return PasskeySetup{}, errTooManyPasskeys
	}
	if _, err := s.reauth(ctx, id, user, r); err != nil {
		return PasskeySetup{}, fail(err)
	}
	setup, err := s.beginPasskey(ctx, user.ID, id.Session.ID, s.now().Add(pendingTTL).UTC(), name, func(storage.User) error { return nil })
	if err != nil {
		return PasskeySetup{}, fail(err)
	}
	return setup, nil
}

// beginPasskey makes a new pending passkey registration for the user
// userID, for attempt (a session or a sign-in step) until expires, once
// check accepts the user.
func (s *Service) beginPasskey(ctx context.Context, userID, attempt string, expires time.Time, name string, check func(storage.User) error) (PasskeySetup, error) {
	now := s.now().UTC()
	var setup PasskeySetup
	_, err := s.store.UpdateUser(ctx, userID, func(cur storage.User) (storage.User, error) {
		if err := check(cur); err != nil {
			return cur, err
		}
		if !takesFactors(cur.Role) {
			return cur, fmt.Errorf("a %s registering a passkey: %w", cur.Role, ErrForbidden)
		}
		pu := passkeyUser{cur}
		var exclude []protocol.CredentialDescriptor
		for _, c := range pu.WebAuthnCredentials() {
			exclude = append(exclude, c.Descriptor())
		}
		creation, session, err := s.passkeys.BeginRegistration(pu,
			webauthn.WithExclusions(exclude),
			webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
				ResidentKey: protocol.ResidentKeyRequirementPreferred, UserVerification: protocol.VerificationPreferred,
			}),
			webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		)
		if err != nil {
			return cur, fmt.Errorf("begin passkey registration: %w", err)
		}
		ceremony, err := json.Marshal(session)
		if err != nil {
			return cur, err
		}
		if cur.MFA == nil {
			cur.MFA = &storage.UserMFA{}
		}
		fid := storage.NewID(storage.PrefixFactor)
		cur.MFA.Pending = &storage.Factor{
			ID: fid, Kind: storage.FactorWebAuthn, Name: name, CreatedAt: now, Attempt: attempt, ExpiresAt: expires,
			WebAuthn: &storage.WebAuthnCredential{Ceremony: ceremony},
		}
		setup = PasskeySetup{FactorID: fid, Options: creation, ExpiresAt: expires}
		return cur, nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return PasskeySetup{}, errStepInvalid
	}
	return setup, err
}

// ConfirmPasskey registers the passkey BeginPasskey began in the same
// session: response is the browser's PublicKeyCredential (JSON). A first
// factor comes with the account's recovery codes (returned, the only
// time they are seen). The pending registration is used up by a success
// only: a refused answer may be followed by another.
func (s *Service) ConfirmPasskey(ctx context.Context, id Identity, response []byte) (FactorInfo, []string, error) {
	if s.passkeys == nil {
		return FactorInfo{}, nil, ErrPasskeysOff
	}
	ev := s.ownEvent(ctx, id, "user.mfa_enrolled")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return FactorInfo{}, nil, err
	}
	_, f, codes, err := s.confirmPasskey(ctx, user, id.Session.ID, response, id.Principal().String(), func(*storage.User) error { return nil })
	if err != nil {
		return FactorInfo{}, nil, fail(err)
	}
	return f, codes, nil
}

// confirmPasskey registers the pending passkey of attempt for user with
// the browser's answer (checked under the login throttle); check accepts
// the user first, in the write, and may change it (spending a step). A
// first factor comes with recovery codes (returned, the only time they
// are seen). The events are written in the same transaction.
func (s *Service) confirmPasskey(ctx context.Context, user storage.User, attempt string, response []byte, actor string, check func(*storage.User) error) (storage.User, FactorInfo, []string, error) {
	if len(bytes.TrimSpace(response)) == 0 {
		return storage.User{}, FactorInfo{}, nil, tether.Invalid("credential", "credential_required", "credential is required: the new passkey")
	}
	if len(response) > maxPasskeyResponse {
		return storage.User{}, FactorInfo{}, nil, errPasskeyMalformed
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return storage.User{}, FactorInfo{}, nil, errPasskeyMalformed
	}
	m := user.MFA
	if m == nil || m.Pending == nil || m.Pending.Kind != storage.FactorWebAuthn || m.Pending.Attempt != attempt ||
		m.Pending.WebAuthn == nil || !s.now().Before(m.Pending.ExpiresAt) {
		return storage.User{}, FactorInfo{}, nil, errNoPendingPasskey
	}
	pending := m.Pending.Clone()
	var session webauthn.SessionData
	if err := json.Unmarshal(pending.WebAuthn.Ceremony, &session); err != nil {
		return storage.User{}, FactorInfo{}, nil, fmt.Errorf("pending passkey ceremony: %w", err)
	}
	// The pending factor's expiry is checked above, on this server's clock.
	session.Expires = time.Time{}
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, FactorInfo{}, nil, err
	}
	cred, err := s.passkeys.CreateCredential(passkeyUser{user}, session, parsed)
	if err != nil {
		s.log.InfoContext(ctx, "passkey registration refused", "user", user.ID, "error", err)
		err = fmt.Errorf("%w%w", errPasskeyRejected, errMFAFailed)
		s.settleAttempt(ctx, att, err)
		return storage.User{}, FactorInfo{}, nil, err
	}
	now := s.now().UTC()
	factor := pending
	factor.Attempt, factor.ExpiresAt = "", time.Time{}
	factor.WebAuthn = &storage.WebAuthnCredential{
		ID: cred.ID, PublicKey: cred.PublicKey, AttestationType: cred.AttestationType, AAGUID: cred.Authenticator.AAGUID,
		SignCount: cred.Authenticator.SignCount, UserVerified: cred.Flags.UserVerified,
		BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
	}
	for _, t := range cred.Transport {
		factor.WebAuthn.Transports = append(factor.WebAuthn.Transports, string(t))
	}
	user, codes, err := s.enrollPending(ctx, user, att, now, factor.ID, attempt, actor, storage.FactorWebAuthn, errNoPendingPasskey, check,
		func(m *storage.UserMFA) ([]storage.Factor, error) {
			passkeys := passkeysOf(storage.User{MFA: m})
			if slices.ContainsFunc(passkeys, func(f storage.Factor) bool { return bytes.Equal(f.WebAuthn.ID, cred.ID) }) {
				return nil, errPasskeyTaken
			}
			if len(passkeys) >= maxPasskeys {
				return nil, errTooManyPasskeys
			}
			return append(m.Factors, factor.Clone()), nil
		})
	if err != nil {
		return storage.User{}, FactorInfo{}, nil, err
	}
	return user, factorInfo(factor), codes, nil
}

// ---- enrolling a passkey at sign-in ----

// BeginPasskeyEnrollment starts registering a passkey for the account of
// an enrollmentToken (ErrMFAEnrollment, a native login), in place of the
// authenticator app of BeginEnrollment: the options for the browser's
// navigator.credentials.create().
func (s *Service) BeginPasskeyEnrollment(ctx context.Context, token string) (PasskeySetup, error) {
	if s.passkeys == nil {
		return PasskeySetup{}, ErrPasskeysOff
	}
	st, err := s.readNativeStep(ctx, token, stepEnroll)
	if err != nil {
		return PasskeySetup{}, err
	}
	return s.beginPasskey(ctx, st.UserID, st.ID, st.expiresAt(), "", st.stillEnrolling)
}

// LoginEnrolledPasskey is the end of a native login that ErrMFAEnrollment
// interrupted, with a passkey: its enrollmentToken, after
// BeginPasskeyEnrollment, and the browser's new credential. The passkey is
// registered, the account's recovery codes made (returned, shown once)
// and the session the login asked for opened, with amr ["pwd","hwk"] (or
// "swk").
func (s *Service) LoginEnrolledPasskey(ctx context.Context, token string, response []byte) (Grant, []string, error) {
	ev := s.event(ctx, "login", "failure")
	fail := s.failStep(ctx, &ev)
	if s.passkeys == nil {
		return Grant{}, nil, ErrPasskeysOff
	}
	st, err := s.readNativeStep(ctx, token, stepEnroll)
	if err != nil {
		return Grant{}, nil, fail(err)
	}
	var codes []string
	g, err := s.finishStep(ctx, st, &ev, fail, func() (storage.User, []string, error) {
		user, guard, err := s.enrollingUser(ctx, st, &ev)
		if err != nil {
			return storage.User{}, nil, err
		}
		user, f, made, err := s.confirmPasskey(ctx, user, st.ID, response, "user:"+user.ID, guard)
		if err != nil {
			return storage.User{}, nil, err
		}
		codes = made
		method := AMRHardwareKey
		if pk := passkeysOf(user); len(pk) > 0 && pk[0].ID == f.ID {
			method = passkeyAMR(pk[0].WebAuthn.BackupEligible)
		}
		return user, []string{AMRPassword, method}, nil
	})
	if err != nil {
		return Grant{}, nil, err
	}
	return g, codes, nil
}

// ---- sign-in ----

// stepChallenge is the WebAuthn challenge of sign-in step st: it is made
// of the step's random id, so it is new with every step, and an answer to
// it completes that step alone, once.
func stepChallenge(st step) []byte {
	h := sha256.Sum256([]byte("tether passkey sign-in\x00" + st.ID + "\x00" + st.UserID))
	return h[:]
}

// assertion is the WebAuthn assertion of step st for u: the options for
// the browser, and what the answer is checked against.
func (s *Service) assertion(u storage.User, st step) (*protocol.CredentialAssertion, webauthn.SessionData, error) {
	if len(passkeysOf(u)) == 0 {
		return nil, webauthn.SessionData{}, errNoPasskey
	}
	a, session, err := s.passkeys.BeginLogin(passkeyUser{u},
		webauthn.WithChallenge(stepChallenge(st)),
		webauthn.WithUserVerification(protocol.VerificationPreferred),
	)
	if err != nil {
		return nil, webauthn.SessionData{}, fmt.Errorf("begin passkey sign-in: %w", err)
	}
	// The step's expiry is checked on this server's clock (readStep), not
	// the library's.
	session.Expires = time.Time{}
	return a, *session, nil
}

// stepForPasskey reads a native login's mfaToken and its account, for a
// passkey.
func (s *Service) stepForPasskey(ctx context.Context, token string) (step, error) {
	if s.passkeys == nil {
		return step{}, ErrPasskeysOff
	}
	st, err := s.readNativeStep(ctx, token, stepMFA)
	return st, err
}

// BeginPasskeyLogin is the WebAuthn assertion (the options for the
// browser's navigator.credentials.get()) that continues a native login
// ErrMFARequired interrupted, with its mfaToken. It changes nothing: asked
// again, it gives the same challenge, which one answer can use once.
func (s *Service) BeginPasskeyLogin(ctx context.Context, token string) (*protocol.CredentialAssertion, error) {
	st, err := s.stepForPasskey(ctx, token)
	if err != nil {
		return nil, err
	}
	user, err := s.store.GetUser(ctx, st.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errStepInvalid
	}
	if err != nil {
		return nil, err
	}
	switch {
	case passwordStamp(user) != st.Stamp:
		return nil, errStepInvalid
	case stepSpent(user, st):
		return nil, errStepUsed
	}
	a, _, err := s.assertion(user, st)
	return a, err
}

// LoginPasskey is the end of a native login that ErrMFARequired
// interrupted, with a passkey: its mfaToken and the browser's answer to
// BeginPasskeyLogin's assertion (a PublicKeyCredential as JSON). It opens
// the session the login asked for, as LoginSecondFactor does, with amr
// ["pwd","hwk"] (or "swk" for a passkey that may be synced). A refused
// answer is ErrPasskeyWrong, counted in the login throttle.
func (s *Service) LoginPasskey(ctx context.Context, token string, response []byte) (Grant, error) {
	ev := s.event(ctx, "login", "failure")
	fail := s.failStep(ctx, &ev)
	st, err := s.stepForPasskey(ctx, token)
	if err != nil {
		return Grant{}, fail(err)
	}
	return s.finishStep(ctx, st, &ev, fail, func() (storage.User, []string, error) {
		return s.provePasskey(ctx, st, response, &ev)
	})
}

// provePasskey checks a passkey's answer to step st under the login
// throttle, as proveStep checks a code: the answer must be signed by a
// passkey of the step's account, over the step's challenge, for this
// relying party and one of its origins, with a signature counter above
// the last one seen. The counter and flags are updated in the same write
// that marks st completed.
func (s *Service) provePasskey(ctx context.Context, st step, response []byte, ev *storage.Event) (storage.User, []string, error) {
	if len(bytes.TrimSpace(response)) == 0 {
		return storage.User{}, nil, tether.Invalid("credential", "credential_required", "credential is required: the passkey's answer")
	}
	if len(response) > maxPasskeyResponse {
		return storage.User{}, nil, errPasskeyMalformed
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return storage.User{}, nil, errPasskeyMalformed
	}
	user, err := s.stepUser(ctx, st, ev)
	if err != nil {
		return storage.User{}, nil, err
	}
	_, session, err := s.assertion(user, st)
	if err != nil {
		return storage.User{}, nil, err
	}
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, nil, err
	}
	now := s.now().UTC()
	var (
		method string
		why    error
	)
	user, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		if err := spendStep(&cur, st, now); err != nil {
			return cur, err
		}
		method, why, err = s.usePasskey(&cur, session, parsed, now)
		return cur, err
	})
	s.settleAttempt(ctx, att, err)
	s.logRefusal(ctx, st.UserID, why, err)
	if err != nil {
		return storage.User{}, nil, err
	}
	return user, []string{AMRPassword, method}, nil
}

// usePasskey checks a passkey's answer against session for cur, in the
// write that uses it: it must be signed by one of cur's passkeys, over
// the session's challenge, for this relying party and one of its origins,
// with a signature counter above the last one seen; the counter and
// flags are then updated in cur. It returns the amr, and why an answer
// was refused (for the log).
func (s *Service) usePasskey(cur *storage.User, session webauthn.SessionData, parsed *protocol.ParsedCredentialAssertionData, now time.Time) (string, error, error) {
	cred, err := s.passkeys.ValidateLogin(passkeyUser{*cur}, session, parsed)
	if err != nil {
		return "", err, passkeyWrong()
	}
	if cred.Authenticator.CloneWarning {
		return "", errClonedKey, fmt.Errorf("%w%w", passkeyWrong(), errClonedKey)
	}
	i := slices.IndexFunc(cur.MFA.Factors, func(f storage.Factor) bool {
		return f.Kind == storage.FactorWebAuthn && f.WebAuthn != nil && bytes.Equal(f.WebAuthn.ID, cred.ID)
	})
	if i < 0 {
		return "", storage.ErrNotFound, passkeyWrong()
	}
	f := &cur.MFA.Factors[i]
	f.WebAuthn.SignCount, f.WebAuthn.UserVerified, f.WebAuthn.BackupState = cred.Authenticator.SignCount, cred.Flags.UserVerified, cred.Flags.BackupState
	f.LastUsedAt = now
	return passkeyAMR(f.WebAuthn.BackupEligible), nil, nil
}

// logRefusal logs why a passkey's answer was refused: a counter gone
// backwards as a warning.
func (s *Service) logRefusal(ctx context.Context, userID string, why, err error) {
	switch {
	case err == nil:
	case errors.Is(err, errClonedKey):
		s.log.WarnContext(ctx, "a passkey's signature counter went backwards: it may have been copied; refused", "user", userID)
	case why != nil:
		s.log.InfoContext(ctx, "passkey answer refused", "user", userID, "error", why)
	}
}

// ---- confirming a change to one's own factors ----

// PasskeyReauth is a passkey challenge with which a signed-in person
// confirms a change to their factors (Reauth.PasskeyToken, Passkey).
type PasskeyReauth struct {
	Token     string
	Options   *protocol.CredentialAssertion
	ExpiresAt time.Time
}

var errReauthPasskey = tether.Invalid("passkeyToken", "passkey_token_invalid", "the passkey's challenge is not valid for this session, expired or used: ask for a new one")

// BeginPasskeyReauth makes a passkey challenge for the user behind id to
// confirm one change to their factors, from this session, within five
// minutes.
func (s *Service) BeginPasskeyReauth(ctx context.Context, id Identity) (PasskeyReauth, error) {
	if s.passkeys == nil {
		return PasskeyReauth{}, ErrPasskeysOff
	}
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return PasskeyReauth{}, err
	}
	if len(passkeysOf(user)) == 0 {
		return PasskeyReauth{}, errNoPasskey
	}
	tok, exp, err := s.newStep(ctx, user, stepReauth, mfaStepTTL, step{Session: id.Session.ID})
	if err != nil {
		return PasskeyReauth{}, err
	}
	st, err := s.readStep(ctx, tok, stepReauth)
	if err != nil {
		return PasskeyReauth{}, err
	}
	a, _, err := s.assertion(user, st)
	if err != nil {
		return PasskeyReauth{}, err
	}
	return PasskeyReauth{Token: tok, Options: a, ExpiresAt: exp}, nil
}

// reauthPasskey checks a passkey's answer to a challenge of
// BeginPasskeyReauth for id's session, used once, under the login
// throttle.
func (s *Service) reauthPasskey(ctx context.Context, id Identity, user storage.User, r Reauth) (storage.User, error) {
	if s.passkeys == nil {
		return storage.User{}, ErrPasskeysOff
	}
	if len(bytes.TrimSpace(r.Passkey)) == 0 {
		return storage.User{}, tether.Invalid("credential", "credential_required", "credential is required: the passkey's answer")
	}
	st, err := s.readStep(ctx, r.PasskeyToken, stepReauth)
	if err != nil || st.Session != id.Session.ID || st.UserID != user.ID {
		return storage.User{}, errReauthPasskey
	}
	if len(r.Passkey) > maxPasskeyResponse {
		return storage.User{}, errPasskeyMalformed
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(r.Passkey)
	if err != nil {
		return storage.User{}, errPasskeyMalformed
	}
	_, session, err := s.assertion(user, st)
	if err != nil {
		return storage.User{}, err
	}
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, err
	}
	now := s.now().UTC()
	var why error
	user, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		if err := spendStep(&cur, st, now); err != nil {
			return cur, errReauthPasskey
		}
		_, why, err = s.usePasskey(&cur, session, parsed, now)
		return cur, err
	})
	s.settleAttempt(ctx, att, err)
	s.logRefusal(ctx, st.UserID, why, err)
	if errors.Is(err, errMFAFailed) {
		return storage.User{}, fmt.Errorf("%w%w", tether.Invalid("credential", "credential_rejected", "the passkey's answer does not fit this challenge: try again"), errMFAFailed)
	}
	return user, err
}
