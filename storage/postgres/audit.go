package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

// eventGroupsSQL is storage.EventGroups in SQL, on an event's given groups
// ($7), device ($5) and user ($4), as the rows are in the transaction: the
// device's group, and the groups the user is in (users.groups: for a
// worker, their scopes and their handsets' groups; for anyone else none).
// Two primary key lookups. Sorted as Go sorts them (the "C" collation).
const eventGroupsSQL = `SELECT coalesce(array_agg(DISTINCT g ORDER BY g), '{}') AS groups FROM (
		SELECT unnest($7::text[]) COLLATE "C" AS g
		UNION ALL SELECT grp COLLATE "C" FROM devices WHERE $5 <> '' AND id = $5
		UNION ALL SELECT unnest(groups) FROM users WHERE $4 <> '' AND id = $4
	) s WHERE g <> ''`

// appendEvents writes events with their groups (storage.Event.Groups),
// worked out in the statement that inserts each one: one round trip per
// event, as before there were groups. The record's JSON gets the groups
// spliced in as text rather than rebuilt through jsonb, so it stays as Go
// wrote it (jsonb would refuse a NUL escape that a json column keeps). With
// event routes, each event newly inserted (not one written again under its
// ID) is queued for its sinks (outbox.go), its groups as the insert worked
// them out.
func (s *Store) appendEvents(ctx context.Context, tx pgx.Tx, events []storage.Event) error {
	routes := *s.routes.Load()
	for _, e := range events {
		insert, args, err := eventInsert(e)
		if err != nil {
			return err
		}
		if len(routes) == 0 {
			if _, err := tx.Exec(ctx, insert, args...); err != nil {
				return err
			}
			continue
		}
		var inserted bool
		if err := tx.QueryRow(ctx, insert+` RETURNING groups, xmax = 0`, args...).Scan(&e.Groups, &inserted); err != nil {
			return err
		}
		if len(e.Groups) == 0 {
			e.Groups = nil
		}
		if inserted {
			if err := s.enqueue(ctx, tx, e, routes); err != nil {
				return err
			}
		}
	}
	return nil
}

// queueEvents is appendEvents for a pipelined transaction: it queues the
// inserts on b. It cannot queue events for their sinks (which needs the
// inserts' answers), so it reports false, queueing nothing, when there
// are event routes.
func (s *Store) queueEvents(b *pgx.Batch, events []storage.Event) (bool, error) {
	if len(*s.routes.Load()) > 0 {
		return false, nil
	}
	for _, e := range events {
		insert, args, err := eventInsert(e)
		if err != nil {
			return false, err
		}
		b.Queue(insert, args...)
	}
	return true, nil
}

// eventInsert is the statement that writes e with its groups
// (eventInsertSQL), and its arguments.
func eventInsert(e storage.Event) (string, []any, error) {
	args, err := eventArgs(e)
	return eventInsertSQL, args, err
}

// eventArgs are the arguments, $1 to $7, of insertEvent's statements.
func eventArgs(e storage.Event) ([]any, error) {
	if e.ID == "" {
		return nil, errEventID
	}
	given := storage.ScopeGroups(e.Groups)
	e.Groups = nil
	data, err := codec.Encode(e)
	if err != nil {
		return nil, err
	}
	return []any{e.ID, e.Time, e.Action, e.UserID, e.DeviceID, string(data), orEmpty(given)}, nil
}

// eventInsertSQL writes an event with its groups.
var eventInsertSQL = `WITH eg AS (` + eventGroupsSQL + `) ` + insertEvent("")

// insertEvent is the INSERT of an event, on eventArgs, from the groups in
// eg, made only where guard holds (SQL; empty for always).
func insertEvent(guard string) string {
	if guard != "" {
		guard = " WHERE " + guard
	}
	return `INSERT INTO events (id, at, action, user_id, device_id, groups, data)
		SELECT $1, $2, $3, $4, $5, eg.groups, CASE WHEN cardinality(eg.groups) = 0 THEN $6::text::json
			ELSE (left($6::text, -1) || ',"groups":' || array_to_json(eg.groups)::text || '}')::json END
		FROM eg` + guard + `
		ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, action = EXCLUDED.action, user_id = EXCLUDED.user_id,
			device_id = EXCLUDED.device_id, groups = EXCLUDED.groups, data = EXCLUDED.data`
}

// AppendEvents implements storage.Audit.
func (s *Store) AppendEvents(ctx context.Context, events ...storage.Event) error {
	return s.update(ctx, "append events", func(tx pgx.Tx) error { return s.appendEvents(ctx, tx, events) })
}

// LoadEvents implements storage.Loader: events as they are, their groups
// included, in one transaction.
func (s *Store) LoadEvents(ctx context.Context, events []storage.Event) error {
	return s.update(ctx, "load events", func(tx pgx.Tx) error {
		for _, e := range events {
			if e.ID == "" {
				return errEventID
			}
			data, err := codec.Encode(e)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO events (id, at, action, user_id, device_id, groups, data) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				e.ID, e.Time, e.Action, e.UserID, e.DeviceID, orEmpty(storage.ScopeGroups(e.Groups)), data); err != nil {
				return unique(err, "events_pkey", &storage.ConflictError{Entity: "event", Field: "id", Value: e.ID})
			}
		}
		return nil
	})
}

// ListEvents implements storage.Audit.
func (s *Store) ListEvents(ctx context.Context, f storage.EventFilter) (storage.Page[storage.Event], error) {
	groups, none := scope(f.Groups)
	if none {
		return storage.Page[storage.Event]{Items: []storage.Event{}}, ctx.Err()
	}
	where, args := conditions(
		cond{"at >= $%d", f.From, !f.From.IsZero()},
		cond{"at < $%d", f.To, !f.To.IsZero()},
		cond{"action = $%d", f.Action, f.Action != ""},
		cond{"user_id = $%d", f.UserID, f.UserID != ""},
		cond{"device_id = $%d", f.DeviceID, f.DeviceID != ""},
		cond{"groups && $%d::text[]", groups, groups != nil},
	)
	var page storage.Page[storage.Event]
	err := s.view(ctx, "list events", func(tx pgx.Tx) error {
		var err error
		page, err = walk(ctx, tx, "events", where, args, f.After, f.Limit, f.NewestFirst, f.Match,
			func(e storage.Event) string { return e.ID })
		return err
	})
	return page, err
}
