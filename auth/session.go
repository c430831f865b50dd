package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"tether"
	"tether/storage"
)

// Identity is the holder of a valid access token: its claims and the
// session, user and handset behind it as they are now.
type Identity struct {
	Claims  *Claims
	Session storage.Session
	User    storage.User
	// Device is nil for a session without a handset.
	Device *storage.Device
}

// Principal returns the identity as a principal, with the user's current
// role and scopes (not those the token was issued with), and the factors
// the session was signed in with.
func (id Identity) Principal() Principal {
	return principalOf(id.User, SessionAMR(id.Session))
}

// Authenticate checks an access token for a protected endpoint: the
// signature and expiry, and the session, user and handset behind it, so a
// revoked session, a disabled user or a suspended handset is cut off at once.
func (s *Service) Authenticate(ctx context.Context, raw string) (Identity, error) {
	return s.authenticate(ctx, raw, true)
}

// authenticate is Authenticate; withProof says whether a key-bound token
// must come with its proof (introspection answers for resource servers,
// which check the proof themselves).
func (s *Service) authenticate(ctx context.Context, raw string, withProof bool) (Identity, error) {
	claims, err := s.parseAccess(ctx, raw, false)
	if err != nil {
		return Identity{}, err
	}
	b, err := s.store.GetSessionBundle(ctx, claims.SID)
	sess := b.Session
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (sess.UserID != claims.Subject || sess.DeviceID != claims.DID || sess.ClientID != claims.ClientID)) {
		return Identity{}, ErrSessionRevoked
	}
	if err != nil {
		return Identity{}, err
	}
	if now := s.now(); !sess.Live(now) {
		return Identity{}, sessionEnded(sess, now)
	}
	if err := s.keyCurrent(ctx, claims, b.NewestKey); err != nil {
		return Identity{}, err
	}
	user, dev, err := s.admit(b)
	if err != nil {
		return Identity{}, err
	}
	// A key-bound token is used only with a proof of its key, bound to the
	// token itself (ath).
	// An OAuth client's key-bound token always: its key is the client's
	// choice, not the handset policy's.
	if withProof && claims.Cnf != nil && (s.cfg.DeviceProof != ProofOff || claims.ClientID != "") {
		if err := s.requireProof(ctx, claims.Cnf.JKT, raw); err != nil {
			return Identity{}, err
		}
	}
	return Identity{Claims: claims, Session: sess, User: user, Device: dev}, nil
}

// Logout ends the caller's session.
func (s *Service) Logout(ctx context.Context, id Identity) error {
	ev := s.event(ctx, "logout", "success")
	id.Principal().Stamp(&ev)
	ev.UserID, ev.Username, ev.SessionID, ev.DeviceID = id.User.ID, id.User.Username, id.Session.ID, id.Session.DeviceID
	_, err := s.store.UpdateSession(ctx, id.Session.ID, func(cur storage.Session) (storage.Session, error) {
		if !cur.Revoked() {
			cur.RevokedAt, cur.RevokeReason = s.now().UTC(), "logout"
		}
		return cur, nil
	}, storage.WithEvents(ev))
	return err
}

// EndSession ends one session on the OAuth provider's word (an
// authorization code presented twice, RP-initiated logout), with reason;
// storage.ErrNotFound if there is none. Ending an ended session is no
// error.
func (s *Service) EndSession(ctx context.Context, id, reason string) error {
	sess, err := s.store.GetSession(ctx, id)
	if err != nil {
		return err
	}
	ev := s.event(ctx, "session.revoke", "success")
	ev.SessionID, ev.Reason, ev.UserID, ev.DeviceID = id, reason, sess.UserID, sess.DeviceID
	_, err = s.store.UpdateSession(ctx, id, func(cur storage.Session) (storage.Session, error) {
		if !cur.Revoked() {
			cur.RevokedAt, cur.RevokeReason = s.now().UTC(), reason
		}
		return cur, nil
	}, storage.WithEvents(ev))
	return err
}

// ChangePassword changes the password of the user behind id, who must give
// the current one (checked under the login throttle, so a stolen token
// cannot be used to guess it), and ends every other session of the user
// in the same transaction: whoever else knew the old password, or holds a
// token of it, is out, while the handset the change was made from stays
// signed in.
func (s *Service) ChangePassword(ctx context.Context, id Identity, current, next string) error {
	ev := s.event(ctx, "user.password", "failure")
	id.Principal().Stamp(&ev)
	ev.UserID, ev.Username, ev.SessionID, ev.DeviceID = id.User.ID, id.User.Username, id.Session.ID, id.Session.DeviceID
	fail := func(err error) error {
		ev.Reason = reasonOf(err)
		s.record(ctx, ev)
		return err
	}
	if id.User.Directory != nil {
		return fail(ErrDirectoryManaged)
	}
	if verr := passwordPolicy(next); verr != nil {
		for i := range verr.Fields {
			verr.Fields[i].Field = "newPassword"
		}
		return verr
	}
	user, err := s.guardedCheck(ctx, id.User.Username, current, false)
	if errors.Is(err, ErrInvalidCredentials) || (err == nil && user.ID != id.User.ID) {
		return fail(errWrongCurrentPassword)
	}
	if err != nil {
		return fail(err)
	}
	// Hash outside the store's transaction: it is slow on purpose.
	hash, err := s.hasher.Hash(next)
	if err != nil {
		return fail(err)
	}
	now := s.now().UTC()
	ev = withOutcome(ev, "success")
	ev.Reason = "changed by the user: every other session ended"
	_, err = s.store.UpdateUser(ctx, user.ID, func(u storage.User) (storage.User, error) {
		if u.PasswordHash != user.PasswordHash {
			return u, errPasswordChangedMeanwhile
		}
		u.PasswordHash, u.PasswordChangedAt, u.UpdatedAt = hash, now, now
		return u, nil
	}, storage.WithEvents(ev), storage.WithRevocation(storage.Revocation{UserID: user.ID, Except: id.Session.ID, Reason: "password_changed", At: now}, nil))
	if err != nil {
		ev.Outcome = "failure"
		return fail(err)
	}
	s.written(ev)
	return nil
}

var (
	errWrongCurrentPassword     = tether.Invalid("currentPassword", "password_wrong", "the current password is wrong")
	errPasswordChangedMeanwhile = tether.NewError(tether.CodeConflict, "the password was changed meanwhile: sign in again")
)

// TokenTypeOf is the token type of an access token: "DPoP" for one bound
// to a handset key, "Bearer" for the others.
func TokenTypeOf(c *Claims) string {
	if c != nil && c.Cnf != nil {
		return "DPoP"
	}
	return "Bearer"
}

// Introspection is the RFC 7662 answer about a token.
type Introspection struct {
	Active    bool
	Claims    *Claims
	Username  string
	TokenType string
}

// Introspect tells a resource server whether an access token is active now,
// with every check Authenticate makes. An inactive token says nothing more.
func (s *Service) Introspect(ctx context.Context, raw string) Introspection {
	id, err := s.authenticate(ctx, strings.TrimSpace(raw), false)
	if err != nil {
		return Introspection{}
	}
	return Introspection{Active: true, Claims: id.Claims, Username: id.User.Username, TokenType: TokenTypeOf(id.Claims)}
}

// ListSessions returns one page of the sessions in by's scope (whatever
// f.Groups says).
func (s *Service) ListSessions(ctx context.Context, by Principal, f storage.SessionFilter) (storage.Page[storage.Session], error) {
	f.Groups = by.Scopes
	return s.store.ListSessions(ctx, f)
}

// RevokeSession ends one session, on a manager's word. by may not end the
// session of an account of a role it could not grant; a session outside
// by's scope is not found.
func (s *Service) RevokeSession(ctx context.Context, by Principal, id string) error {
	if by.Scoped() {
		in, err := s.store.SessionInScope(ctx, id, by.Scopes)
		if err != nil {
			return err
		}
		if !in {
			return fmt.Errorf("session %s out of scope: %w", id, storage.ErrNotFound)
		}
	}
	sess, err := s.store.GetSession(ctx, id)
	if err != nil {
		return err
	}
	if err := s.mayManage(ctx, by, sess.UserID); err != nil {
		return err
	}
	ev := s.event(ctx, "session.revoke", "success")
	by.Stamp(&ev)
	ev.UserID, ev.SessionID, ev.DeviceID = sess.UserID, sess.ID, sess.DeviceID
	_, err = s.store.UpdateSession(ctx, id, func(cur storage.Session) (storage.Session, error) {
		if !cur.Revoked() {
			cur.RevokedAt, cur.RevokeReason = s.now().UTC(), "revoked"
		}
		return cur, nil
	}, storage.WithEvents(ev))
	return err
}

// LogoutAll ends every session of a user and returns how many were live.
// A user outside by's scope is not found.
func (s *Service) LogoutAll(ctx context.Context, by Principal, userID string) (int, error) {
	handsets, err := userInScope(ctx, s.store, by, userID)
	if err != nil {
		return 0, err
	}
	ev := s.event(ctx, "user.logout_all", "success")
	by.Stamp(&ev)
	ev.UserID = userID
	var n int
	_, err = s.store.UpdateUser(ctx, userID, func(u storage.User) (storage.User, error) {
		if err := recheckScope(by, userID, u, handsets); err != nil {
			return u, err
		}
		if !by.CanGrant(u.Role) {
			return u, fmt.Errorf("%s ending the sessions of a %s: %w", by, u.Role, ErrForbidden)
		}
		return u, nil
	}, storage.WithRevocation(storage.Revocation{UserID: userID, Reason: "logout_all", At: s.now().UTC()}, &n),
		storage.WithEvents(ev))
	return n, err
}

func (s *Service) mayManage(ctx context.Context, by Principal, userID string) error {
	u, err := s.store.GetUser(ctx, userID)
	if err != nil {
		return err
	}
	if !by.CanGrant(u.Role) {
		return fmt.Errorf("%s managing a %s: %w", by, u.Role, ErrForbidden)
	}
	return nil
}

// RotateKeys makes a new signing key of every algorithm and returns their
// ids by algorithm (KeySet.Rotate). With revoke every other key is deleted
// at once (KeySet.Revoke): the emergency rotation, for a key that may have
// been stolen.
func (s *Service) RotateKeys(ctx context.Context, by Principal, revoke bool) (map[string]string, error) {
	if err := by.Require(storage.RoleAdmin); err != nil {
		return nil, err
	}
	ev := s.event(ctx, "keys.rotate", "success")
	by.Stamp(&ev)
	if revoke {
		ev.Reason = "old keys revoked"
		return s.keys.Revoke(ctx, storage.WithEvents(ev))
	}
	return s.keys.Rotate(ctx, storage.WithEvents(ev))
}

// Events returns one page of the whole audit trail, as f selects it, for
// the operator; what a principal sees is EventsFor.
func (s *Service) Events(ctx context.Context, f storage.EventFilter) (storage.Page[storage.Event], error) {
	return s.store.ListEvents(ctx, f)
}

// EventsFor returns one page of the audit trail in by's scope (whatever
// f.Groups says): the events whose groups meet it (Event.Groups).
func (s *Service) EventsFor(ctx context.Context, by Principal, f storage.EventFilter) (storage.Page[storage.Event], error) {
	f.Groups = by.Scopes
	return s.store.ListEvents(ctx, f)
}

// TokenUser returns the user an access token was issued to, checking its
// signature but not its expiry or session: for clients that must say who
// they are before renewing. It grants nothing.
func (s *Service) TokenUser(ctx context.Context, raw string) (storage.User, error) {
	claims, err := s.parseAccess(ctx, raw, true)
	if err != nil {
		return storage.User{}, err
	}
	u, err := s.store.GetUser(ctx, claims.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, ErrTokenInvalid
	}
	return u, err
}
