package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/storage"
)

// pairKey is the sessions_by_pair key of a user on a device, for the
// native API or an OAuth client (whose keys, added later, are longer, so
// the native ones are as they were).
func pairKey(userID, deviceID, clientID string) []byte {
	if clientID == "" {
		return []byte(userID + "\x00" + deviceID)
	}
	return []byte(userID + "\x00" + deviceID + "\x00" + clientID)
}

func refKey(owner, sessionID string) []byte {
	return []byte(owner + "\x00" + sessionID)
}

// CreateSession implements storage.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session, check func(storage.User, storage.Device) error, opts ...storage.WriteOption) (storage.Session, error) {
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		var err error
		sess, err = createSession(tx, sess, check)
		return err
	})
	if err != nil {
		return storage.Session{}, err
	}
	return sess.Clone(), nil
}

// createSession stores sess in tx (see CreateSession) and returns it with
// its key.
func createSession(tx *bolt.Tx, sess storage.Session, check func(storage.User, storage.Device) error) (storage.Session, error) {
	if check != nil {
		var u storage.User
		if err := get(tx.Bucket(bucketUsers), "user", []byte(sess.UserID), &u); err != nil {
			return sess, err
		}
		var d storage.Device
		if sess.DeviceID != "" {
			if err := get(tx.Bucket(bucketDevices), "device", []byte(sess.DeviceID), &d); err != nil {
				return sess, err
			}
		}
		if err := check(u, d); err != nil {
			return sess, err
		}
	}
	sessions := tx.Bucket(bucketSessions)
	if sessions.Get([]byte(sess.ID)) != nil {
		return sess, &storage.ConflictError{Entity: "session", Field: "id", Value: sess.ID}
	}
	// One live session per user, device and client: the new one replaces
	// it.
	pairs := tx.Bucket(bucketSessionPair)
	pk := pairKey(sess.UserID, sess.DeviceID, sess.ClientID)
	if old := pairs.Get(pk); old != nil {
		if err := revokeOne(tx, string(old), "replaced", sess.CreatedAt); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return sess, err
		}
	}
	conflict := &storage.ConflictError{Entity: "session", Field: "family", Value: sess.ID}
	if err := claim(tx.Bucket(bucketSessionFamily), sess.FamilyHash, sess.ID, conflict); err != nil {
		return sess, err
	}
	seq, err := sessions.NextSequence()
	if err != nil {
		return sess, err
	}
	sess.Key = seq
	if err := pairs.Put(pk, []byte(sess.ID)); err != nil {
		return sess, err
	}
	if err := tx.Bucket(bucketSessionUser).Put(refKey(sess.UserID, sess.ID), nil); err != nil {
		return sess, err
	}
	if sess.DeviceID != "" {
		if err := tx.Bucket(bucketSessionDevice).Put(refKey(sess.DeviceID, sess.ID), nil); err != nil {
			return sess, err
		}
	}
	return sess, put(sessions, []byte(sess.ID), sess)
}

// LoadSessions implements storage.Loader: it stores sessions as they are,
// in one transaction, each unrevoked one as the live session of its user
// and device. A session without a Key gets the next one.
func (s *Store) LoadSessions(ctx context.Context, ss []storage.Session) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		sessions := tx.Bucket(bucketSessions)
		for _, sess := range ss {
			if sessions.Get([]byte(sess.ID)) != nil {
				return &storage.ConflictError{Entity: "session", Field: "id", Value: sess.ID}
			}
			if err := claim(tx.Bucket(bucketSessionFamily), sess.FamilyHash, sess.ID,
				&storage.ConflictError{Entity: "session", Field: "family", Value: sess.ID}); err != nil {
				return err
			}
			if sess.Key == 0 {
				seq, err := sessions.NextSequence()
				if err != nil {
					return err
				}
				sess.Key = seq
			} else if sess.Key > sessions.Sequence() {
				if err := sessions.SetSequence(sess.Key); err != nil {
					return err
				}
			}
			if !sess.Revoked() {
				if err := tx.Bucket(bucketSessionPair).Put(pairKey(sess.UserID, sess.DeviceID, sess.ClientID), []byte(sess.ID)); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketSessionUser).Put(refKey(sess.UserID, sess.ID), nil); err != nil {
				return err
			}
			if sess.DeviceID != "" {
				if err := tx.Bucket(bucketSessionDevice).Put(refKey(sess.DeviceID, sess.ID), nil); err != nil {
					return err
				}
			}
			if err := put(sessions, []byte(sess.ID), sess); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetSession implements storage.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var sess storage.Session
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketSessions), "session", []byte(id), &sess)
	})
	return sess, err
}

// GetSessionBundle implements storage.Sessions.
func (s *Store) GetSessionBundle(ctx context.Context, id string) (storage.SessionBundle, error) {
	var b storage.SessionBundle
	err := s.view(ctx, func(tx *bolt.Tx) error { return bundle(tx, []byte(id), &b) })
	return b, err
}

// GetSessionBundleByFamily implements storage.Sessions.
func (s *Store) GetSessionBundleByFamily(ctx context.Context, familyHash []byte) (storage.SessionBundle, error) {
	var b storage.SessionBundle
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketSessionFamily).Get(familyHash)
		if id == nil {
			return fmt.Errorf("session family: %w", storage.ErrNotFound)
		}
		return bundle(tx, id, &b)
	})
	return b, err
}

// bundle reads a session, its user and its device in tx.
func bundle(tx *bolt.Tx, id []byte, b *storage.SessionBundle) error {
	data, err := getData(tx.Bucket(bucketSessions), "session", id, &b.Session)
	if err != nil {
		return err
	}
	b.Stored = bytes.Clone(data)
	b.NewestKey = newestKey(tx)
	if err := get(tx.Bucket(bucketUsers), "user", []byte(b.Session.UserID), &b.User); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if b.Session.DeviceID == "" {
		return nil
	}
	var d storage.Device
	switch err := get(tx.Bucket(bucketDevices), "device", []byte(b.Session.DeviceID), &d); {
	case err == nil:
		b.Device = &d
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	return nil
}

// GetSessionByFamily implements storage.Sessions.
func (s *Store) GetSessionByFamily(ctx context.Context, familyHash []byte) (storage.Session, error) {
	var sess storage.Session
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketSessionFamily).Get(familyHash)
		if id == nil {
			return fmt.Errorf("session family: %w", storage.ErrNotFound)
		}
		return get(tx.Bucket(bucketSessions), "session", id, &sess)
	})
	return sess, err
}

// ListSessions implements storage.Sessions. A scoped list walks the
// sessions of the handsets and of the users of its groups
// (sessions_by_device, sessions_by_user), merged in ID order: a page costs
// a seek per handset and per user in scope, then a few steps per session.
func (s *Store) ListSessions(ctx context.Context, f storage.SessionFilter) (storage.Page[storage.Session], error) {
	var page storage.Page[storage.Session]
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		id := func(s storage.Session) string { return s.ID }
		if f.Groups == nil {
			page, err = list(tx.Bucket(bucketSessions), f.After, f.Limit,
				func(s storage.Session) bool { return f.Match(s, "", storage.User{}, nil) }, id)
			return err
		}
		// The handsets in scope, with their groups, and the users who may
		// be: each one's sessions are a range of an index.
		var ranges []indexPrefix
		groupOf := map[string]string{}
		byDevice, byUser := tx.Bucket(bucketSessionDevice), tx.Bucket(bucketSessionUser)
		for _, p := range groupPrefixes(tx.Bucket(bucketDeviceGroup), f.Groups) {
			m := newMerged([]indexPrefix{p}, "", false)
			for d, ok := m.next(); ok; d, ok = m.next() {
				groupOf[d] = string(p.prefix[:len(p.prefix)-1])
				ranges = append(ranges, indexPrefix{byDevice, join(d, "")})
			}
		}
		m := newMerged(groupPrefixes(tx.Bucket(bucketUserGroup), f.Groups), "", false)
		for u, ok := m.next(); ok; u, ok = m.next() {
			ranges = append(ranges, indexPrefix{byUser, join(u, "")})
		}
		type who struct {
			u  storage.User
			hg []string
		}
		users := map[string]who{}
		page, err = listMerged(tx.Bucket(bucketSessions), ranges, f.After, f.Limit, false, func(s storage.Session) (bool, error) {
			w, ok := users[s.UserID]
			if !ok {
				u, err := scopeUser(tx, s.UserID)
				if err != nil {
					return false, err
				}
				w = who{u, handsetGroups(tx, s.UserID)}
				users[s.UserID] = w
			}
			return f.Match(s, groupOf[s.DeviceID], w.u, w.hg), nil
		}, id)
		return err
	})
	return page, err
}

// UpdateSession implements storage.Sessions.
func (s *Store) UpdateSession(ctx context.Context, id string, fn func(storage.Session) (storage.Session, error), opts ...storage.WriteOption) (storage.Session, error) {
	var updated storage.Session
	o := storage.ApplyOptions(opts)
	read := o.Read
	err := s.writeWith(ctx, o, func(tx *bolt.Tx) error {
		sessions := tx.Bucket(bucketSessions)
		var old storage.Session
		if read != nil && read.Session.ID == id && read.Stored != nil && bytes.Equal(sessions.Get([]byte(id)), read.Stored) {
			// The session as the caller read it (storage.Unchanged) is
			// the one stored: no need to decode it again.
			old = read.Session
		} else if err := get(sessions, "session", []byte(id), &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckSessionUpdate(old, next); err != nil {
			return err
		}
		if next.Revoked() {
			if err := releasePair(tx, next); err != nil {
				return err
			}
		}
		updated = next.Clone()
		return put(sessions, []byte(id), next)
	})
	return updated, err
}

// releasePair drops the user-and-device entry of a session that ends, if it
// still points at that session.
func releasePair(tx *bolt.Tx, sess storage.Session) error {
	pairs := tx.Bucket(bucketSessionPair)
	pk := pairKey(sess.UserID, sess.DeviceID, sess.ClientID)
	if cur := pairs.Get(pk); cur != nil && string(cur) == sess.ID {
		return pairs.Delete(pk)
	}
	return nil
}

// revokeOne revokes one session unless it is revoked already.
func revokeOne(tx *bolt.Tx, id, reason string, at time.Time) error {
	sessions := tx.Bucket(bucketSessions)
	var sess storage.Session
	if err := get(sessions, "session", []byte(id), &sess); err != nil {
		return err
	}
	if sess.Revoked() {
		return nil
	}
	sess.RevokedAt, sess.RevokeReason = at, reason
	if err := releasePair(tx, sess); err != nil {
		return err
	}
	return put(sessions, []byte(id), sess)
}

// revokeSessions revokes every session of r's user or device that r does
// not spare, and returns them as revoked.
func revokeSessions(tx *bolt.Tx, r storage.Revocation) ([]storage.Session, error) {
	var idx *bolt.Bucket
	var owner string
	switch {
	case r.UserID != "":
		idx, owner = tx.Bucket(bucketSessionUser), r.UserID
	case r.DeviceID != "":
		idx, owner = tx.Bucket(bucketSessionDevice), r.DeviceID
	default:
		return nil, errors.New("revocation names neither a user nor a device")
	}
	prefix := []byte(owner + "\x00")
	var ids []string
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	sessions := tx.Bucket(bucketSessions)
	var revoked []storage.Session
	for _, id := range ids {
		var sess storage.Session
		if err := get(sessions, "session", []byte(id), &sess); err != nil {
			return revoked, err
		}
		if r.Spares(sess) {
			continue
		}
		sess.RevokedAt, sess.RevokeReason = r.At, r.Reason
		if err := releasePair(tx, sess); err != nil {
			return revoked, err
		}
		if err := put(sessions, []byte(id), sess); err != nil {
			return revoked, err
		}
		revoked = append(revoked, sess)
	}
	return revoked, nil
}

// LatestSessions implements storage.Sessions.
func (s *Store) LatestSessions(ctx context.Context, deviceIDs []string) (map[string]storage.Session, error) {
	latest := make(map[string]storage.Session, len(deviceIDs))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		sessions, byDevice := tx.Bucket(bucketSessions), tx.Bucket(bucketSessionDevice)
		for _, d := range deviceIDs {
			prefix := []byte(d + "\x00")
			c := byDevice.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				var sess storage.Session
				if err := get(sessions, "session", k[len(prefix):], &sess); err != nil {
					return err
				}
				if cur, ok := latest[d]; !ok || storage.Later(sess, cur) {
					latest[d] = sess
				}
			}
		}
		return nil
	})
	return latest, err
}
