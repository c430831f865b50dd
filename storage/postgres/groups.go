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

// GetGroup implements storage.Groups.
func (s *Store) GetGroup(ctx context.Context, name string) (storage.Group, error) {
	var g storage.Group
	err := s.read(ctx, "get group", func(q querier) error {
		return getOne(ctx, q, &g, fmt.Sprintf("group %q", name), `SELECT data FROM groups WHERE name = $1`, name)
	})
	return g, err
}

// ListGroups implements storage.Groups.
func (s *Store) ListGroups(ctx context.Context) ([]storage.Group, error) {
	groups := []storage.Group{}
	err := s.read(ctx, "list groups", func(q querier) error {
		var err error
		groups, err = all[storage.Group](ctx, q, `SELECT data FROM groups ORDER BY name`)
		return err
	})
	return groups, err
}

// UpdateGroup implements storage.Groups.
func (s *Store) UpdateGroup(ctx context.Context, name string, fn func(storage.Group) (storage.Group, error), opts ...storage.WriteOption) (storage.Group, error) {
	var updated storage.Group
	err := s.write(ctx, "update group", opts, func(tx pgx.Tx) error {
		old := storage.Group{Name: name}
		err := getOne(ctx, tx, &old, fmt.Sprintf("group %q", name), `SELECT data FROM groups WHERE name = $1 FOR UPDATE`, name)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if next.Name != name {
			return fmt.Errorf("update group %q: the name cannot change", name)
		}
		data, err := codec.Encode(next)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO groups (name, data) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data`, name, data); err != nil {
			return err
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// DeleteGroup implements storage.Groups.
func (s *Store) DeleteGroup(ctx context.Context, name string, opts ...storage.WriteOption) error {
	return s.write(ctx, "delete group", opts, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM groups WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("group %q: %w", name, storage.ErrNotFound)
		}
		return nil
	})
}

// DeviceGroups implements storage.Devices.
func (s *Store) DeviceGroups(ctx context.Context) ([]string, error) {
	groups := []string{}
	err := s.read(ctx, "device groups", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT DISTINCT grp FROM devices WHERE grp <> ''`)
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		slices.Sort(names)
		groups = names
		return nil
	})
	return groups, err
}
