package auth

// Sign-in steps: the token that carries a sign-in from its password to its
// second factor. It is opaque to clients, MAC'd with a key derived from
// the signing keys (so every server sharing the store accepts it, and none
// after an emergency key revocation), short-lived, bound to the account
// and its password, and used once: the id of a completed step is kept in
// the user's record, written in the same transaction that uses up the
// code, until the step expires.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"tether"
	"tether/device"
	"tether/storage"
)

// stepPurpose is what a sign-in step token is for.
type stepPurpose string

const (
	// stepMFA: prove a second factor (the mfaToken).
	stepMFA stepPurpose = "mfa"
	// stepEnroll: enroll a first factor (the enrollmentToken).
	stepEnroll stepPurpose = "enroll"
	// stepResume: finish a sign-in at a sign-in page whose factor was
	// just enrolled, once the person has saved their recovery codes.
	stepResume stepPurpose = "resume"
	// stepReauth: a signed-in person confirms a change to their factors
	// with a passkey (the passkeyToken).
	stepReauth stepPurpose = "reauth"
)

// How long each step waits for the person: a code is at hand; setting up
// an app takes longer.
const (
	mfaStepTTL    = 5 * time.Minute
	enrollStepTTL = 10 * time.Minute
	resumeStepTTL = 10 * time.Minute
	// maxStepToken bounds a step token (it may carry a handset payload).
	maxStepToken = 16 << 10
	stepPrefix   = "stp_"
)

// The errors of step tokens.
var (
	errStepInvalid = tether.NewError(tether.CodeTokenInvalid, "the sign-in step is not valid: sign in again")
	errStepExpired = tether.NewError(tether.CodeTokenExpired, "the sign-in step has expired: sign in again")
	errStepUsed    = tether.NewError(tether.CodeTokenAlreadyUsed, "the sign-in step was already completed: sign in again")
)

// step is what a step token says.
type step struct {
	ID      string      `json:"id"`
	Purpose stepPurpose `json:"p"`
	// UserID is the account whose password was right.
	UserID string `json:"sub"`
	// Expires is Unix seconds.
	Expires int64 `json:"exp"`
	// Client is the OAuth client whose sign-in page took the password, or
	// "" for the native API: a step continues only where it began.
	Client string `json:"cid,omitempty"`
	// Stamp binds the step to the account's password as it was: a
	// password changed meanwhile voids it.
	Stamp string `json:"stp"`
	// Login is what a native login asked for, to open its session with.
	Login *stepLogin `json:"login,omitempty"`
	// AMR is how a resumed sign-in was proven.
	AMR []string `json:"amr,omitempty"`
	// Session is the session a reauth step was made for, which alone may
	// use it.
	Session string `json:"sid,omitempty"`
}

// stepLogin is the login request a native step continues.
type stepLogin struct {
	Device     *device.Payload `json:"device,omitempty"`
	DeviceRef  string          `json:"deviceRef,omitempty"`
	Persistent bool            `json:"persistent,omitempty"`
}

func (st step) expiresAt() time.Time { return time.Unix(st.Expires, 0).UTC() }

// request is the login request a native step continues.
func (st step) request() LoginRequest {
	req := LoginRequest{SecondFactor: true}
	if st.Login != nil {
		req.Device, req.DeviceRef, req.Persistent = st.Login.Device, st.Login.DeviceRef, st.Login.Persistent
	}
	return req
}

// passwordStamp is a short digest of when u's password last changed, and
// of when an admin last reset u's factors: a step made before either (a
// password reset or change, a factor reset) does not match it after. (Not
// of the hash itself: a login may rehash the same password with newer
// parameters.)
func passwordStamp(u storage.User) string {
	stamp := u.ID + "\x00" + u.PasswordChangedAt.UTC().Format(time.RFC3339Nano)
	if u.MFA != nil && !u.MFA.ResetAt.IsZero() {
		// An admin's reset of the factors voids the steps begun before it
		// (a resume minted by an enrollment the reset undid among them).
		stamp += "\x00" + u.MFA.ResetAt.UTC().Format(time.RFC3339Nano)
	}
	h := sha256.Sum256([]byte("tether sign-in step\x00" + stamp))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// stepMAC is the MAC of a step token's body under a key derived from a
// signing key's seed.
func stepMAC(seed, body []byte) []byte {
	key := sha256.Sum256(append([]byte("tether sign-in step\x00"), seed...))
	m := hmac.New(sha256.New, key[:])
	m.Write(body)
	return m.Sum(nil)
}

// newStep makes the token of a step for u, valid ttl.
func (s *Service) newStep(ctx context.Context, u storage.User, purpose stepPurpose, ttl time.Duration, st step) (string, time.Time, error) {
	if err := s.keys.sync(ctx); err != nil {
		return "", time.Time{}, err
	}
	exp := s.now().Add(ttl).Truncate(time.Second).UTC()
	st.ID, st.Purpose, st.UserID, st.Expires, st.Stamp = newJTI(), purpose, u.ID, exp.Unix(), passwordStamp(u)
	body, err := json.Marshal(st)
	if err != nil {
		return "", time.Time{}, err
	}
	enc := base64.RawURLEncoding
	return stepPrefix + enc.EncodeToString(body) + "." + enc.EncodeToString(stepMAC(s.keys.activeSeed(), body)), exp, nil
}

// readStep checks a step token of purpose want: made here, unchanged, not
// expired. Whether it was used, and whether the account's password is
// still the one it followed, are checked against the user's record by
// the caller, in the write that completes it.
func (s *Service) readStep(ctx context.Context, raw string, want stepPurpose) (step, error) {
	raw = strings.TrimSpace(raw)
	rest, ok := strings.CutPrefix(raw, stepPrefix)
	if !ok || len(raw) > maxStepToken {
		return step{}, errStepInvalid
	}
	b64, m64, ok := strings.Cut(rest, ".")
	if !ok {
		return step{}, errStepInvalid
	}
	enc := base64.RawURLEncoding
	body, err1 := enc.DecodeString(b64)
	mac, err2 := enc.DecodeString(m64)
	if err1 != nil || err2 != nil {
		return step{}, errStepInvalid
	}
	if !s.stepMACValid(body, mac) {
		// Another server may have rotated the keys since this one loaded
		// them.
		if err := s.keys.sync(ctx); err != nil {
			return step{}, err
		}
		if !s.stepMACValid(body, mac) {
			return step{}, errStepInvalid
		}
	}
	var st step
	if err := json.Unmarshal(body, &st); err != nil || st.ID == "" || st.UserID == "" || st.Purpose != want {
		return step{}, errStepInvalid
	}
	if !s.now().Before(st.expiresAt()) {
		return step{}, errStepExpired
	}
	return st, nil
}

func (s *Service) stepMACValid(body, mac []byte) bool {
	ok := false
	for _, seed := range s.keys.seeds() {
		if hmac.Equal(mac, stepMAC(seed, body)) {
			ok = true
		}
	}
	return ok
}

// spendStep checks, in the write that completes st, that u is the account
// st was made for with the same password, and that st was not completed
// before; it then records st as completed, forgetting the completed
// steps that have expired. u.MFA must be the caller's own copy.
func spendStep(u *storage.User, st step, now time.Time) error {
	if u.ID != st.UserID || passwordStamp(*u) != st.Stamp {
		return errStepInvalid
	}
	if u.MFA == nil {
		u.MFA = &storage.UserMFA{}
	}
	m := u.MFA
	m.Spent = slices.DeleteFunc(m.Spent, func(sp storage.SpentStep) bool { return !now.Before(sp.Until) })
	if slices.ContainsFunc(m.Spent, func(sp storage.SpentStep) bool { return sp.ID == st.ID }) {
		return errStepUsed
	}
	m.Spent = append(m.Spent, storage.SpentStep{ID: st.ID, Until: st.expiresAt()})
	return nil
}

// stepSpent reports, for a read that writes nothing, whether st was
// completed already.
func stepSpent(u storage.User, st step) bool {
	return u.MFA != nil && slices.ContainsFunc(u.MFA.Spent, func(sp storage.SpentStep) bool { return sp.ID == st.ID })
}
