package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// CreateSession implements storage.Sessions. The user and device are read
// with a share lock, so a manager suspending the handset or disabling the
// user at the same moment either waits for this session, and then revokes
// it, or makes check refuse it.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session, check func(storage.User, storage.Device) error, opts ...storage.WriteOption) (storage.Session, error) {
	var created storage.Session
	err := s.write(ctx, "create session", opts, func(tx pgx.Tx) error {
		var err error
		created, err = createSession(ctx, tx, sess, check)
		return err
	})
	if err != nil {
		return storage.Session{}, err
	}
	return created.Clone(), nil
}

func createSession(ctx context.Context, tx pgx.Tx, sess storage.Session, check func(storage.User, storage.Device) error) (storage.Session, error) {
	if check != nil {
		var u storage.User
		if err := getOne(ctx, tx, &u, fmt.Sprintf("user %q", sess.UserID), `SELECT data FROM users WHERE id = $1 FOR SHARE`, sess.UserID); err != nil {
			return sess, err
		}
		var d storage.Device
		if sess.DeviceID != "" {
			if err := getOne(ctx, tx, &d, fmt.Sprintf("device %q", sess.DeviceID), `SELECT data FROM devices WHERE id = $1 FOR SHARE`, sess.DeviceID); err != nil {
				return sess, err
			}
		}
		if err := check(u, d); err != nil {
			return sess, err
		}
	}
	// One live session per user, device and client: the new one replaces
	// it.
	var old string
	err := tx.QueryRow(ctx, `SELECT session_id FROM session_pairs WHERE user_id = $1 AND device_id = $2 AND client_id = $3 FOR UPDATE`,
		sess.UserID, sess.DeviceID, sess.ClientID).Scan(&old)
	switch {
	case err == nil:
		if err := revokeOne(ctx, tx, old, "replaced", sess.CreatedAt); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return sess, err
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return sess, err
	}
	key, err := nextValue(ctx, tx, "sessions")
	if err != nil {
		return sess, err
	}
	sess.Key = key
	data, err := codec.Encode(sess)
	if err != nil {
		return sess, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO sessions (id, user_id, device_id, family_hash, revoked, ended_at, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sess.ID, sess.UserID, sess.DeviceID, sess.FamilyHash, sess.Revoked(), endedBy(sess), data)
	err = unique(err, "sessions_pkey", &storage.ConflictError{Entity: "session", Field: "id", Value: sess.ID})
	if err := unique(err, "sessions_family_key", &storage.ConflictError{Entity: "session", Field: "family", Value: sess.ID}); err != nil {
		return sess, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO session_pairs (user_id, device_id, client_id, session_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, client_id) DO UPDATE SET session_id = EXCLUDED.session_id`,
		sess.UserID, sess.DeviceID, sess.ClientID, sess.ID)
	return sess, err
}

// LoadSessions implements storage.Loader: it stores sessions as they are,
// in one transaction, each unrevoked one as the live session of its user
// and device. A session without a Key gets the next one.
func (s *Store) LoadSessions(ctx context.Context, ss []storage.Session) error {
	return s.update(ctx, "load sessions", func(tx pgx.Tx) error {
		var top uint64
		for _, sess := range ss {
			if sess.Key == 0 {
				key, err := nextValue(ctx, tx, "sessions")
				if err != nil {
					return err
				}
				sess.Key = key
			}
			top = max(top, sess.Key)
			data, err := codec.Encode(sess)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO sessions (id, user_id, device_id, family_hash, revoked, ended_at, data)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				sess.ID, sess.UserID, sess.DeviceID, sess.FamilyHash, sess.Revoked(), endedBy(sess), data)
			err = unique(err, "sessions_pkey", &storage.ConflictError{Entity: "session", Field: "id", Value: sess.ID})
			if err := unique(err, "sessions_family_key", &storage.ConflictError{Entity: "session", Field: "family", Value: sess.ID}); err != nil {
				return err
			}
			if !sess.Revoked() {
				if _, err := tx.Exec(ctx, `INSERT INTO session_pairs (user_id, device_id, client_id, session_id) VALUES ($1, $2, $3, $4)
					ON CONFLICT (user_id, device_id, client_id) DO UPDATE SET session_id = EXCLUDED.session_id`,
					sess.UserID, sess.DeviceID, sess.ClientID, sess.ID); err != nil {
					return err
				}
			}
		}
		return raiseCounter(ctx, tx, "sessions", top)
	})
}

// putSession writes a changed session and the columns derived from it.
func putSession(ctx context.Context, tx pgx.Tx, sess storage.Session) error {
	query, args, err := sessionUpdate(sess)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, query, args...)
	return err
}

// sessionUpdate is the statement that writes a changed session, and its
// arguments.
func sessionUpdate(sess storage.Session) (string, []any, error) {
	data, err := codec.Encode(sess)
	if err != nil {
		return "", nil, err
	}
	return `UPDATE sessions SET revoked = $2, ended_at = $3, data = $4 WHERE id = $1`,
		[]any{sess.ID, sess.Revoked(), endedBy(sess), data}, nil
}

// GetSession implements storage.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var sess storage.Session
	err := s.read(ctx, "get session", func(q querier) error {
		return getOne(ctx, q, &sess, fmt.Sprintf("session %q", id), `SELECT data FROM sessions WHERE id = $1`, id)
	})
	return sess, err
}

// GetSessionByFamily implements storage.Sessions.
func (s *Store) GetSessionByFamily(ctx context.Context, familyHash []byte) (storage.Session, error) {
	var sess storage.Session
	err := s.read(ctx, "get session", func(q querier) error {
		return getOne(ctx, q, &sess, "session family", `SELECT data FROM sessions WHERE family_hash = $1`, familyHash)
	})
	return sess, err
}

// GetSessionBundle implements storage.Sessions: the session, its user and
// its device in one statement, which other reads waiting may share
// (bundles.go).
func (s *Store) GetSessionBundle(ctx context.Context, id string) (storage.SessionBundle, error) {
	var b storage.SessionBundle
	err := s.bundlesByID.get(ctx, id, &b, fmt.Sprintf("session %q", id))
	return b, err
}

// GetSessionBundleByFamily implements storage.Sessions.
func (s *Store) GetSessionBundleByFamily(ctx context.Context, familyHash []byte) (storage.SessionBundle, error) {
	var b storage.SessionBundle
	err := s.bundlesByFamily.get(ctx, familyHash, &b, "session family")
	return b, err
}

// ListSessions implements storage.Sessions.
func (s *Store) ListSessions(ctx context.Context, f storage.SessionFilter) (storage.Page[storage.Session], error) {
	groups, none := scope(f.Groups)
	if none {
		return storage.Page[storage.Session]{Items: []storage.Session{}}, ctx.Err()
	}
	rest := f
	rest.Groups = nil // the database's
	var page storage.Page[storage.Session]
	err := s.view(ctx, "list sessions", func(tx pgx.Tx) error {
		// storage.SessionInScope: its handset is in scope, or its user is.
		// The handsets and the workers in scope are read first, and given
		// to the query as arrays whose size the planner then knows: it
		// hashes them to filter the sessions in ID order when the scope is
		// large, and looks its sessions up in the indexes on device_id
		// and user_id when it is small.
		var devices, workers []string
		if groups != nil {
			err := tx.QueryRow(ctx, `SELECT ARRAY(SELECT id FROM devices WHERE grp = ANY($1)),
				ARRAY(SELECT id FROM users WHERE groups && $1::text[])`, groups).Scan(&devices, &workers)
			if err != nil {
				return err
			}
		}
		where, args := conditions(
			cond{"user_id = $%d", f.UserID, f.UserID != ""},
			cond{"device_id = $%d", f.DeviceID, f.DeviceID != ""},
			cond{"NOT revoked AND ended_at > $%d", f.LiveAt, !f.LiveAt.IsZero()},
		)
		if groups != nil {
			// Arguments are numbered from $2 ($1 is list's cursor).
			args = append(args, devices, workers)
			if where != "" {
				where += " AND "
			}
			where += fmt.Sprintf("(device_id = ANY($%d) OR user_id = ANY($%d))", len(args), len(args)+1)
		}
		var err error
		page, err = list(ctx, tx, "sessions", where, args, f.After, f.Limit,
			func(s storage.Session) bool { return rest.Match(s, "", storage.User{}, nil) },
			func(s storage.Session) string { return s.ID })
		return err
	})
	return page, err
}

// UpdateSession implements storage.Sessions. It is a refresh's and a
// renewal's write, made in as few round trips as the change allows: one
// statement when the caller read the session moments before
// (storage.Unchanged) and it has not changed since (updateUnchanged);
// else two, pipelined: the locked read, then the writes and the commit. A
// change that revokes other sessions too, or events bound for sinks, take
// the general path (updateSession), whose statements need answers before
// the next.
func (s *Store) UpdateSession(ctx context.Context, id string, fn func(storage.Session) (storage.Session, error), opts ...storage.WriteOption) (storage.Session, error) {
	o := storage.ApplyOptions(opts)
	if len(o.Revoke) > 0 {
		return s.updateSession(ctx, id, fn, opts)
	}
	if updated, done, err := s.updateUnchanged(ctx, id, fn, o); done {
		return updated, err
	}
	var updated storage.Session
	err := s.pipelined(ctx, "update session", `SELECT data FROM sessions WHERE id = $1 FOR UPDATE`, []any{id}, func(row []byte, b *pgx.Batch) error {
		if row == nil {
			return fmt.Errorf("session %q: %w", id, storage.ErrNotFound)
		}
		var old storage.Session
		if err := codec.Decode(row, &old); err != nil {
			return fmt.Errorf("decode session %q: %w", id, err)
		}
		next, err := changeSession(old, fn)
		if err != nil {
			return err
		}
		if next.Revoked() {
			b.Queue(releasePairSQL, pairArgs(next)...)
		}
		query, args, err := sessionUpdate(next)
		if err != nil {
			return err
		}
		b.Queue(query, args...)
		queued, err := s.queueEvents(b, o.Events)
		if err != nil {
			return err
		}
		if !queued {
			return errNotPipelined
		}
		updated = next.Clone()
		return nil
	})
	if errors.Is(err, errNotPipelined) {
		return s.updateSession(ctx, id, fn, opts)
	}
	if err == nil && o.Revoked != nil {
		*o.Revoked = 0
	}
	return updated, err
}

// updateUnchanged is UpdateSession in one statement, on the session as the
// caller read it (storage.Unchanged): the change is made to that version,
// and written only if the session is still that version (its xmin, the
// transaction that wrote it, unchanged), with its one event in the same
// statement. It reports done false, having written nothing, when it
// cannot tell: no such read was given, the session has changed since, the
// update function refused the version read (which may not be the latest),
// or the change revokes the session (which frees its pair too);
// UpdateSession then reads the session, locked, and goes on as if this had
// not been tried.
func (s *Store) updateUnchanged(ctx context.Context, id string, fn func(storage.Session) (storage.Session, error), o storage.WriteOptions) (storage.Session, bool, error) {
	read := o.Read
	if read == nil || read.Revision == 0 || read.Revision > math.MaxUint32 || read.Session.ID != id ||
		len(o.Events) > 1 || len(*s.routes.Load()) > 0 {
		return storage.Session{}, false, nil
	}
	next, err := changeSession(read.Session, fn)
	if err != nil || next.Revoked() {
		return storage.Session{}, false, nil
	}
	data, err := codec.Encode(next)
	if err != nil {
		return storage.Session{}, true, err
	}
	query := `UPDATE sessions SET revoked = $1, ended_at = $2, data = $3 WHERE id = $4 AND xmin = $5`
	args := []any{next.Revoked(), endedBy(next), data, next.ID, uint32(read.Revision)}
	if len(o.Events) == 1 {
		ev, err := eventArgs(o.Events[0])
		if err != nil {
			return storage.Session{}, true, err
		}
		query, args = unchangedWithEventSQL, append(ev, args...)
	}
	var written int64
	err = s.retrying(ctx, "update session", func() error {
		tag, err := s.pool.Exec(ctx, query, args...)
		written = tag.RowsAffected()
		if retryable(err) {
			written, err = 0, nil // the session changed under it
		}
		return err
	})
	if err != nil || written == 0 {
		return storage.Session{}, err != nil, err
	}
	if o.Revoked != nil {
		*o.Revoked = 0
	}
	return next.Clone(), true, nil
}

// unchangedWithEventSQL writes a session, if it is unchanged, and its
// event, in one statement: the event's arguments are $1 to $7
// (eventArgs), the session's $8 to $12 as in updateUnchanged. Its rows
// affected are the session's.
var unchangedWithEventSQL = `WITH s AS (
		UPDATE sessions SET revoked = $8, ended_at = $9, data = $10 WHERE id = $11 AND xmin = $12 RETURNING 1),
	eg AS (` + eventGroupsSQL + `),
	e AS (` + insertEvent(`EXISTS (SELECT FROM s)`) + `)
	SELECT FROM s`

// errNotPipelined says a pipelined write found it needs the general path.
var errNotPipelined = errors.New("not a pipelined write")

// updateSession is UpdateSession one statement at a time.
func (s *Store) updateSession(ctx context.Context, id string, fn func(storage.Session) (storage.Session, error), opts []storage.WriteOption) (storage.Session, error) {
	var updated storage.Session
	err := s.write(ctx, "update session", opts, func(tx pgx.Tx) error {
		var old storage.Session
		if err := getOne(ctx, tx, &old, fmt.Sprintf("session %q", id), `SELECT data FROM sessions WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		next, err := changeSession(old, fn)
		if err != nil {
			return err
		}
		if next.Revoked() {
			if err := releasePair(ctx, tx, next); err != nil {
				return err
			}
		}
		if err := putSession(ctx, tx, next); err != nil {
			return err
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// changeSession runs an update function on a copy of old and checks the
// change it made.
func changeSession(old storage.Session, fn func(storage.Session) (storage.Session, error)) (storage.Session, error) {
	next, err := fn(old.Clone())
	if err != nil {
		return next, err
	}
	return next, storage.CheckSessionUpdate(old, next)
}

// releasePair drops the user-and-device entry of a session that ends, if it
// still points at that session.
func releasePair(ctx context.Context, tx pgx.Tx, sess storage.Session) error {
	_, err := tx.Exec(ctx, releasePairSQL, pairArgs(sess)...)
	return err
}

const releasePairSQL = `DELETE FROM session_pairs WHERE user_id = $1 AND device_id = $2 AND client_id = $3 AND session_id = $4`

func pairArgs(sess storage.Session) []any {
	return []any{sess.UserID, sess.DeviceID, sess.ClientID, sess.ID}
}

// revokeOne revokes one session unless it is revoked already.
func revokeOne(ctx context.Context, tx pgx.Tx, id, reason string, at time.Time) error {
	var sess storage.Session
	if err := getOne(ctx, tx, &sess, fmt.Sprintf("session %q", id), `SELECT data FROM sessions WHERE id = $1 FOR UPDATE`, id); err != nil {
		return err
	}
	if sess.Revoked() {
		return nil
	}
	sess.RevokedAt, sess.RevokeReason = at, reason
	if err := releasePair(ctx, tx, sess); err != nil {
		return err
	}
	return putSession(ctx, tx, sess)
}

// revokeSessions revokes every session of r's user or device that r does
// not spare, and returns them as revoked.
func revokeSessions(ctx context.Context, tx pgx.Tx, r storage.Revocation) ([]storage.Session, error) {
	var column, owner string
	switch {
	case r.UserID != "":
		column, owner = "user_id", r.UserID
	case r.DeviceID != "":
		column, owner = "device_id", r.DeviceID
	default:
		return nil, errors.New("revocation names neither a user nor a device")
	}
	found, err := all[storage.Session](ctx, tx,
		`SELECT data FROM sessions WHERE `+column+` = $1 AND NOT revoked AND id <> $2 ORDER BY id FOR UPDATE`, owner, r.Except)
	if err != nil {
		return nil, err
	}
	var revoked []storage.Session
	for _, sess := range found {
		if r.Spares(sess) {
			continue
		}
		sess.RevokedAt, sess.RevokeReason = r.At, r.Reason
		if err := releasePair(ctx, tx, sess); err != nil {
			return nil, err
		}
		if err := putSession(ctx, tx, sess); err != nil {
			return nil, err
		}
		revoked = append(revoked, sess)
	}
	return revoked, nil
}

// LatestSessions implements storage.Sessions.
func (s *Store) LatestSessions(ctx context.Context, deviceIDs []string) (map[string]storage.Session, error) {
	latest := make(map[string]storage.Session, len(deviceIDs))
	if len(deviceIDs) == 0 {
		return latest, nil
	}
	err := s.read(ctx, "latest sessions", func(q querier) error {
		found, err := all[storage.Session](ctx, q, `SELECT data FROM sessions WHERE device_id = ANY($1)`, deviceIDs)
		if err != nil {
			return err
		}
		for _, sess := range found {
			if cur, ok := latest[sess.DeviceID]; !ok || storage.Later(sess, cur) {
				latest[sess.DeviceID] = sess
			}
		}
		return nil
	})
	return latest, err
}

// endedBy is what the ended_at column holds: the session's end
// (storage.Session.EndedAt) rounded up to the hour. The column only
// bounds the queries that use it (the purge, and live lists, which check
// each session again), and a value that changes once an hour rather than
// at every use leaves the indexes alone: most refreshes and renewals
// update the row in place (a HOT update, with the table's fillfactor
// leaving room on its page).
func endedBy(s storage.Session) time.Time {
	end := s.EndedAt()
	if t := end.Truncate(time.Hour); !t.Equal(end) {
		return t.Add(time.Hour)
	}
	return end
}
