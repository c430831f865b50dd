package postgres

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"tether/storage"
)

func appendEvents(ctx context.Context, tx pgx.Tx, events []storage.Event) error {
	for _, e := range events {
		if e.ID == "" {
			return errEventID
		}
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events (id, at, action, user_id, device_id, data) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, action = EXCLUDED.action, user_id = EXCLUDED.user_id,
				device_id = EXCLUDED.device_id, data = EXCLUDED.data`,
			e.ID, e.Time, e.Action, e.UserID, e.DeviceID, data); err != nil {
			return err
		}
	}
	return nil
}

// AppendEvents implements storage.Audit.
func (s *Store) AppendEvents(ctx context.Context, events ...storage.Event) error {
	return s.update(ctx, "append events", func(tx pgx.Tx) error { return appendEvents(ctx, tx, events) })
}

// ListEvents implements storage.Audit.
func (s *Store) ListEvents(ctx context.Context, f storage.EventFilter) (storage.Page[storage.Event], error) {
	where, args := conditions(
		cond{"at >= $%d", f.From, !f.From.IsZero()},
		cond{"at < $%d", f.To, !f.To.IsZero()},
		cond{"action = $%d", f.Action, f.Action != ""},
		cond{"user_id = $%d", f.UserID, f.UserID != ""},
		cond{"device_id = $%d", f.DeviceID, f.DeviceID != ""},
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
