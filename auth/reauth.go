package auth

import (
	"context"
	"crypto/subtle"
	"fmt"

	"tether/storage"
)

// Reauthenticate trades a session's refresh token for a new access token
// and hands the same refresh token back: the client keeps presenting the
// token it got at login (token-login.txt's re-authentication token) until
// the session ends, and each use slides the session's idle expiry. It
// checks what Refresh checks: the token is the session's current one, it
// comes from the session's handset (with a proof, where the handset has a
// key) or, for a session bound to a device name, names that name, the
// session is live, and the user and the handset are still admitted.
//
// A token of the session that is no longer current (a refresh rotated it)
// is answered as Refresh answers it: within the reuse grace, the
// rotation's answer again; after it, a reuse that ends the session.
//
// With Config.RotateReauthentication it is Refresh: the token rotates at
// every use.
func (s *Service) Reauthenticate(ctx context.Context, raw, deviceRef string) (Grant, error) {
	if s.cfg.RotateReauthentication {
		return s.Refresh(ctx, raw, deviceRef)
	}
	ev := s.event(ctx, "reauthenticate", "failure")
	fail := func(err error) (Grant, error) {
		ev.Reason = reasonOf(err)
		s.record(ctx, ev)
		return Grant{}, err
	}
	tok, b, err := s.refreshSession(ctx, raw)
	if err != nil {
		return fail(err)
	}
	if b.Session.ClientID != "" {
		return fail(fmt.Errorf("%w: an OAuth client's token", ErrTokenInvalid))
	}
	presented := tok.hash()
	if !currentRefresh(b.Session, presented) {
		// Before any proof is spent: Refresh checks this token afresh.
		return s.Refresh(ctx, raw, deviceRef)
	}
	now := s.now().UTC()
	sess, user, dev, err := s.usableSession(ctx, b, deviceRef, now, &ev)
	if err != nil {
		return fail(err)
	}
	jti := newJTI()
	accessExp := minTime(now.Add(s.cfg.AccessTTL), sess.ExpiresAt)
	access, err := s.signAccess(sess, user.Role, jti, now, accessExp)
	if err != nil {
		return fail(fmt.Errorf("sign access token: %w", err))
	}
	sess, err = s.store.UpdateSession(ctx, sess.ID, func(cur storage.Session) (storage.Session, error) {
		switch {
		case cur.Revoked():
			return cur, sessionEnded(cur, now)
		case !currentRefresh(cur, presented):
			// A refresh rotated the token since it was read.
			return cur, ErrTokenAlreadyUsed
		}
		cur.JKT = sess.JKT
		cur.AccessJTI, cur.AccessExpiresAt, cur.LastUsedAt = jti, accessExp, now
		cur.AccessHash = accessHash(access)
		// The older access tokens are past renewing, retries too, as after
		// a refresh.
		cur.PrevAccessJTI, cur.RenewReplay, cur.PrevAccessHash = "", nil, nil
		return cur, nil
	}, storage.WithEvents(withOutcome(ev, "success")))
	if err != nil {
		return fail(err)
	}
	s.written(withOutcome(ev, "success"))
	return Grant{
		AccessToken: access, AccessExpiresAt: accessExp,
		RefreshToken: raw, RefreshExpiresAt: refreshExpiry(sess, now),
		Session: sess, User: user, Device: dev,
	}, nil
}

// currentRefresh reports, in constant time, whether presented is the hash
// of the session's current refresh token.
func currentRefresh(sess storage.Session, presented []byte) bool {
	return subtle.ConstantTimeCompare(sess.RefreshHash, presented) == 1
}
