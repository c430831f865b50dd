package bolt

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

// The scope indexes (schema 5). A scope is a set of handset groups (see
// storage's scope rules); these buckets let a scoped list walk only what
// is in its groups, in ID order, instead of decoding every record:
//
//	devices_by_group     group \x00 deviceID           → nil
//	devices_by_assignee  userID \x00 deviceID          → the device's group
//	users_by_group       group \x00 userID \x00 reason → nil; reason is ""
//	                     for the user's own Scopes, or the ID of a handset of
//	                     the group the user is assigned to
//	events_by_group      group \x00 eventID            → nil
//
// Each is written in the transaction of the record it points at. Groups
// that can be in no scope (storage.ScopeGroup) are not indexed, but for
// devices_by_assignee, which holds every assignment.
var (
	bucketDeviceGroup    = []byte("devices_by_group")
	bucketDeviceAssignee = []byte("devices_by_assignee")
	bucketUserGroup      = []byte("users_by_group")
	bucketEventGroup     = []byte("events_by_group")
)

// migrateScopes creates the scope indexes and fills them from the devices
// and users there are. Events written before have no groups, and stay for
// unscoped principals only.
func migrateScopes(tx *bolt.Tx) error {
	if err := createBuckets(tx, bucketDeviceGroup, bucketDeviceAssignee, bucketUserGroup, bucketEventGroup); err != nil {
		return err
	}
	if err := tx.Bucket(bucketDevices).ForEach(func(id, v []byte) error {
		var d storage.Device
		if err := codec.Decode(v, &d); err != nil {
			return fmt.Errorf("decode device %q: %w", id, err)
		}
		return indexDevice(tx, d, true)
	}); err != nil {
		return err
	}
	return tx.Bucket(bucketUsers).ForEach(func(id, v []byte) error {
		var u storage.User
		if err := codec.Decode(v, &u); err != nil {
			return fmt.Errorf("decode user %q: %w", id, err)
		}
		return indexUser(tx, u, true)
	})
}

func join(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// indexDevice adds (or, with add false, removes) d's entries in the scope
// indexes.
func indexDevice(tx *bolt.Tx, d storage.Device, add bool) error {
	byGroup, byAssignee, users := tx.Bucket(bucketDeviceGroup), tx.Bucket(bucketDeviceAssignee), tx.Bucket(bucketUserGroup)
	scoped := storage.ScopeGroup(d.Group)
	put := func(b *bolt.Bucket, k, v []byte) error {
		if add {
			return b.Put(k, v)
		}
		return b.Delete(k)
	}
	if scoped {
		if err := put(byGroup, join(d.Group, d.ID), nil); err != nil {
			return err
		}
	}
	for _, u := range d.AssignedUsers {
		if err := put(byAssignee, join(u, d.ID), []byte(d.Group)); err != nil {
			return err
		}
		if scoped {
			if err := put(users, join(d.Group, u, d.ID), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// reindexDevice moves d's scope index entries from what old said to what
// next says, when its group or assignments changed.
func reindexDevice(tx *bolt.Tx, old, next storage.Device) error {
	if old.Group == next.Group && slices.Equal(old.AssignedUsers, next.AssignedUsers) {
		return nil
	}
	if err := indexDevice(tx, old, false); err != nil {
		return err
	}
	return indexDevice(tx, next, true)
}

// indexUser adds (or removes) the entries of u's own Scopes.
func indexUser(tx *bolt.Tx, u storage.User, add bool) error {
	b := tx.Bucket(bucketUserGroup)
	for _, g := range storage.ScopeGroups(u.Scopes) {
		k := join(g, u.ID, "")
		var err error
		if add {
			err = b.Put(k, nil)
		} else {
			err = b.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// reindexUser moves u's entries when its Scopes changed.
func reindexUser(tx *bolt.Tx, old, next storage.User) error {
	if slices.Equal(old.Scopes, next.Scopes) {
		return nil
	}
	if err := indexUser(tx, old, false); err != nil {
		return err
	}
	return indexUser(tx, next, true)
}

// indexEvent adds (or removes) e's entries in events_by_group.
func indexEvent(tx *bolt.Tx, e storage.Event, add bool) error {
	b := tx.Bucket(bucketEventGroup)
	for _, g := range storage.ScopeGroups(e.Groups) {
		var err error
		if add {
			err = b.Put(join(g, e.ID), nil)
		} else {
			err = b.Delete(join(g, e.ID))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// handsetGroups returns the distinct groups of the handsets userID is
// assigned to: a walk of its entries in devices_by_assignee, no device
// decoded.
func handsetGroups(tx *bolt.Tx, userID string) []string {
	if userID == "" {
		return nil
	}
	prefix := join(userID, "")
	var gs []string
	c := tx.Bucket(bucketDeviceAssignee).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if g := string(v); !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	return storage.ScopeGroups(gs)
}

// deviceGroup returns the group of the device with the given ID, "" for
// none or a missing one, decoding only that field.
func deviceGroup(tx *bolt.Tx, id string) (string, error) {
	if id == "" {
		return "", nil
	}
	data := tx.Bucket(bucketDevices).Get([]byte(id))
	if data == nil {
		return "", nil
	}
	var d struct {
		Group string `json:"group"`
	}
	if err := codec.Decode(data, &d); err != nil {
		return "", fmt.Errorf("decode device %q: %w", id, err)
	}
	return d.Group, nil
}

// scopeUser returns what the scope rules read of the user with the given
// ID, its ID, role and scopes (the rest zero), or the zero User for none
// or a missing one. It decodes only those: every audit event written
// calls it, inside the store's one writer.
func scopeUser(tx *bolt.Tx, id string) (storage.User, error) {
	if id == "" {
		return storage.User{}, nil
	}
	var u struct {
		ID     string       `json:"id"`
		Role   storage.Role `json:"role"`
		Scopes []string     `json:"scopes"`
	}
	if err := get(tx.Bucket(bucketUsers), "user", []byte(id), &u); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, err
	}
	return storage.User{ID: u.ID, Role: u.Role, Scopes: u.Scopes}, nil
}

// eventGroups sets e.Groups by storage.EventGroups from the records as
// they are in tx.
func eventGroups(tx *bolt.Tx, e storage.Event) (storage.Event, error) {
	dg, err := deviceGroup(tx, e.DeviceID)
	if err != nil {
		return e, err
	}
	u, err := scopeUser(tx, e.UserID)
	if err != nil {
		return e, err
	}
	var hg []string
	if u.Role == storage.RoleWorker {
		hg = handsetGroups(tx, u.ID)
	}
	e.Groups = storage.EventGroups(e, dg, u, hg)
	return e, nil
}

// UserInScope implements storage.ScopeChecker: one read of the user and
// of their entries in devices_by_assignee.
func (s *Store) UserInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var u storage.User
		if err := get(tx.Bucket(bucketUsers), "user", []byte(id), &u); err != nil {
			return err
		}
		in = storage.UserInScope(u, handsetGroups(tx, id), groups)
		return nil
	})
	return in, err
}

// SessionInScope implements storage.ScopeChecker.
func (s *Store) SessionInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var sess storage.Session
		if err := get(tx.Bucket(bucketSessions), "session", []byte(id), &sess); err != nil {
			return err
		}
		if groups == nil {
			in = true
			return nil
		}
		dg, err := deviceGroup(tx, sess.DeviceID)
		if err != nil {
			return err
		}
		u, err := scopeUser(tx, sess.UserID)
		if err != nil {
			return err
		}
		in = storage.SessionInScope(sess, dg, u, handsetGroups(tx, sess.UserID), groups)
		return nil
	})
	return in, err
}

// HandsetGroups implements storage.ScopeChecker.
func (s *Store) HandsetGroups(ctx context.Context, userID string) ([]string, error) {
	var gs []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		gs = handsetGroups(tx, userID)
		return nil
	})
	return gs, err
}

// groupPrefixes are the index prefixes ("group\x00") of the groups of a
// filter that can be in a scope.
func groupPrefixes(b *bolt.Bucket, groups []string) []indexPrefix {
	var ps []indexPrefix
	for _, g := range storage.ScopeGroups(groups) {
		ps = append(ps, indexPrefix{b, join(g, "")})
	}
	return ps
}

// indexPrefix is a range of an index bucket: the keys prefix + id, or
// prefix + id + "\x00" + anything.
type indexPrefix struct {
	b      *bolt.Bucket
	prefix []byte
}

// idOf returns the ID in an index key under prefix.
func idOf(k, prefix []byte) string {
	rest := k[len(prefix):]
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[:i]
	}
	return string(rest)
}

// merged walks the IDs of several index ranges at once, in ID order (or
// backwards), each ID once, strictly after (before) a cursor: a k-way merge
// on a heap, so that a page costs a seek per range and a few steps per
// item, whatever the ranges hold.
type merged struct {
	heads     []*head
	backwards bool
	last      string
	started   bool
}

type head struct {
	c      *bolt.Cursor
	prefix []byte
	id     string
}

// step moves h to the next key of its range (the previous with backwards),
// reporting false when the range is done.
func (h *head) step(backwards bool) bool {
	var k []byte
	if backwards {
		k, _ = h.c.Prev()
	} else {
		k, _ = h.c.Next()
	}
	return h.at(k)
}

func (h *head) at(k []byte) bool {
	if k == nil || !bytes.HasPrefix(k, h.prefix) {
		return false
	}
	h.id = idOf(k, h.prefix)
	return true
}

// newMerged positions a head on each range, just after (before) after.
func newMerged(ranges []indexPrefix, after string, backwards bool) *merged {
	m := &merged{backwards: backwards}
	for _, r := range ranges {
		h := &head{c: r.b.Cursor(), prefix: r.prefix}
		var ok bool
		switch {
		case !backwards:
			ok = h.at(firstKey(h.c.Seek(append(slices.Clip(r.prefix), after...))))
			for ok && after != "" && h.id <= after {
				ok = h.step(false)
			}
		default:
			// Seek lands on the first key at or above the bound (nil past
			// the last): the range starts on the key below it.
			bound := append(slices.Clip(r.prefix), after...)
			if after == "" {
				bound = slices.Clone(r.prefix)
				bound[len(bound)-1]++ // just past every key of the prefix
			}
			if k, _ := h.c.Seek(bound); k == nil {
				ok = h.at(firstKey(h.c.Last()))
			} else {
				ok = h.at(firstKey(h.c.Prev()))
			}
			for ok && after != "" && h.id >= after {
				ok = h.step(true)
			}
		}
		if ok {
			m.heads = append(m.heads, h)
		}
	}
	heap.Init(m)
	return m
}

func firstKey(k, _ []byte) []byte { return k }

// next returns the next ID, or false when every range is done.
func (m *merged) next() (string, bool) {
	for len(m.heads) > 0 {
		h := m.heads[0]
		id := h.id
		if h.step(m.backwards) {
			heap.Fix(m, 0)
		} else {
			heap.Pop(m)
		}
		if m.started && id == m.last {
			continue // the same ID from another range, or another reason
		}
		m.started, m.last = true, id
		return id, true
	}
	return "", false
}

// heap.Interface, on the heads' current IDs.
func (m *merged) Len() int { return len(m.heads) }
func (m *merged) Less(i, j int) bool {
	if m.backwards {
		return m.heads[i].id > m.heads[j].id
	}
	return m.heads[i].id < m.heads[j].id
}
func (m *merged) Swap(i, j int) { m.heads[i], m.heads[j] = m.heads[j], m.heads[i] }
func (m *merged) Push(x any)    { m.heads = append(m.heads, x.(*head)) }
func (m *merged) Pop() any {
	h := m.heads[len(m.heads)-1]
	m.heads = m.heads[:len(m.heads)-1]
	return h
}

// listMerged is walk for a scoped list: the records of b whose IDs the
// ranges hold, in ID order (or backwards) from just after the cursor,
// decoded and kept if match accepts them, up to limit, looking one match
// further to tell whether there is a next page.
func listMerged[T any](b *bolt.Bucket, ranges []indexPrefix, after string, limit int, backwards bool, match func(T) (bool, error), id func(T) string) (storage.Page[T], error) {
	limit = storage.PageLimit(limit)
	page := newPage[T](limit)
	m := newMerged(ranges, after, backwards)
	for {
		key, ok := m.next()
		if !ok {
			return page, nil
		}
		v := b.Get([]byte(key))
		if v == nil {
			continue // an index entry of a purged record: never, but harmless
		}
		rec := nextSlot(&page)
		if err := codec.Decode(v, rec); err != nil {
			return storage.Page[T]{}, fmt.Errorf("decode %q: %w", key, err)
		}
		if ok, err := match(*rec); err != nil {
			return storage.Page[T]{}, err
		} else if !ok {
			dropSlot(&page)
			continue
		}
		if full(&page, limit, id) {
			return page, nil
		}
	}
}
