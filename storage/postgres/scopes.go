package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// Scopes (storage's scope rules) are kept in columns beside the records
// (schema 7): devices.grp and devices.assigned_users, users.role,
// users.scopes, enrollment_codes.grp, events.groups; and users.groups, the
// groups a worker is in (their own scopes and the groups of their
// handsets), worked out again in the transaction of every write that can
// change it: a write of the user, or of a handset they are or were
// assigned to. Membership thus costs the rare writes that change it, and
// neither a scoped list nor an event's write (one per renewal) has to join
// a worker's handsets.

// memberOf is the SQL expression of users.groups for the user whose id,
// role and scopes are the SQL expressions given: for a worker, their
// scopes and the groups of the handsets assigned to them (the GIN index on
// devices.assigned_users finds those), distinct and sorted as Go sorts
// them; for anyone else none.
func memberOf(id, role, scopes string) string {
	return `CASE WHEN ` + role + ` = 'worker' THEN ARRAY(SELECT DISTINCT g FROM (
			SELECT unnest(` + scopes + `::text[]) COLLATE "C" AS g
			UNION ALL SELECT d.grp COLLATE "C" FROM devices d WHERE d.assigned_users @> ARRAY[` + id + `::text]
		) x WHERE g <> '' ORDER BY g) ELSE '{}' END`
}

// refreshGroups works out again, in tx, users.groups of the users assigned
// to the given devices (as they were and as they are), when one of the
// devices' groups can be in a scope.
func refreshGroups(ctx context.Context, tx pgx.Tx, ds ...storage.Device) error {
	var ids []string
	for _, d := range ds {
		if storage.ScopeGroup(d.Group) {
			ids = append(ids, d.AssignedUsers...)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	_, err := tx.Exec(ctx, `UPDATE users u SET groups = n.groups FROM (
			SELECT w.id, `+memberOf("w.id", "w.role", "w.scopes")+` AS groups FROM users w WHERE w.id = ANY($1)
		) n WHERE u.id = n.id AND u.groups <> n.groups`, slices.Compact(ids))
	return err
}

// handsetGroupsSQL is the groups of the handsets the user whose id is the
// SQL expression user is assigned to, as an array.
func handsetGroupsSQL(user string) string {
	return `ARRAY(SELECT DISTINCT grp FROM devices WHERE assigned_users @> ARRAY[` + user + `] AND grp <> '')`
}

// UserInScope implements storage.ScopeChecker: one read of the user and
// the groups they are in; storage.UserInScope decides.
func (s *Store) UserInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.read(ctx, "user in scope", func(q querier) error {
		var data []byte
		var member []string
		err := q.QueryRow(ctx, `SELECT data, groups FROM users WHERE id = $1`, id).Scan(&data, &member)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var u storage.User
		if err := codec.Decode(data, &u); err != nil {
			return fmt.Errorf("decode user %q: %w", id, err)
		}
		// The groups a worker is in hold their handsets' groups: what the
		// rule reads of them.
		in = storage.UserInScope(u, member, groups)
		return nil
	})
	return in, err
}

// SessionInScope implements storage.ScopeChecker: one statement reads the
// session, its handset's group, its user and the groups the user is in;
// storage.SessionInScope decides.
func (s *Store) SessionInScope(ctx context.Context, id string, groups []string) (bool, error) {
	var in bool
	err := s.read(ctx, "session in scope", func(q querier) error {
		var sess, user []byte
		var dg *string
		var member []string
		err := q.QueryRow(ctx, `SELECT s.data, d.grp, u.data, coalesce(u.groups, '{}') FROM sessions s
			LEFT JOIN devices d ON s.device_id <> '' AND d.id = s.device_id
			LEFT JOIN users u ON u.id = s.user_id
			WHERE s.id = $1`, id).Scan(&sess, &dg, &user, &member)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("session %q: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		var ss storage.Session
		if err := codec.Decode(sess, &ss); err != nil {
			return fmt.Errorf("decode session %q: %w", id, err)
		}
		var u storage.User
		if user != nil {
			if err := codec.Decode(user, &u); err != nil {
				return fmt.Errorf("decode user: %w", err)
			}
		}
		var group string
		if dg != nil {
			group = *dg
		}
		in = storage.SessionInScope(ss, group, u, member, groups)
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
