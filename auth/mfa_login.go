package auth

// The second step of a sign-in: after a right password, an account with a
// second factor proves it (ErrMFARequired and its mfaToken), and one that
// must have one and has none enrolls it (ErrMFAEnrollment and its
// enrollmentToken). Native logins end with their tokens; the OAuth
// sign-in pages with a SignedIn, as SignIn does.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// secondStep is where a sign-in whose password was right goes next: nil
// when user has no second step due; else the error that interrupts it,
// carrying the step's token, once the step is audited
// (login.mfa_challenge). A client that cannot take a second step gets
// ErrMFAUnsupported.
func (s *Service) secondStep(ctx context.Context, user storage.User, req LoginRequest, ev *storage.Event) error {
	purpose := s.dueStep(user)
	if purpose == "" {
		return nil
	}
	ev.UserID, ev.Username = user.ID, user.Username
	if user.Disabled {
		// Said before any code is asked for.
		return ErrAccountDisabled
	}
	if !req.SecondFactor {
		return ErrMFAUnsupported
	}
	st := step{Client: req.ClientID}
	if req.ClientID == "" {
		st.Login = &stepLogin{Device: req.Device, DeviceRef: req.DeviceRef, Persistent: req.Persistent}
	}
	ttl, interrupt, member := mfaStepTTL, ErrMFARequired, "mfaToken"
	methods := methodsOf(user.MFA)
	if purpose == stepEnroll {
		ttl, interrupt, member = enrollStepTTL, ErrMFAEnrollment, "enrollmentToken"
		methods = []string{string(storage.FactorTOTP)}
		if s.passkeys != nil && req.ClientID == "" {
			// A native client (the console) may enroll a passkey instead.
			methods = append(methods, string(storage.FactorWebAuthn))
		}
	}
	tok, exp, err := s.newStep(ctx, user, purpose, ttl, st)
	if err != nil {
		return err
	}
	challenge := *ev
	challenge.Action, challenge.Outcome, challenge.Reason = "login.mfa_challenge", "success", string(interrupt.Code)
	challenge.Detail = mergeDetail(ev.Detail, map[string]string{"step": string(purpose), "methods": strings.Join(methods, ",")})
	s.record(ctx, challenge)
	return interrupt.With(member, tok).With("expiresAt", exp).With("methods", methods)
}

// mergeDetail is a copy of a with b's members.
func mergeDetail(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// amrDetail notes on ev how the person signed in.
func amrDetail(ev *storage.Event, amr []string) {
	if ev.Detail == nil {
		ev.Detail = map[string]string{}
	}
	ev.Detail["amr"] = strings.Join(amr, ",")
}

// amrOf is the AMR of a request: what it says, or a password alone.
func amrOf(req LoginRequest) []string {
	if len(req.AMR) == 0 {
		return []string{AMRPassword}
	}
	return req.AMR
}

// auditStepFailure records ev as failed with err, as mfa_failed for a
// wrong code.
func (s *Service) failStep(ctx context.Context, ev *storage.Event) func(error) error {
	return func(err error) error {
		ev.Reason = reasonOf(err)
		if errors.Is(err, errMFAFailed) {
			ev.Reason = "mfa_failed"
		}
		s.record(ctx, *ev)
		return err
	}
}

// proveStep checks the second factor code of the mfa step st, under the
// login throttle: the attempt is counted before the code is checked, as a
// password's is, so codes fired at once cannot all slip through before
// the first failure is counted; a right code takes it back and forgets
// the account's failures from this address. The code is used up (a TOTP
// step, a recovery code) in the same write that marks st completed. It
// returns the user and how they proved it.
func (s *Service) proveStep(ctx context.Context, st step, code string, ev *storage.Event) (storage.User, []string, error) {
	if strings.TrimSpace(code) == "" {
		return storage.User{}, nil, tether.Invalid("code", "code_required", "code is required: a code from the authenticator app, or a recovery code")
	}
	user, err := s.stepUser(ctx, st, ev)
	if err != nil {
		return storage.User{}, nil, err
	}
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, nil, err
	}
	now := s.now().UTC()
	var method string
	var wrong error
	var locked time.Time
	user, err = s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		wrong, locked = nil, time.Time{}
		if err := spendStep(&cur, st, now); err != nil {
			return cur, err
		}
		next, m, err := s.useCode(cur, code, now)
		if errors.Is(err, errMFAFailed) {
			// A wrong code is written down with the step left open (up to
			// a few), in this same write, so codes fired at once all count.
			wrong, locked = err, codeFailed(&cur, st, now)
			return cur, nil
		}
		if err != nil {
			return cur, err
		}
		codeRight(next.MFA, st)
		method = m
		return next, nil
	})
	if err == nil && wrong != nil {
		err = wrong
	}
	s.settleAttempt(ctx, att, err)
	if !locked.IsZero() {
		lock := s.event(ctx, "user.mfa_locked", "failure")
		lock.UserID, lock.Username, lock.Reason = user.ID, user.Username, "too_many_codes"
		lock.Detail = map[string]string{"until": locked.Format(time.RFC3339)}
		s.record(ctx, lock)
		s.log.WarnContext(ctx, "second factor codes locked after wrong codes in a row", "user", user.ID, "until", locked)
	}
	if err != nil {
		return storage.User{}, nil, err
	}
	return user, []string{AMRPassword, method}, nil
}

// Limits on wrong second-factor codes: a six-digit code is one of a
// million, and the clock skew takes three, so a password thief must not
// get many guesses. A sign-in step takes maxStepWrong wrong codes, then
// is spent (sign in again); maxCodeFailures wrong codes in a row, over
// every sign-in, lock the account's authenticator-app codes for an hour,
// then two, four … up to a day (recovery codes and passkeys still serve,
// and an admin's reset clears it); a right code resets both counts.
const (
	maxStepWrong    = 5
	maxCodeFailures = 10
	codeLockFirst   = time.Hour
	codeLockMax     = 24 * time.Hour
)

// codeFailed writes down a wrong code of step st in u: the step stays open
// until it has taken maxStepWrong, and the account's count goes up. It
// returns when the account's codes are locked until, if this one locked
// them.
func codeFailed(u *storage.User, st step, now time.Time) time.Time {
	m := u.MFA
	m.Spent = slices.DeleteFunc(m.Spent, func(sp storage.SpentStep) bool { return sp.ID == st.ID })
	m.Tried = slices.DeleteFunc(m.Tried, func(t storage.TriedStep) bool { return !now.Before(t.Until) })
	i := slices.IndexFunc(m.Tried, func(t storage.TriedStep) bool { return t.ID == st.ID })
	if i < 0 {
		m.Tried = append(m.Tried, storage.TriedStep{ID: st.ID, Until: st.expiresAt()})
		i = len(m.Tried) - 1
	}
	m.Tried[i].Wrong++
	if m.Tried[i].Wrong >= maxStepWrong {
		m.Tried = slices.Delete(m.Tried, i, i+1)
		m.Spent = append(m.Spent, storage.SpentStep{ID: st.ID, Until: st.expiresAt()})
	}
	m.CodeFailures++
	if m.CodeFailures < maxCodeFailures {
		return time.Time{}
	}
	d := min(codeLockFirst<<min(m.CodeLocks, 8), codeLockMax)
	m.CodeFailures, m.CodeLocks, m.CodesLockedUntil = 0, m.CodeLocks+1, now.Add(d)
	return m.CodesLockedUntil
}

// codeRight clears the counts of wrong codes once a right one is given.
func codeRight(m *storage.UserMFA, st step) {
	m.CodeFailures, m.CodeLocks, m.CodesLockedUntil = 0, 0, time.Time{}
	m.Tried = slices.DeleteFunc(m.Tried, func(t storage.TriedStep) bool { return t.ID == st.ID })
}

// settleAttempt ends a throttled attempt at a code: a right one is taken
// back (the account's failures from this address forgotten), a wrong one
// stays counted, one never checked is taken back.
func (s *Service) settleAttempt(ctx context.Context, att *attempt, err error) {
	var terr error
	switch {
	case err == nil:
		terr = s.throttle.succeeded(ctx, att)
	case !errors.Is(err, errMFAFailed):
		terr = s.throttle.abandoned(ctx, att)
	}
	if terr != nil {
		s.log.ErrorContext(ctx, "login throttle not updated", "error", terr)
	}
}

// stepUser reads the account of a step.
func (s *Service) stepUser(ctx context.Context, st step, ev *storage.Event) (storage.User, error) {
	user, err := s.store.GetUser(ctx, st.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, errStepInvalid
	}
	if err != nil {
		return storage.User{}, err
	}
	ev.UserID, ev.Username = user.ID, user.Username
	return user, nil
}

// LoginSecondFactor is the end of a native login that ErrMFARequired
// interrupted: its mfaToken and a code from the account's authenticator
// app or a recovery code. It opens the session the login asked for, as
// Login does, with amr ["pwd","otp"] or ["pwd","recovery"]. A wrong code
// is ErrCodeWrong, counted in the login throttle; the token stays usable
// until it expires or a right code completes it, after which it is
// refused.
func (s *Service) LoginSecondFactor(ctx context.Context, token, code string) (Grant, error) {
	ev := s.event(ctx, "login", "failure")
	fail := s.failStep(ctx, &ev)
	st, err := s.readNativeStep(ctx, token, stepMFA)
	if err != nil {
		return Grant{}, fail(err)
	}
	return s.finishStep(ctx, st, &ev, fail, func() (storage.User, []string, error) {
		return s.proveStep(ctx, st, code, &ev)
	})
}

// enrollmentEvents are the audit events of u enrolling the factor id of
// kind, and whether it comes with new recovery codes: a first factor does,
// and so does one whose account has none left; a replaced factor keeps
// the codes there are.
func enrollmentEvents(ctx context.Context, now time.Time, actor string, u storage.User, id string, kind storage.FactorKind) (newCodes bool, events []storage.Event) {
	enrolled := storage.NewEvent(ctx, now, "user.mfa_enrolled", "success", actor)
	enrolled.UserID, enrolled.Username = u.ID, u.Username
	enrolled.Detail = map[string]string{"factor": id, "kind": string(kind)}
	events = []storage.Event{enrolled}
	if newCodes = !u.MFA.Confirmed() || len(u.MFA.RecoveryCodes) == 0; newCodes {
		recovery := storage.NewEvent(ctx, now, "user.recovery_codes", "success", actor)
		recovery.UserID, recovery.Username = u.ID, u.Username
		recovery.Detail = map[string]string{"codes": fmt.Sprint(RecoveryCodeCount), "reason": "new factor"}
		events = append(events, recovery)
	}
	return newCodes, events
}

// enrollPending makes the pending factor pendingID (of attempt) one of
// user's factors, in one write with the enrollment's events and, with a
// first factor or when none are left, new recovery codes: returned, the
// only time they are seen. check accepts the user first (and may change
// it); a pending factor gone or expired is noPending; place returns the
// factors the user has with the new one, or refuses it. The throttle's
// reservation att is settled by how the write ended.
func (s *Service) enrollPending(ctx context.Context, user storage.User, att *attempt, now time.Time, pendingID, attempt, actor string,
	kind storage.FactorKind, noPending error, check func(*storage.User) error, place func(m *storage.UserMFA) ([]storage.Factor, error)) (storage.User, []string, error) {
	codes, hashes := newRecoveryCodes()
	newCodes, events := enrollmentEvents(ctx, now, actor, user, pendingID, kind)
	user, err := s.store.UpdateUser(ctx, user.ID, func(cur storage.User) (storage.User, error) {
		if err := check(&cur); err != nil {
			return cur, err
		}
		m := cur.MFA
		if m == nil || m.Pending == nil || m.Pending.ID != pendingID || m.Pending.Attempt != attempt || !now.Before(m.Pending.ExpiresAt) {
			return cur, noPending
		}
		factors, err := place(m)
		if err != nil {
			return cur, err
		}
		if newCodes != (!m.Confirmed() || len(m.RecoveryCodes) == 0) {
			return cur, errChangedMeanwhile
		}
		m.Factors, m.Pending = factors, nil
		if newCodes {
			m.RecoveryCodes, m.RecoveryCodesAt = hashes, now
		}
		cur.UpdatedAt = now
		return cur, nil
	}, storage.WithEvents(events...))
	s.settleAttempt(ctx, att, err)
	if err != nil {
		return storage.User{}, nil, err
	}
	s.written(events...)
	if !newCodes {
		codes = nil
	}
	return user, codes, nil
}

// finishStep ends a native login at its second step st, proven by prove
// (a code, a passkey): the login's request checked again, the session
// opened as Login opens it, with the amr prove gives.
func (s *Service) finishStep(ctx context.Context, st step, ev *storage.Event, fail func(error) error, prove func() (storage.User, []string, error)) (Grant, error) {
	req := st.request()
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return Grant{}, fail(err)
	}
	user, amr, err := prove()
	if err != nil {
		return Grant{}, fail(err)
	}
	req.Username, req.AMR = user.Username, amr
	g, err := s.admitAndOpen(ctx, user, req, deviceName, ev)
	if err != nil {
		return Grant{}, fail(err)
	}
	return g, nil
}

// BeginEnrollment starts enrolling a TOTP factor for the account of an
// enrollmentToken (ErrMFAEnrollment): it returns the secret for the
// person's authenticator app. Asked again with the same token, it returns
// the same secret, so a page shown again shows the code already scanned.
// The factor counts once its first code confirms it (LoginEnrolled,
// SignInEnrolled).
func (s *Service) BeginEnrollment(ctx context.Context, token string) (TOTPSetup, error) {
	st, err := s.readStep(ctx, token, stepEnroll)
	if err != nil {
		return TOTPSetup{}, err
	}
	return s.beginTOTP(ctx, st.UserID, st.ID, st.expiresAt(), st.stillEnrolling)
}

// stillEnrolling reports, for an enrollment step st, whether u may still
// begin enrolling a factor with it: the step is u's as it is now, not
// completed, and u has no factor (one enrolled meanwhile, elsewhere, is
// what u signs in with).
func (st step) stillEnrolling(u storage.User) error {
	switch {
	case passwordStamp(u) != st.Stamp:
		return errStepInvalid
	case stepSpent(u, st):
		return errStepUsed
	case u.MFA.Confirmed():
		return errStepInvalid
	}
	return nil
}

// errChangedMeanwhile is a factor changed by another request while this one
// was made.
var errChangedMeanwhile = tether.NewError(tether.CodeConflict, "the second factors changed meanwhile: try again")

// errSamePending aborts the write of a pending factor that is there
// already.
var errSamePending = errors.New("same pending factor")

// beginTOTP makes a new pending TOTP factor for the user userID, for
// attempt (a step or a session) until expires, once check accepts the
// user; an unexpired one of the same attempt is returned as it is.
func (s *Service) beginTOTP(ctx context.Context, userID, attempt string, expires time.Time, check func(storage.User) error) (TOTPSetup, error) {
	now := s.now().UTC()
	var (
		user    storage.User
		pending storage.Factor
	)
	_, err := s.store.UpdateUser(ctx, userID, func(cur storage.User) (storage.User, error) {
		if err := check(cur); err != nil {
			return cur, err
		}
		if !takesFactors(cur.Role) {
			return cur, fmt.Errorf("a %s enrolling a second factor: %w", cur.Role, ErrForbidden)
		}
		user = cur
		if cur.MFA == nil {
			cur.MFA = &storage.UserMFA{}
		}
		if p := cur.MFA.Pending; p != nil && p.Kind == storage.FactorTOTP && p.Attempt == attempt && now.Before(p.ExpiresAt) {
			pending = p.Clone()
			return cur, errSamePending
		}
		secret := make([]byte, totpSecretLen)
		rand.Read(secret)
		id := storage.NewID(storage.PrefixFactor)
		pending = storage.Factor{
			ID: id, Kind: storage.FactorTOTP, CreatedAt: now, Attempt: attempt, ExpiresAt: expires,
			TOTP: s.sealTOTP(cur.ID, id, secret),
		}
		p := pending.Clone()
		cur.MFA.Pending = &p
		return cur, nil
	})
	if err != nil && !errors.Is(err, errSamePending) {
		if errors.Is(err, storage.ErrNotFound) {
			return TOTPSetup{}, errStepInvalid
		}
		return TOTPSetup{}, err
	}
	return s.totpSetup(user, pending)
}

// confirmTOTP makes the pending factor of attempt a factor of the user
// userID once code is a code of it (checked under the login throttle),
// replacing any TOTP factor the user had; check accepts the user first
// and may change it (spending a step). New recovery codes come with a
// first factor, or when none are left: they are returned, the only time
// they are seen. The events are written in the same transaction.
func (s *Service) confirmTOTP(ctx context.Context, user storage.User, attempt, code, actor string, check func(*storage.User) error) (storage.User, []string, error) {
	if strings.TrimSpace(code) == "" {
		return storage.User{}, nil, tether.Invalid("code", "code_required", "code is required: the code the authenticator app shows")
	}
	if user.MFA == nil || user.MFA.Pending == nil || user.MFA.Pending.Kind != storage.FactorTOTP || user.MFA.Pending.Attempt != attempt {
		return storage.User{}, nil, errNoPending
	}
	pendingID := user.MFA.Pending.ID
	att, err := s.throttle.reserve(ctx, throttleName(user.Username), tether.OriginOf(ctx).IP, false)
	if err != nil {
		return storage.User{}, nil, err
	}
	now := s.now().UTC()
	return s.enrollPending(ctx, user, att, now, pendingID, attempt, actor, storage.FactorTOTP, errNoPending, check, func(m *storage.UserMFA) ([]storage.Factor, error) {
		p := *m.Pending
		secret, err := s.totpSecret(user.ID, p)
		if err != nil {
			return nil, err
		}
		stepAt, ok := matchTOTP(secret, strings.ReplaceAll(strings.TrimSpace(code), " ", ""), now, 0)
		if !ok {
			return nil, wrongCode()
		}
		p.Attempt, p.ExpiresAt, p.LastUsedAt = "", time.Time{}, now
		p.TOTP.LastStep = stepAt
		var kept []storage.Factor
		for _, f := range m.Factors {
			if f.Kind != storage.FactorTOTP {
				kept = append(kept, f)
			}
		}
		return append(kept, p), nil
	})
}

// LoginEnrolled is the end of a native login that ErrMFAEnrollment
// interrupted: its enrollmentToken, after BeginEnrollment, and the first
// code of the new factor. The factor is enrolled, the account's recovery
// codes made (returned, shown once) and the session the login asked for
// opened, with amr ["pwd","otp"].
func (s *Service) LoginEnrolled(ctx context.Context, token, code string) (Grant, []string, error) {
	ev := s.event(ctx, "login", "failure")
	fail := s.failStep(ctx, &ev)
	st, err := s.readNativeStep(ctx, token, stepEnroll)
	if err != nil {
		return Grant{}, nil, fail(err)
	}
	var codes []string
	g, err := s.finishStep(ctx, st, &ev, fail, func() (storage.User, []string, error) {
		user, made, err := s.enrollStep(ctx, st, code, &ev)
		codes = made
		return user, []string{AMRPassword, AMROTP}, err
	})
	if err != nil {
		return Grant{}, nil, err
	}
	return g, codes, nil
}

// enrollStep confirms the authenticator app an enroll step began.
func (s *Service) enrollStep(ctx context.Context, st step, code string, ev *storage.Event) (storage.User, []string, error) {
	user, guard, err := s.enrollingUser(ctx, st, ev)
	if err != nil {
		return storage.User{}, nil, err
	}
	return s.confirmTOTP(ctx, user, st.ID, code, "user:"+user.ID, guard)
}

// enrollingUser reads the user of an enroll step, refusing a step already
// used or an account that has a factor by now, and returns the guard the
// factor's write runs: the same refusal on the user as written, and the
// step spent in that write.
func (s *Service) enrollingUser(ctx context.Context, st step, ev *storage.Event) (storage.User, func(*storage.User) error, error) {
	user, err := s.stepUser(ctx, st, ev)
	if err != nil {
		return storage.User{}, nil, err
	}
	switch {
	case stepSpent(user, st):
		return storage.User{}, nil, errStepUsed
	case user.MFA.Confirmed():
		return storage.User{}, nil, errStepInvalid
	}
	return user, func(u *storage.User) error {
		if u.MFA.Confirmed() {
			return errStepInvalid
		}
		return spendStep(u, st, s.now().UTC())
	}, nil
}

// readNativeStep reads a step token of a native login: one of no OAuth
// client's sign-in page.
func (s *Service) readNativeStep(ctx context.Context, token string, purpose stepPurpose) (step, error) {
	st, err := s.readStep(ctx, token, purpose)
	if err == nil && st.Client != "" {
		err = errStepInvalid
	}
	return st, err
}

// readPageStep reads a step token of an OAuth sign-in page: a step of the
// page's own client, and of none other.
func (s *Service) readPageStep(ctx context.Context, token string, purpose stepPurpose, clientID string) (step, error) {
	st, err := s.readStep(ctx, token, purpose)
	if err == nil && (st.Client == "" || st.Client != clientID) {
		err = errStepInvalid
	}
	return st, err
}

// SignInSecondFactor is the end of a sign-in at an OAuth sign-in page that
// ErrMFARequired interrupted: as SignIn's end, for req (the page's
// request, of the same client as the step).
func (s *Service) SignInSecondFactor(ctx context.Context, req LoginRequest, token, code string) (SignedIn, error) {
	ev := s.loginEvent(ctx, "oauth.sign_in", req)
	fail := s.failStep(ctx, &ev)
	st, err := s.readPageStep(ctx, token, stepMFA, req.ClientID)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	user, amr, err := s.proveStep(ctx, st, code, &ev)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	return s.signedIn(ctx, user, req, deviceName, amr, &ev, fail)
}

// signedIn is the end of a sign-in at a page: the account and handset
// admitted, the success audited.
func (s *Service) signedIn(ctx context.Context, user storage.User, req LoginRequest, deviceName string, amr []string, ev *storage.Event, fail func(error) error) (SignedIn, error) {
	dev, events, err := s.admitFor(ctx, user, req, deviceName, ev)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	amrDetail(ev, amr)
	s.record(ctx, append(events, withOutcome(*ev, "success"))...)
	return SignedIn{User: user, Device: dev, DeviceName: deviceName, At: s.now().UTC(), AMR: amr}, nil
}

// Enrolled is the end of an enrollment at an OAuth sign-in page: the
// recovery codes, shown once, and the token that resumes the sign-in
// (SignInResume) once the person has saved them.
type Enrolled struct {
	RecoveryCodes []string
	Resume        string
	ExpiresAt     time.Time
}

// SignInEnrolled confirms, at an OAuth sign-in page, the factor that
// BeginEnrollment began with the page's enrollmentToken.
func (s *Service) SignInEnrolled(ctx context.Context, req LoginRequest, token, code string) (Enrolled, error) {
	ev := s.loginEvent(ctx, "oauth.sign_in", req)
	fail := s.failStep(ctx, &ev)
	st, err := s.readPageStep(ctx, token, stepEnroll, req.ClientID)
	if err != nil {
		return Enrolled{}, fail(err)
	}
	user, codes, err := s.enrollStep(ctx, st, code, &ev)
	if err != nil {
		return Enrolled{}, fail(err)
	}
	resume, exp, err := s.newStep(ctx, user, stepResume, resumeStepTTL, step{Client: st.Client, AMR: []string{AMRPassword, AMROTP}})
	if err != nil {
		return Enrolled{}, err
	}
	return Enrolled{RecoveryCodes: codes, Resume: resume, ExpiresAt: exp}, nil
}

// SignInResume finishes, at an OAuth sign-in page, a sign-in whose factor
// SignInEnrolled enrolled: as SignIn's end, once.
func (s *Service) SignInResume(ctx context.Context, req LoginRequest, token string) (SignedIn, error) {
	ev := s.loginEvent(ctx, "oauth.sign_in", req)
	fail := s.failStep(ctx, &ev)
	st, err := s.readPageStep(ctx, token, stepResume, req.ClientID)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	deviceName, err := s.checkLoginRequest(&req)
	if err != nil {
		return SignedIn{}, fail(err)
	}
	if _, err := s.stepUser(ctx, st, &ev); err != nil {
		return SignedIn{}, fail(err)
	}
	user, err := s.store.UpdateUser(ctx, st.UserID, func(cur storage.User) (storage.User, error) {
		return cur, spendStep(&cur, st, s.now().UTC())
	})
	if err != nil {
		return SignedIn{}, fail(err)
	}
	return s.signedIn(ctx, user, req, deviceName, st.AMR, &ev, fail)
}
