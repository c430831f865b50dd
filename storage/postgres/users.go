package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

func usernameConflict(name string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "user", Field: "username", Value: name}
}

// lookAlike refuses u's username if another user's has its skeleton. The
// read is a predicate on the index, so a concurrent insert of a look-alike
// fails one of the two SERIALIZABLE transactions, and the retry sees it.
func lookAlike(ctx context.Context, tx pgx.Tx, u storage.User) error {
	var taken bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE username_skeleton = $1 AND id <> $2)`,
		storage.UsernameSkeleton(u.Username), u.ID).Scan(&taken)
	if err == nil && taken {
		return storage.ConfusableConflict(u.Username)
	}
	return err
}

// CreateUser implements storage.Users.
func (s *Store) CreateUser(ctx context.Context, u storage.User, opts ...storage.WriteOption) (storage.User, error) {
	var created storage.User
	err := s.write(ctx, "create user", opts, func(tx pgx.Tx) error {
		key, err := nextValue(ctx, tx, "users")
		if err != nil {
			return err
		}
		rec := u
		rec.Key = key
		data, err := codec.Encode(rec)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO users (id, username_key, username_skeleton, role, scopes, groups, data)
			VALUES ($1, $2, $3, $4, $5, `+memberOf("$1", "$4", "$5")+`, $6)`,
			rec.ID, storage.UsernameKey(rec.Username), storage.UsernameSkeleton(rec.Username), string(rec.Role), orEmpty(storage.ScopeGroups(rec.Scopes)), data)
		err = unique(err, "users_pkey", &storage.ConflictError{Entity: "user", Field: "id", Value: rec.ID})
		if err := unique(err, "users_username_key", usernameConflict(rec.Username)); err != nil {
			return err
		}
		if err := lookAlike(ctx, tx, rec); err != nil {
			return err
		}
		created = rec.Clone()
		return nil
	})
	if err != nil {
		return storage.User{}, err
	}
	return created, nil
}

// GetUser implements storage.Users.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	var u storage.User
	err := s.read(ctx, "get user", func(q querier) error {
		return getOne(ctx, q, &u, fmt.Sprintf("user %q", id), `SELECT data FROM users WHERE id = $1`, id)
	})
	return u, err
}

// GetUserByUsername implements storage.Users.
func (s *Store) GetUserByUsername(ctx context.Context, name string) (storage.User, error) {
	var u storage.User
	err := s.read(ctx, "get user", func(q querier) error {
		return getOne(ctx, q, &u, fmt.Sprintf("user %q", name), `SELECT data FROM users WHERE username_key = $1`, storage.UsernameKey(name))
	})
	return u, err
}

// ListUsers implements storage.Users. Role and scope are filtered by the
// database, the rest by UserFilter.Match.
func (s *Store) ListUsers(ctx context.Context, f storage.UserFilter) (storage.Page[storage.User], error) {
	groups, none := scope(f.Groups)
	if none {
		return storage.Page[storage.User]{Items: []storage.User{}}, ctx.Err()
	}
	where, args := conditions(
		cond{"role = $%d", string(f.Role), f.Role != ""},
		cond{"groups && $%d::text[]", groups, groups != nil},
	)
	rest := f
	rest.Groups = nil // the database's
	var page storage.Page[storage.User]
	err := s.view(ctx, "list users", func(tx pgx.Tx) error {
		var err error
		page, err = list(ctx, tx, "users", where, args, f.After, f.Limit,
			func(u storage.User) bool { return rest.Match(u, nil) },
			func(u storage.User) string { return u.ID })
		return err
	})
	return page, err
}

// UpdateUser implements storage.Users.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(storage.User) (storage.User, error), opts ...storage.WriteOption) (storage.User, error) {
	var updated storage.User
	err := s.write(ctx, "update user", opts, func(tx pgx.Tx) error {
		var old storage.User
		if err := getOne(ctx, tx, &old, fmt.Sprintf("user %q", id), `SELECT data FROM users WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckUserUpdate(old, next); err != nil {
			return err
		}
		data, err := codec.Encode(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE users SET username_key = $2, username_skeleton = $3, role = $4, scopes = $5,
			groups = `+memberOf("$1", "$4", "$5")+`, data = $6 WHERE id = $1`,
			id, storage.UsernameKey(next.Username), storage.UsernameSkeleton(next.Username), string(next.Role), orEmpty(storage.ScopeGroups(next.Scopes)), data)
		if err := unique(err, "users_username_key", usernameConflict(next.Username)); err != nil {
			return err
		}
		if storage.UsernameSkeleton(old.Username) != storage.UsernameSkeleton(next.Username) {
			if err := lookAlike(ctx, tx, next); err != nil {
				return err
			}
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// LoadUsers implements storage.Loader: users as they are, keys included,
// in one transaction.
func (s *Store) LoadUsers(ctx context.Context, us []storage.User) error {
	return s.update(ctx, "load users", func(tx pgx.Tx) error {
		var top uint64
		for _, u := range us {
			data, err := codec.Encode(u)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO users (id, username_key, username_skeleton, role, scopes, groups, data)
				VALUES ($1, $2, $3, $4, $5, `+memberOf("$1", "$4", "$5")+`, $6)`,
				u.ID, storage.UsernameKey(u.Username), storage.UsernameSkeleton(u.Username), string(u.Role), orEmpty(storage.ScopeGroups(u.Scopes)), data)
			err = unique(err, "users_pkey", &storage.ConflictError{Entity: "user", Field: "id", Value: u.ID})
			if err := unique(err, "users_username_key", usernameConflict(u.Username)); err != nil {
				return err
			}
			top = max(top, u.Key)
		}
		return raiseCounter(ctx, tx, "users", top)
	})
}

// Usernames implements storage.Users: one statement.
func (s *Store) Usernames(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	err := s.read(ctx, "usernames", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT id, data->>'username' FROM users WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		var id, name string
		_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error {
			out[id] = name
			return nil
		})
		return err
	})
	return out, err
}
