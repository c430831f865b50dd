package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether/storage"
)

// handsetGroupsSQL is the groups of the handsets the user whose id is the
// SQL expression user is assigned to, as an array (the GIN index on
// devices.assigned_users finds them).
func handsetGroupsSQL(user string) string {
	return `ARRAY(SELECT DISTINCT grp FROM devices WHERE assigned_users @> ARRAY[` + user + `] AND grp <> '')`
}

// UserInScope implements storage.ScopeChecker: one statement reads the
// user and the groups of their handsets; storage.UserInScope decides.
func (s *Store) UserInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.read(ctx, "user in scope", func(q querier) error {
		var data []byte
		var hg []string
		err := q.QueryRow(ctx, `SELECT u.data, `+handsetGroupsSQL("u.id")+` FROM users u WHERE u.id = $1`, id).Scan(&data, &hg)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var u storage.User
		if err := json.Unmarshal(data, &u); err != nil {
			return fmt.Errorf("decode user %q: %w", id, err)
		}
		in = storage.UserInScope(u, hg, groups)
		return nil
	})
	return in, err
}

// SessionInScope implements storage.ScopeChecker: one statement reads the
// session, its handset's group, its user and the groups of the user's
// handsets; storage.SessionInScope decides.
func (s *Store) SessionInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.read(ctx, "session in scope", func(q querier) error {
		var sess, user []byte
		var dg *string
		var hg []string
		err := q.QueryRow(ctx, `SELECT s.data, d.grp, u.data, `+handsetGroupsSQL("s.user_id")+` FROM sessions s
			LEFT JOIN devices d ON s.device_id <> '' AND d.id = s.device_id
			LEFT JOIN users u ON u.id = s.user_id
			WHERE s.id = $1`, id).Scan(&sess, &dg, &user, &hg)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("session %q: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var ss storage.Session
		if err := json.Unmarshal(sess, &ss); err != nil {
			return fmt.Errorf("decode session %q: %w", id, err)
		}
		var u storage.User
		if user != nil {
			if err := json.Unmarshal(user, &u); err != nil {
				return fmt.Errorf("decode user: %w", err)
			}
		}
		var group string
		if dg != nil {
			group = *dg
		}
		in = storage.SessionInScope(ss, group, u, hg, groups)
		return nil
	})
	return in, err
}

// HandsetGroups implements storage.ScopeChecker.
func (s *Store) HandsetGroups(ctx context.Context, userID string) ([]string, error) {
	var gs []string
	err := s.read(ctx, "handset groups", func(q querier) error {
		return q.QueryRow(ctx, `SELECT `+handsetGroupsSQL("$1::text"), userID).Scan(&gs)
	})
	return storage.ScopeGroups(gs), err
}
