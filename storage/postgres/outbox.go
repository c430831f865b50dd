package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/internal/codec"
	"tether/storage"
)

var _ storage.Outbox = (*Store)(nil)

// The outbox (storage.Outbox), in the outbox and sink_leases tables
// (migrations/0008_outbox.sql). seq is one sequence for every sink.

// loadRoutes reads the routes kept in the database.
func (s *Store) loadRoutes(ctx context.Context) error {
	var routes []storage.EventRoute
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT routes FROM event_routes WHERE id = 1`).Scan(&data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("postgres: read event routes: %v", err)
	default:
		if err := codec.Decode(data, &routes); err != nil {
			return fmt.Errorf("postgres: decode event routes: %w", err)
		}
	}
	s.routes.Store(&routes)
	return nil
}

// SetEventRoutes implements storage.Outbox. Other instances on the same
// database take the new routes when they next start: every instance should
// run with the same events configuration.
func (s *Store) SetEventRoutes(ctx context.Context, routes []storage.EventRoute) error {
	if err := storage.ValidateRoutes(routes); err != nil {
		return err
	}
	routes = slices.Clone(routes)
	data, err := codec.Encode(routes)
	if err != nil {
		return err
	}
	err = s.read(ctx, "set event routes", func(q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO event_routes (id, routes) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET routes = EXCLUDED.routes`, string(data))
		return err
	})
	if err == nil {
		s.routes.Store(&routes)
	}
	return err
}

// EventRoutes implements storage.Outbox.
func (s *Store) EventRoutes(ctx context.Context) ([]storage.EventRoute, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(*s.routes.Load()), nil
}

// enqueue writes e's outbox rows, one per sink whose route takes it, in
// one statement.
func (s *Store) enqueue(ctx context.Context, tx pgx.Tx, e storage.Event, routes []storage.EventRoute) error {
	sinks := storage.RouteEvent(routes, e)
	if len(sinks) == 0 {
		return nil
	}
	data, err := codec.Encode(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO outbox (sink, queued, data) SELECT unnest($1::text[]), $2, $3`, sinks, e.Time, string(data))
	return err
}

// scanEntry reads seq, sink, queued and data.
func scanEntry(rows pgx.Rows) (storage.OutboxEntry, error) {
	var e storage.OutboxEntry
	var seq int64
	var data []byte
	if err := rows.Scan(&seq, &e.Sink, &e.Queued, &data); err != nil {
		return e, err
	}
	e.Seq = uint64(seq)
	if err := codec.Decode(data, &e.Event); err != nil {
		return e, fmt.Errorf("decode outbox entry %d: %w", seq, err)
	}
	return e, nil
}

func seqArgs(seqs []uint64) []int64 {
	out := make([]int64, len(seqs))
	for i, s := range seqs {
		out[i] = int64(s)
	}
	return out
}

// ReadOutbox implements storage.Outbox.
func (s *Store) ReadOutbox(ctx context.Context, sink string, limit int) ([]storage.OutboxEntry, error) {
	var out []storage.OutboxEntry
	err := s.read(ctx, "read outbox", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT seq, sink, queued, data FROM outbox WHERE sink = $1 AND NOT dead ORDER BY seq LIMIT $2`,
			sink, storage.PageLimit(limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// AckOutbox implements storage.Outbox.
func (s *Store) AckOutbox(ctx context.Context, sink string, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.read(ctx, "ack outbox", func(q querier) error {
		_, err := q.Exec(ctx, `DELETE FROM outbox WHERE sink = $1 AND seq = ANY($2) AND NOT dead`, sink, seqArgs(seqs))
		return err
	})
}

// DeadLetter implements storage.Outbox.
func (s *Store) DeadLetter(ctx context.Context, sink string, seqs []uint64, at time.Time, reason string) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.read(ctx, "dead letter", func(q querier) error {
		_, err := q.Exec(ctx, `UPDATE outbox SET dead = true, failed = $3, reason = $4 WHERE sink = $1 AND seq = ANY($2) AND NOT dead`,
			sink, seqArgs(seqs), at, reason)
		return err
	})
}

// ListDeadLetters implements storage.Outbox. The cursor is the last seq of
// the previous page, in decimal.
func (s *Store) ListDeadLetters(ctx context.Context, sink string, after string, limit int) (storage.Page[storage.DeadLetter], error) {
	var page storage.Page[storage.DeadLetter]
	var from int64
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			return page, fmt.Errorf("dead letters: cursor %q: %w", after, storage.ErrNotFound)
		}
		from = n
	}
	limit = storage.PageLimit(limit)
	err := s.read(ctx, "list dead letters", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT seq, sink, queued, data, failed, reason FROM outbox
			WHERE sink = $1 AND dead AND seq > $2 ORDER BY seq LIMIT $3`, sink, from, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d storage.DeadLetter
			var seq int64
			var data []byte
			if err := rows.Scan(&seq, &d.Sink, &d.Queued, &data, &d.Failed, &d.Reason); err != nil {
				return err
			}
			d.Seq = uint64(seq)
			if err := codec.Decode(data, &d.Event); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", seq, err)
			}
			page.Items = append(page.Items, d)
		}
		return rows.Err()
	})
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.Next = strconv.FormatUint(page.Items[limit-1].Seq, 10)
	}
	return page, err
}

// ReplayDeadLetters implements storage.Outbox: the rows come back to the
// queue with new seqs, in the order they had.
func (s *Store) ReplayDeadLetters(ctx context.Context, sink string, seqs []uint64, at time.Time, opts ...storage.WriteOption) (int, error) {
	var n int
	err := s.write(ctx, "replay dead letters", opts, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbox o SET seq = r.seq, dead = false, failed = NULL, reason = NULL, queued = $3
			FROM (SELECT seq AS old, nextval('outbox_seq_seq') AS seq FROM (
				SELECT seq FROM outbox WHERE sink = $1 AND dead AND ($2::bigint[] IS NULL OR seq = ANY($2)) ORDER BY seq FOR UPDATE) d) r
			WHERE o.seq = r.old`, sink, nilSeqs(seqs), at)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

func nilSeqs(seqs []uint64) []int64 {
	if seqs == nil {
		return nil
	}
	return seqArgs(seqs)
}

// OutboxStats implements storage.Outbox.
func (s *Store) OutboxStats(ctx context.Context, sink string) (storage.OutboxStats, error) {
	var st storage.OutboxStats
	err := s.read(ctx, "outbox stats", func(q querier) error {
		var oldest *time.Time
		err := q.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT dead), min(queued) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead)
			FROM outbox WHERE sink = $1`, sink).Scan(&st.Pending, &oldest, &st.Dead)
		if oldest != nil {
			st.Oldest = *oldest
		}
		return err
	})
	return st, err
}

// LeaseSink implements storage.Outbox, in one statement: the row is taken
// when there is none, when holder has it, or when its lease ended by now.
func (s *Store) LeaseSink(ctx context.Context, sink, holder string, now, until time.Time) (bool, error) {
	var held bool
	err := s.read(ctx, "lease sink", func(q querier) error {
		tag, err := q.Exec(ctx, `INSERT INTO sink_leases (sink, holder, until) VALUES ($1, $2, $4)
			ON CONFLICT (sink) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
			WHERE sink_leases.holder = EXCLUDED.holder OR sink_leases.until <= $3`, sink, holder, now, until)
		held = tag.RowsAffected() == 1
		return err
	})
	return held, err
}

// ReleaseSink implements storage.Outbox.
func (s *Store) ReleaseSink(ctx context.Context, sink, holder string) error {
	return s.read(ctx, "release sink", func(q querier) error {
		_, err := q.Exec(ctx, `DELETE FROM sink_leases WHERE sink = $1 AND holder = $2`, sink, holder)
		return err
	})
}
