package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// purge deletes, batch by batch, each in a transaction of its own, the
// rows that doomed (a query yielding ids, with $1 the cutoff and $2 the
// batch size) selects, and then whatever the rows pointed at with cleanup
// ($1 the deleted ids). It returns how many rows it deleted.
func (s *Store) purge(ctx context.Context, op, table, doomed, cleanup string, cutoff time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		var n int
		err := s.update(ctx, op, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `DELETE FROM `+table+` WHERE id IN (`+doomed+` ORDER BY id LIMIT $2 FOR UPDATE) RETURNING id`, cutoff, batch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			if cleanup != "" && len(ids) > 0 {
				if _, err := tx.Exec(ctx, cleanup, ids); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

// PurgeSessions implements storage.Sessions.
func (s *Store) PurgeSessions(ctx context.Context, endedBefore time.Time, batch int) (int, error) {
	return s.purge(ctx, "purge sessions", "sessions",
		`SELECT id FROM sessions WHERE ended_at < $1`,
		`DELETE FROM session_pairs WHERE session_id = ANY($1)`, endedBefore, batch)
}

// PurgeEvents implements storage.Audit.
func (s *Store) PurgeEvents(ctx context.Context, before time.Time, batch int) (int, error) {
	return s.purge(ctx, "purge events", "events", `SELECT id FROM events WHERE at < $1`, "", before, batch)
}

// PurgeEnrollmentCodes implements storage.EnrollmentCodes.
func (s *Store) PurgeEnrollmentCodes(ctx context.Context, before time.Time, batch int) (int, error) {
	return s.purge(ctx, "purge enrollment codes", "enrollment_codes",
		`SELECT id FROM enrollment_codes WHERE expires_at < $1 OR revoked_at < $1`, "", before, batch)
}
