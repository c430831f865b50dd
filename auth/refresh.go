package auth

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"tether"
	"tether/storage"
)

// errReplay and errReused stop a refresh's transaction when the answer is a
// replay of the last one, or when the token was used before: the rotation
// and its success event are not written.
var (
	errReplay = errors.New("replay the last refresh")
	errReused = errors.New("refresh token reused")
)

// resolveDevice turns what a client calls its handset (the device id, or
// its IMEI) into a device id, or "" when it names no enrolled handset.
func (s *Service) resolveDevice(ctx context.Context, ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" || strings.HasPrefix(ref, storage.PrefixDevice) {
		return ref
	}
	d, err := s.store.GetDeviceByIMEI(ctx, strings.NewReplacer(" ", "", "-", "", "/", "").Replace(ref))
	if err != nil {
		return ""
	}
	return d.ID
}

// sameDevice compares in constant time: device ids are no secret, but there
// is no reason to leak how much of one matched.
func sameDevice(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// admit checks the user and handset read with a session: the user must
// exist and be enabled, and the handset, if the session has one, exist and
// be enrolled.
func (s *Service) admit(b storage.SessionBundle) (storage.User, *storage.Device, error) {
	switch {
	case b.User.ID == "":
		return b.User, nil, ErrSessionRevoked
	case b.User.Disabled:
		return b.User, nil, ErrAccountDisabled
	case s.needsFactor(b.User, b.Session.AMR):
		return b.User, nil, ErrSessionNeedsFactor
	case b.Session.DeviceID == "":
		return b.User, nil, nil
	case b.Device == nil:
		return b.User, nil, ErrDeviceNotEnrolled
	}
	if err := deviceStatusError(b.Device.Status); err != nil {
		return b.User, b.Device, err
	}
	return b.User, b.Device, nil
}

// refreshSession reads the session a refresh token names (ErrTokenInvalid
// for a malformed token or one of no session).
func (s *Service) refreshSession(ctx context.Context, raw string) (refreshToken, storage.SessionBundle, error) {
	tok, err := parseRefreshToken(raw)
	if err != nil {
		return tok, storage.SessionBundle{}, err
	}
	b, err := s.store.GetSessionBundleByFamily(ctx, familyHash(tok.family))
	if errors.Is(err, storage.ErrNotFound) {
		return tok, b, ErrTokenInvalid
	}
	return tok, b, err
}

// usableSession checks what a refresh and a re-authentication check before
// they write: the request comes from the session's handset (with a proof,
// where it has a key) or names the session's device name, the session is
// live, and its user and handset are still admitted. It returns the
// session (bound to the key proven), its user and handset, fills ev in,
// and makes sure new tokens are signed with the store's newest key.
func (s *Service) usableSession(ctx context.Context, b storage.SessionBundle, deviceRef string, now time.Time, ev *storage.Event) (storage.Session, storage.User, *storage.Device, error) {
	sess := b.Session
	ev.SessionID, ev.UserID, ev.DeviceID = sess.ID, sess.UserID, sess.DeviceID
	if !sameDevice(s.resolveDevice(ctx, deviceRef), sess.DeviceID) || boundName(sess, deviceRef) != nil {
		ev.Detail = map[string]string{"presentedDevice": truncate(deviceRef, 64)}
		return sess, storage.User{}, nil, ErrDeviceMismatch
	}
	if sess.Revoked() {
		return sess, storage.User{}, nil, sessionEnded(sess, now)
	}
	if !sess.Live(now) {
		if sess.Unreturned(now) {
			return sess, storage.User{}, nil, sessionEnded(sess, now)
		}
		return sess, storage.User{}, nil, ErrTokenExpired
	}
	user, dev, err := s.admit(b)
	if err != nil {
		return sess, user, dev, err
	}
	ev.Username = user.Username
	if sess.JKT, err = s.proveUse(ctx, sess, dev); err != nil {
		return sess, user, dev, err
	}
	// Sign with the store's newest key, not one another server revoked.
	if err := s.keys.catchUp(ctx, b.NewestKey); err != nil {
		return sess, user, dev, err
	}
	return sess, user, dev, nil
}

// Refresh trades a refresh token for a new access and refresh token,
// rotating the refresh token. The same token again within the reuse grace,
// from the same handset, gets the very same answer (a retry after a lost
// response); after the grace, or a token from an older generation, ends
// the session. Of concurrent refreshes of one token exactly one rotates.
func (s *Service) Refresh(ctx context.Context, raw, deviceRef string) (Grant, error) {
	return s.RefreshFor(ctx, "", raw, deviceRef)
}

// RefreshFor is Refresh by an OAuth client (clientID, authenticated by
// the caller), or by the native API (""): a session's refresh token is
// good only with the client its session was opened for.
func (s *Service) RefreshFor(ctx context.Context, clientID, raw, deviceRef string) (Grant, error) {
	ev := s.event(ctx, "refresh", "failure")
	if clientID != "" {
		ev.Detail = map[string]string{"client": truncate(clientID, 64)}
	}
	fail := func(err error) (Grant, error) {
		ev.Reason = reasonOf(err)
		s.record(ctx, ev)
		return Grant{}, err
	}
	tok, b, err := s.refreshSession(ctx, raw)
	if err != nil {
		return fail(err)
	}
	if subtle.ConstantTimeCompare([]byte(b.Session.ClientID), []byte(clientID)) != 1 {
		return fail(fmt.Errorf("%w: the session belongs to another client", ErrTokenInvalid))
	}
	if clientID != "" && strings.TrimSpace(deviceRef) == "" {
		// An OAuth client's refresh may leave the handset out (standard
		// clients send no such parameter): the refresh token is the
		// session's, and a handset with a key still proves it below.
		deviceRef = b.Session.DeviceID
		if deviceRef == "" {
			deviceRef = b.Session.DeviceName
		}
	}
	now := s.now().UTC()
	sess, user, dev, err := s.usableSession(ctx, b, deviceRef, now, &ev)
	if err != nil {
		return fail(err)
	}

	// Everything the rotation hands out is made before the transaction, so
	// the transaction itself only compares and writes.
	next := newRefreshToken(tok.family)
	jti := newJTI()
	accessExp := minTime(now.Add(s.cfg.AccessTTL), sess.ExpiresAt)
	access, err := s.signAccess(sess, user.Role, jti, now, accessExp)
	if err != nil {
		return fail(fmt.Errorf("sign access token: %w", err))
	}
	refreshExp := minTime(now.Add(sess.IdleTimeout), sess.ExpiresAt)
	sealed, err := seal(replayKey(raw), replay{AccessToken: access, AccessExpiresAt: accessExp, RefreshToken: next.raw, RefreshExpiresAt: refreshExp})
	if err != nil {
		return fail(err)
	}

	presented := tok.hash()
	var last storage.Session
	sess, err = s.store.UpdateSession(ctx, sess.ID, func(cur storage.Session) (storage.Session, error) {
		last = cur
		switch {
		case cur.Revoked():
			return cur, sessionEnded(cur, now)
		case bytes.Equal(cur.RefreshHash, presented):
			cur.PrevRefreshHash, cur.RefreshHash = cur.RefreshHash, next.hash()
			cur.JKT = sess.JKT
			cur.RotatedAt, cur.Replay = now, sealed
			cur.AccessJTI, cur.AccessExpiresAt, cur.LastUsedAt = jti, accessExp, now
			cur.AccessHash = accessHash(access)
			// The older access tokens are past renewing, retries too.
			cur.PrevAccessJTI, cur.RenewReplay, cur.PrevAccessHash = "", nil, nil
			return cur, nil
		case bytes.Equal(cur.PrevRefreshHash, presented) && now.Sub(cur.RotatedAt) <= s.cfg.RefreshReuseGrace:
			return cur, errReplay
		default:
			return cur, errReused
		}
	}, storage.WithEvents(withOutcome(ev, "success")), storage.Unchanged(b))
	switch {
	case errors.Is(err, errReplay):
		r, oerr := open(replayKey(raw), last.Replay)
		if oerr != nil {
			return fail(fmt.Errorf("%w: replay cannot be opened: %w", ErrTokenInvalid, oerr))
		}
		ev.Outcome, ev.Reason = "success", "replayed within grace"
		s.record(ctx, ev)
		return Grant{
			AccessToken: r.AccessToken, AccessExpiresAt: r.AccessExpiresAt,
			RefreshToken: r.RefreshToken, RefreshExpiresAt: r.RefreshExpiresAt,
			Session: last, User: user, Device: dev,
		}, nil
	case errors.Is(err, errReused):
		// A token of this family used again after its turn: whoever holds
		// the newer one may be a thief, so the session ends.
		ev.Action, ev.Outcome, ev.Reason = "refresh_token_reused", "failure", string(tether.CodeRefreshTokenReused)
		if _, rerr := s.store.UpdateSession(ctx, last.ID, func(cur storage.Session) (storage.Session, error) {
			if !cur.Revoked() {
				cur.RevokedAt, cur.RevokeReason = now, string(tether.CodeRefreshTokenReused)
			}
			return cur, nil
		}, storage.WithEvents(ev)); rerr != nil {
			return Grant{}, rerr
		}
		s.written(ev)
		s.log.WarnContext(ctx, "refresh token reused: session revoked", "session", last.ID, "user", last.UserID)
		return Grant{}, ErrRefreshTokenReused
	case err != nil:
		return fail(err)
	}
	s.written(withOutcome(ev, "success"))
	return Grant{
		AccessToken: access, AccessExpiresAt: accessExp,
		RefreshToken: next.raw, RefreshExpiresAt: refreshExp,
		Session: sess, User: user, Device: dev,
	}, nil
}

// Renew trades an access token, expired or not, for a new one, under every
// rule of API.md section 4: the signature is ours; the token is bound to the
// handset asking (or, for a session without a handset, the request names
// none); it expired less than the renewal window ago; its session
// is alive; the handset is still enrolled; and it is the latest token of its
// session. Each access token renews once: the same renewal again within
// the reuse grace (a retry after a lost answer) gets the very same answer,
// as a refresh does; later, ErrTokenAlreadyUsed.
func (s *Service) Renew(ctx context.Context, raw, deviceRef string) (Grant, error) {
	ev := s.event(ctx, "renew", "failure")
	fail := func(err error) (Grant, error) {
		ev.Reason = reasonOf(err)
		s.record(ctx, ev)
		return Grant{}, err
	}
	// The session the token names is read first: when it vouches for the
	// token (it keeps the hash of the tokens it issued), the signature
	// needs no check, for the token is, byte for byte, one this server
	// signed. Any other token, a forged or altered one among them, has its
	// signature checked as every other route checks it, and fails there.
	claims, err := readAccess(raw)
	if err != nil {
		return fail(err)
	}
	b, err := s.store.GetSessionBundle(ctx, claims.SID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fail(err)
	}
	found := err == nil
	if found && vouches(b.Session, raw) && s.keys.known(claims.kid) {
		// What parseAccess checks besides the signature and expiry.
		if !audienceHas(claims.Audience, s.cfg.Audience) || claims.ExpiresAt == nil {
			err = fmt.Errorf("%w: issuer, audience or expiry wrong", ErrTokenInvalid)
		} else {
			err = s.checkClaims(claims)
		}
	} else {
		claims, err = s.parseAccess(ctx, raw, true)
	}
	if err != nil {
		return fail(err)
	}
	sess := b.Session
	ev.SessionID, ev.UserID, ev.DeviceID = claims.SID, claims.Subject, claims.DID
	// A token bound to a handset renews only from it; a token of a session
	// without a handset renews only from a request that names none.
	if !sameDevice(s.resolveDevice(ctx, deviceRef), claims.DID) {
		ev.Detail = map[string]string{"presentedDevice": truncate(deviceRef, 64)}
		return fail(ErrDeviceMismatch)
	}
	now := s.now().UTC()
	if now.After(claims.ExpiresAt.Add(s.cfg.RenewWindow)) {
		return fail(ErrRenewalWindowPassed)
	}
	if !found || sess.UserID != claims.Subject {
		return fail(ErrSessionRevoked)
	}
	if err := boundName(sess, deviceRef); err != nil {
		ev.Detail = map[string]string{"presentedDevice": truncate(deviceRef, 64)}
		return fail(err)
	}
	if sess.ClientID != "" {
		// An OAuth client's tokens are renewed by its refresh token, at
		// the token endpoint, with the client authenticated.
		return fail(fmt.Errorf("%w: an OAuth client's token", ErrTokenInvalid))
	}
	if !sess.Live(now) {
		return fail(sessionEnded(sess, now))
	}
	if err := s.keyCurrent(ctx, claims, b.NewestKey); err != nil {
		return fail(err)
	}
	user, dev, err := s.admit(b)
	if err != nil {
		return fail(err)
	}
	ev.Username = user.Username
	if sess.JKT, err = s.proveUse(ctx, sess, dev); err != nil {
		return fail(err)
	}

	jti := newJTI()
	exp := minTime(now.Add(s.cfg.AccessTTL), sess.ExpiresAt)
	access, err := s.signAccess(sess, user.Role, jti, now, exp)
	if err != nil {
		return fail(fmt.Errorf("sign access token: %w", err))
	}
	sealed, err := seal(renewReplayKey(raw), replay{AccessToken: access, AccessExpiresAt: exp})
	if err != nil {
		return fail(err)
	}
	var last storage.Session
	sess, err = s.store.UpdateSession(ctx, sess.ID, func(cur storage.Session) (storage.Session, error) {
		last = cur
		switch {
		case cur.Revoked():
			return cur, sessionEnded(cur, now)
		case subtle.ConstantTimeCompare([]byte(cur.AccessJTI), []byte(claims.ID)) == 1:
			cur.PrevAccessJTI, cur.RenewedAt, cur.RenewReplay = cur.AccessJTI, now, sealed
			cur.AccessJTI, cur.AccessExpiresAt, cur.LastUsedAt, cur.JKT = jti, exp, now, sess.JKT
			cur.PrevAccessHash, cur.AccessHash = cur.AccessHash, accessHash(access)
			return cur, nil
		case subtle.ConstantTimeCompare([]byte(cur.PrevAccessJTI), []byte(claims.ID)) == 1 && now.Sub(cur.RenewedAt) <= s.cfg.RefreshReuseGrace:
			return cur, errReplay
		}
		return cur, ErrTokenAlreadyUsed
	}, storage.WithEvents(withOutcome(ev, "success")), storage.Unchanged(b))
	if errors.Is(err, errReplay) {
		r, oerr := open(renewReplayKey(raw), last.RenewReplay)
		if oerr != nil {
			return fail(fmt.Errorf("%w: renewal replay cannot be opened: %w", ErrTokenInvalid, oerr))
		}
		ev.Outcome, ev.Reason = "success", "replayed within grace"
		s.record(ctx, ev)
		return Grant{AccessToken: r.AccessToken, AccessExpiresAt: r.AccessExpiresAt, Session: last, User: user, Device: dev}, nil
	}
	if err != nil {
		return fail(err)
	}
	s.written(withOutcome(ev, "success"))
	return Grant{AccessToken: access, AccessExpiresAt: exp, Session: sess, User: user, Device: dev}, nil
}

// reasonOf is the audit reason of an error: its code, or "internal".
func reasonOf(err error) string {
	var te *tether.Error
	var ve *tether.ValidationError
	switch {
	case errors.As(err, &te):
		return string(te.Code)
	case errors.As(err, &ve):
		return string(tether.CodeValidationFailed)
	case errors.Is(err, storage.ErrNotFound):
		return string(tether.CodeNotFound)
	}
	return string(tether.CodeInternal)
}

// needsFactor reports whether a session opened with amr may no longer be
// used by u: u's role must have a second factor (--admin-mfa,
// --manager-mfa required), and the session was opened without one, before
// the policy or the role changed. The account signs in again, and is led
// to its second factor (or to enrolling one).
func (s *Service) needsFactor(u storage.User, amr []string) bool {
	if !takesFactors(u.Role) || !s.MFARequiredFor(u.Role) {
		return false
	}
	for _, m := range amr {
		if m != AMRPassword {
			return false
		}
	}
	return true
}
