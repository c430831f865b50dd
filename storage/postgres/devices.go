package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

func imeiConflict(imei string) *storage.ConflictError {
	return &storage.ConflictError{Entity: "device", Field: "imei", Value: imei}
}

// CreateDevice implements storage.Devices.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, opts ...storage.WriteOption) error {
	return s.write(ctx, "create device", opts, func(tx pgx.Tx) error {
		if err := createDevice(ctx, tx, d); err != nil {
			return err
		}
		return refreshGroups(ctx, tx, d)
	})
}

// CreateDevices implements storage.Devices.
func (s *Store) CreateDevices(ctx context.Context, ds []storage.Device, opts ...storage.WriteOption) error {
	return s.write(ctx, "create devices", opts, func(tx pgx.Tx) error {
		for _, d := range ds {
			if err := createDevice(ctx, tx, d); err != nil {
				return err
			}
		}
		return refreshGroups(ctx, tx, ds...)
	})
}

func createDevice(ctx context.Context, tx pgx.Tx, d storage.Device) error {
	data, err := codec.Encode(d)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO devices (id, imei, status, grp, assigned_users, data) VALUES ($1, $2, $3, $4, $5, $6)`,
		d.ID, d.IMEI, string(d.Status), d.Group, orEmpty(d.AssignedUsers), data)
	err = unique(err, "devices_pkey", &storage.ConflictError{Entity: "device", Field: "id", Value: d.ID})
	return unique(err, "devices_imei_key", imeiConflict(d.IMEI))
}

// GetDevice implements storage.Devices.
func (s *Store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	var d storage.Device
	err := s.read(ctx, "get device", func(q querier) error {
		return getOne(ctx, q, &d, fmt.Sprintf("device %q", id), `SELECT data FROM devices WHERE id = $1`, id)
	})
	return d, err
}

// GetDeviceByIMEI implements storage.Devices.
func (s *Store) GetDeviceByIMEI(ctx context.Context, imei string) (storage.Device, error) {
	var d storage.Device
	err := s.read(ctx, "get device", func(q querier) error {
		return getOne(ctx, q, &d, fmt.Sprintf("device with imei %q", imei), `SELECT data FROM devices WHERE imei = $1`, imei)
	})
	return d, err
}

// DeviceNames implements storage.Devices: one statement.
func (s *Store) DeviceNames(ctx context.Context, ids []string) (map[string]storage.DeviceName, error) {
	out := make(map[string]storage.DeviceName, len(ids))
	err := s.read(ctx, "device names", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT id, imei, coalesce(data->>'label', '') FROM devices WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		var id string
		var n storage.DeviceName
		_, err = pgx.ForEachRow(rows, []any{&id, &n.IMEI, &n.Label}, func() error {
			out[id] = n
			return nil
		})
		return err
	})
	return out, err
}

// ListDevices implements storage.Devices. Status, group, assigned user
// and scope are filtered by the database, the text search by
// DeviceFilter.Match.
func (s *Store) ListDevices(ctx context.Context, f storage.DeviceFilter) (storage.Page[storage.Device], error) {
	groups, none := scope(f.Groups)
	if none {
		return storage.Page[storage.Device]{Items: []storage.Device{}}, ctx.Err()
	}
	where, args := conditions(
		cond{"status = $%d", string(f.Status), f.Status != ""},
		cond{"grp = $%d", f.Group, f.Group != ""},
		cond{"assigned_users @> ARRAY[$%d::text]", f.AssignedUser, f.AssignedUser != ""},
		cond{"grp = ANY($%d)", groups, groups != nil},
	)
	var page storage.Page[storage.Device]
	err := s.view(ctx, "list devices", func(tx pgx.Tx) error {
		var err error
		page, err = list(ctx, tx, "devices", where, args, f.After, f.Limit, f.Match,
			func(d storage.Device) string { return d.ID })
		return err
	})
	return page, err
}

// UpdateDevice implements storage.Devices.
func (s *Store) UpdateDevice(ctx context.Context, id string, fn func(storage.Device) (storage.Device, error), opts ...storage.WriteOption) (storage.Device, error) {
	var updated storage.Device
	err := s.write(ctx, "update device", opts, func(tx pgx.Tx) error {
		var old storage.Device
		if err := getOne(ctx, tx, &old, fmt.Sprintf("device %q", id), `SELECT data FROM devices WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		next, err := fn(old.Clone())
		if err != nil {
			return err
		}
		if err := storage.CheckDeviceUpdate(old, next); err != nil {
			return err
		}
		data, err := codec.Encode(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE devices SET imei = $2, status = $3, grp = $4, assigned_users = $5, data = $6 WHERE id = $1`,
			id, next.IMEI, string(next.Status), next.Group, orEmpty(next.AssignedUsers), data)
		if err := unique(err, "devices_imei_key", imeiConflict(next.IMEI)); err != nil {
			return err
		}
		if old.Group != next.Group || !slices.Equal(old.AssignedUsers, next.AssignedUsers) {
			if err := refreshGroups(ctx, tx, old, next); err != nil {
				return err
			}
		}
		updated = next.Clone()
		return nil
	})
	return updated, err
}

// cond is one optional SQL condition with its argument.
type cond struct {
	sql string // with one %d for the argument's number
	arg any
	on  bool
}

// scope returns, for a filter's Groups, the groups a query keeps (nil for
// no restriction), or none when it keeps nothing at all.
func scope(groups []string) (keep []string, none bool) {
	if groups == nil {
		return nil, false
	}
	keep = storage.ScopeGroups(groups)
	return keep, keep == nil
}

// orEmpty is ss, or an empty array for nil (the array columns are NOT
// NULL).
func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// conditions joins the conditions that are on, numbering their arguments
// from $2 ($1 is list's cursor).
func conditions(cs ...cond) (string, []any) {
	var where string
	var args []any
	for _, c := range cs {
		if !c.on {
			continue
		}
		if where != "" {
			where += " AND "
		}
		args = append(args, c.arg)
		where += fmt.Sprintf(c.sql, len(args)+1)
	}
	return where, args
}
