package auth

// A signed-in manager's own second factors, and an admin's reset of
// another account's. Every change a person makes to their own factors
// needs a fresh proof (Reauth): a code of a factor they have, or their
// password while they have none; a stolen access token alone changes
// nothing.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// pendingTTL is how long a signed-in person has to confirm a new factor.
const pendingTTL = 10 * time.Minute

// Reauth is the fresh proof a change to one's own second factors takes: a
// code of a factor one has (or a recovery code), or, while one has none,
// one's password.
type Reauth struct {
	Password string
	Code     string
	// PasskeyToken and Passkey: a passkey's answer (a PublicKeyCredential
	// as JSON) to the challenge of BeginPasskeyReauth, in place of a code.
	PasskeyToken string
	Passkey      []byte
}

var (
	errReauthCode     = tether.Invalid("code", "code_required", "code is required: a code from your authenticator app, or a recovery code")
	errReauthPassword = tether.Invalid("password", "password_required", "password is required: your password, to confirm it is you")
	errReauthWrong    = tether.Invalid("password", "password_wrong", "the password is wrong")
)

// codeWrongField is a wrong code given as a request's field "code".
func codeWrongField() error {
	return fmt.Errorf("%w%w", tether.Invalid("code", "code_wrong", "the code is wrong, or was used already"), errMFAFailed)
}

// ownFactors returns the user behind id, fresh from the store, if their
// role takes second factors.
func (s *Service) ownFactors(ctx context.Context, id Identity) (storage.User, error) {
	if !takesFactors(id.User.Role) {
		return storage.User{}, fmt.Errorf("a %s managing second factors: %w", id.User.Role, ErrForbidden)
	}
	return s.store.GetUser(ctx, id.User.ID)
}

// reauth checks r for user (fresh from the store), signed in as id: a
// code of one of their factors, used up, or a passkey's answer to a
// challenge made for id's session, under the login throttle; or, while
// they have none, their password, under the throttle too.
func (s *Service) reauth(ctx context.Context, id Identity, user storage.User, r Reauth) (storage.User, error) {
	if user.MFA.Confirmed() && (len(r.Passkey) > 0 || r.PasskeyToken != "") {
		return s.reauthPasskey(ctx, id, user, r)
	}
	if !user.MFA.Confirmed() {
		if r.Password == "" {
			return storage.User{}, errReauthPassword
		}
		checked, err := s.guardedCheck(ctx, user.Username, r.Password, false)
		if errors.Is(err, ErrInvalidCredentials) || (err == nil && checked.ID != user.ID) {
			return storage.User{}, errReauthWrong
		}
		return checked, err
	}
	if strings.TrimSpace(r.Code) == "" {
		return storage.User{}, errReauthCode
	}
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, err
	}
	now := s.now().UTC()
	user, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		next, _, err := s.useCode(cur, r.Code, now)
		return next, err
	})
	s.settleAttempt(ctx, att, err)
	if errors.Is(err, errMFAFailed) {
		return storage.User{}, codeWrongField()
	}
	return user, err
}

// ownEvent starts the audit event of a change to one's own factors.
func (s *Service) ownEvent(ctx context.Context, id Identity, action string) storage.Event {
	ev := s.event(ctx, action, "failure")
	ev.Actor, ev.UserID, ev.Username, ev.SessionID = id.Principal().String(), id.User.ID, id.User.Username, id.Session.ID
	return ev
}

// Factors returns the second factors of the user behind id.
func (s *Service) Factors(ctx context.Context, id Identity) (MFAStatus, error) {
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return MFAStatus{}, err
	}
	return s.MFAOf(user), nil
}

// BeginTOTP starts enrolling a TOTP factor (a new authenticator app) for
// the user behind id, after r proves it is them: it returns the secret.
// The factor replaces the user's TOTP factor, if they have one, once
// ConfirmTOTP confirms it from the same session within ten minutes.
func (s *Service) BeginTOTP(ctx context.Context, id Identity, r Reauth) (TOTPSetup, error) {
	ev := s.ownEvent(ctx, id, "user.mfa_enrolled")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return TOTPSetup{}, err
	}
	if _, err := s.reauth(ctx, id, user, r); err != nil {
		return TOTPSetup{}, fail(err)
	}
	return s.beginTOTP(ctx, user.ID, id.Session.ID, s.now().Add(pendingTTL).UTC(), func(storage.User) error { return nil })
}

// ConfirmTOTP enrolls the factor BeginTOTP began in the same session, once
// code is its first code. A first factor comes with the account's
// recovery codes (returned, the only time they are seen).
func (s *Service) ConfirmTOTP(ctx context.Context, id Identity, code string) (FactorInfo, []string, error) {
	ev := s.ownEvent(ctx, id, "user.mfa_enrolled")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return FactorInfo{}, nil, err
	}
	user, codes, err := s.confirmTOTP(ctx, user, id.Session.ID, code, id.Principal().String(), func(*storage.User) error { return nil })
	if errors.Is(err, errMFAFailed) {
		return FactorInfo{}, nil, fail(codeWrongField())
	}
	if err != nil {
		return FactorInfo{}, nil, fail(err)
	}
	var f storage.Factor
	for _, g := range user.MFA.Factors {
		if g.Kind == storage.FactorTOTP {
			f = g
		}
	}
	return factorInfo(f), codes, nil
}

// RemoveFactor removes one of the second factors of the user behind id,
// after r proves it is them. An account whose role must have a second
// factor cannot remove its last (it replaces it instead); with the last
// one go the recovery codes.
func (s *Service) RemoveFactor(ctx context.Context, id Identity, factorID string, r Reauth) error {
	ev := s.ownEvent(ctx, id, "user.mfa_removed")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return err
	}
	removable := func(u storage.User) error {
		if u.MFA == nil || !slices.ContainsFunc(u.MFA.Factors, func(f storage.Factor) bool { return f.ID == factorID }) {
			return errFactorNotFound
		}
		if len(u.MFA.Factors) == 1 && s.MFARequiredFor(u.Role) {
			return errKeepFactor
		}
		return nil
	}
	if err := removable(user); err != nil {
		return fail(err)
	}
	if user, err = s.reauth(ctx, id, user, r); err != nil {
		return fail(err)
	}
	now := s.now().UTC()
	ev = withOutcome(ev, "success")
	ev.Detail = map[string]string{"factor": factorID}
	_, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		if err := removable(cur); err != nil {
			return cur, err
		}
		m := cur.MFA
		i := slices.IndexFunc(m.Factors, func(f storage.Factor) bool { return f.ID == factorID })
		ev.Detail["kind"] = string(m.Factors[i].Kind)
		m.Factors = slices.Delete(m.Factors, i, i+1)
		if len(m.Factors) == 0 {
			// Recovery codes stand in for a factor: none is left.
			m.Factors, m.RecoveryCodes, m.RecoveryCodesAt = nil, nil, time.Time{}
		}
		cur.UpdatedAt = now
		return cur, nil
	}, storage.WithEvents(ev))
	if err != nil {
		ev.Outcome = "failure"
		return fail(err)
	}
	s.written(ev)
	return nil
}

// RegenerateRecoveryCodes replaces the recovery codes of the user behind
// id with new ones (returned, the only time they are seen), after r proves
// it is them with a code of a factor.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, id Identity, r Reauth) ([]string, error) {
	ev := s.ownEvent(ctx, id, "user.recovery_codes")
	fail := s.failStep(ctx, &ev)
	user, err := s.ownFactors(ctx, id)
	if err != nil {
		return nil, err
	}
	if !user.MFA.Confirmed() {
		return nil, fail(errNoFactor)
	}
	if user, err = s.reauth(ctx, id, user, r); err != nil {
		return nil, fail(err)
	}
	codes, hashes := newRecoveryCodes()
	now := s.now().UTC()
	ev = withOutcome(ev, "success")
	ev.Detail = map[string]string{"codes": fmt.Sprint(RecoveryCodeCount), "reason": "regenerated"}
	_, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		if !cur.MFA.Confirmed() {
			return cur, errNoFactor
		}
		cur.MFA.RecoveryCodes, cur.MFA.RecoveryCodesAt = hashes, now
		cur.UpdatedAt = now
		return cur, nil
	}, storage.WithEvents(ev))
	if err != nil {
		ev.Outcome = "failure"
		return nil, fail(err)
	}
	s.written(ev)
	return codes, nil
}
