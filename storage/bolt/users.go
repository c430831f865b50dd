package bolt

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"tether/storage"
)

func usernameConflict(name string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "user", Field: "username", Value: name}
}

// skeletonKey is the users_by_skeleton key of a user.
func skeletonKey(username, id string) []byte {
	return []byte(storage.UsernameSkeleton(username) + "\x00" + id)
}

// claimSkeleton indexes u's username by its skeleton, unless another user's
// username has the same one.
func claimSkeleton(tx *bolt.Tx, u storage.User) error {
	prefix := []byte(storage.UsernameSkeleton(u.Username) + "\x00")
	c := tx.Bucket(bucketUserSkeleton).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if string(k[len(prefix):]) != u.ID {
			return storage.ConfusableConflict(u.Username)
		}
	}
	return tx.Bucket(bucketUserSkeleton).Put(append(prefix, u.ID...), nil)
}

// CreateUser implements storage.Users.
func (s *Store) CreateUser(ctx context.Context, u storage.User, opts ...storage.WriteOption) (storage.User, error) {
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if users.Get([]byte(u.ID)) != nil {
			return &storage.ConflictError{Entity: "user", Field: "id", Value: u.ID}
		}
		key := []byte(storage.UsernameKey(u.Username))
		if err := claim(tx.Bucket(bucketUserName), key, u.ID, usernameConflict(u.Username)); err != nil {
			return err
		}
		if err := claimSkeleton(tx, u); err != nil {
			return err
		}
		seq, err := users.NextSequence()
		if err != nil {
			return err
		}
		u.Key = seq
		if err := indexUser(tx, u, true); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsernameByID).Put([]byte(u.ID), []byte(u.Username)); err != nil {
			return err
		}
		return put(users, []byte(u.ID), u)
	})
	if err != nil {
		return storage.User{}, err
	}
	return u.Clone(), nil
}

// GetUser implements storage.Users.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	var u storage.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx.Bucket(bucketUsers), "user", []byte(id), &u)
	})
	return u, err
}

// GetUserByUsername implements storage.Users.
func (s *Store) GetUserByUsername(ctx context.Context, name string) (storage.User, error) {
	var u storage.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketUserName).Get([]byte(storage.UsernameKey(name)))
		if id == nil {
			return fmt.Errorf("user %q: %w", name, storage.ErrNotFound)
		}
		return get(tx.Bucket(bucketUsers), "user", id, &u)
	})
	return u, err
}

// ListUsers implements storage.Users. A scoped list walks only the users
// of its groups (users_by_group).
func (s *Store) ListUsers(ctx context.Context, f storage.UserFilter) (storage.Page[storage.User], error) {
	var page storage.Page[storage.User]
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		id := func(u storage.User) string { return u.ID }
		if f.Groups == nil {
			page, err = list(tx.Bucket(bucketUsers), f.After, f.Limit, func(u storage.User) bool { return f.Match(u, nil) }, id)
			return err
		}
		page, err = listMerged(tx.Bucket(bucketUsers), groupPrefixes(tx.Bucket(bucketUserGroup), f.Groups), f.After, f.Limit, false,
			func(u storage.User) (bool, error) { return f.Match(u, handsetGroups(tx, u.ID)), nil }, id)
		return err
	})
	return page, err
}

// UpdateUser implements storage.Users.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(storage.User) (storage.User, error), opts ...storage.WriteOption) (storage.User, error) {
	var updated storage.User
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var old storage.User
		if err := get(users, "user", []byte(id), &old); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckUserUpdate(old, next); err != nil {
			return err
		}
		oldKey, newKey := storage.UsernameKey(old.Username), storage.UsernameKey(next.Username)
		if oldKey != newKey {
			idx := tx.Bucket(bucketUserName)
			if err := claim(idx, []byte(newKey), id, usernameConflict(next.Username)); err != nil {
				return err
			}
			if err := idx.Delete([]byte(oldKey)); err != nil {
				return err
			}
		}
		if storage.UsernameSkeleton(old.Username) != storage.UsernameSkeleton(next.Username) {
			if err := claimSkeleton(tx, next); err != nil {
				return err
			}
			if err := tx.Bucket(bucketUserSkeleton).Delete(skeletonKey(old.Username, id)); err != nil {
				return err
			}
		}
		if err := reindexUser(tx, old, next); err != nil {
			return err
		}
		if old.Username != next.Username {
			if err := tx.Bucket(bucketUsernameByID).Put([]byte(id), []byte(next.Username)); err != nil {
				return err
			}
		}
		updated = next.Clone()
		return put(users, []byte(id), next)
	})
	return updated, err
}

// LoadUsers implements storage.Loader: users as they are, keys included,
// in one transaction.
func (s *Store) LoadUsers(ctx context.Context, us []storage.User) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		for _, u := range us {
			if users.Get([]byte(u.ID)) != nil {
				return &storage.ConflictError{Entity: "user", Field: "id", Value: u.ID}
			}
			key := []byte(storage.UsernameKey(u.Username))
			if err := claim(tx.Bucket(bucketUserName), key, u.ID, usernameConflict(u.Username)); err != nil {
				return err
			}
			// Accounts that look alike and already exist are kept.
			if err := tx.Bucket(bucketUserSkeleton).Put(skeletonKey(u.Username, u.ID), nil); err != nil {
				return err
			}
			if u.Key > users.Sequence() {
				if err := users.SetSequence(u.Key); err != nil {
					return err
				}
			}
			if err := indexUser(tx, u, true); err != nil {
				return err
			}
			if err := tx.Bucket(bucketUsernameByID).Put([]byte(u.ID), []byte(u.Username)); err != nil {
				return err
			}
			if err := put(users, []byte(u.ID), u); err != nil {
				return err
			}
		}
		return nil
	})
}

// Usernames implements storage.Users: one read transaction, a key lookup
// a user in the usernames_by_id index, no record decoded.
func (s *Store) Usernames(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketUsernameByID)
		for _, id := range ids {
			if name := idx.Get([]byte(id)); name != nil {
				out[id] = string(name)
			}
		}
		return nil
	})
	return out, err
}
