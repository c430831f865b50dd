package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"tether/storage"
)

var _ storage.Statser = (*Store)(nil)

// Stats implements storage.Statser: devices by status, live sessions (one
// per user and handset), and the size of Tether's tables with their
// indexes.
func (s *Store) Stats(ctx context.Context) (storage.Stats, error) {
	st := storage.Stats{DevicesByStatus: map[storage.DeviceStatus]int{}}
	err := s.view(ctx, "stats", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT status, count(*) FROM devices GROUP BY status`)
		if err != nil {
			return err
		}
		var status string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
			st.DevicesByStatus[storage.DeviceStatus(status)] = n
			return nil
		}); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM session_pairs`).Scan(&st.Sessions); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&st.SizeBytes)
	})
	return st, err
}
