package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/storage"
)

var _ storage.Throttles = (*Store)(nil)

const attemptColumns = `account, address, failures, last_at, blocked_until, expires_at`

func scanAttempts(rows pgx.Rows) ([]storage.Attempts, error) {
	defer rows.Close()
	var out []storage.Attempts
	for rows.Next() {
		var a storage.Attempts
		var blocked *time.Time
		if err := rows.Scan(&a.Account, &a.Address, &a.Failures, &a.LastAt, &blocked, &a.ExpiresAt); err != nil {
			return nil, err
		}
		if blocked != nil {
			a.BlockedUntil = *blocked
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// UpdateAttempts implements storage.Throttles: the rows of keys are locked
// in key order (so two updates of overlapping keys cannot deadlock), and the
// whole update is one SERIALIZABLE transaction, so instances counting the
// same key at once are serialised.
func (s *Store) UpdateAttempts(ctx context.Context, now time.Time, keys []storage.AttemptKey, fn func([]storage.Attempts) ([]storage.Attempts, error)) error {
	accounts, addresses := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		accounts[i], addresses[i] = k.Account, k.Address
	}
	return s.update(ctx, "update login attempts", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+attemptColumns+` FROM login_attempts
			WHERE (account, address) IN (SELECT * FROM unnest($1::text[], $2::text[]))
			ORDER BY account, address FOR UPDATE`, accounts, addresses)
		if err != nil {
			return err
		}
		stored, err := scanAttempts(rows)
		if err != nil {
			return err
		}
		cur := make([]storage.Attempts, len(keys))
		for i, k := range keys {
			cur[i] = storage.Attempts{AttemptKey: k}
			for _, a := range stored {
				if a.AttemptKey == k && a.Live(now) {
					cur[i] = a
				}
			}
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if len(next) != len(keys) {
			return errors.New("throttle update returned another number of counters")
		}
		for i, k := range keys {
			a := next[i]
			if a.Failures <= 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM login_attempts WHERE account = $1 AND address = $2`, k.Account, k.Address); err != nil {
					return err
				}
				continue
			}
			var blocked *time.Time
			if !a.BlockedUntil.IsZero() {
				blocked = &a.BlockedUntil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO login_attempts (`+attemptColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (account, address) DO UPDATE SET failures = EXCLUDED.failures, last_at = EXCLUDED.last_at,
					blocked_until = EXCLUDED.blocked_until, expires_at = EXCLUDED.expires_at`,
				k.Account, k.Address, a.Failures, a.LastAt, blocked, a.ExpiresAt); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListAttempts implements storage.Throttles.
func (s *Store) ListAttempts(ctx context.Context, f storage.AttemptFilter) (storage.Page[storage.Attempts], error) {
	limit := storage.PageLimit(f.Limit)
	after, hasAfter := storage.ParseAttemptCursor(f.After)
	query := `SELECT ` + attemptColumns + ` FROM login_attempts WHERE expires_at > $1 AND failures > 0
		AND ($2 = '' OR account = $2) AND ($3 = '' OR address = $3)
		AND (NOT $4 OR (account, address) > ($5, $6))
		ORDER BY account, address LIMIT ` + strconv.Itoa(limit+1)
	var items []storage.Attempts
	err := s.read(ctx, "list login attempts", func(q querier) error {
		rows, err := q.Query(ctx, query, f.LiveAt, f.Account, f.Address, hasAfter, after.Account, after.Address)
		if err != nil {
			return err
		}
		items, err = scanAttempts(rows)
		return err
	})
	if err != nil {
		return storage.Page[storage.Attempts]{}, err
	}
	return storage.AttemptsPage(items, limit), nil
}

// ClearAttempts implements storage.Throttles.
func (s *Store) ClearAttempts(ctx context.Context, account, address string) (int, error) {
	var n int
	err := s.update(ctx, "clear login attempts", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM login_attempts WHERE ($1 = '' OR account = $1) AND ($2 = '' OR address = $2)
			AND ($1 <> '' OR $2 <> '')`, account, address)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

// PurgeAttempts implements storage.Throttles.
func (s *Store) PurgeAttempts(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.update(ctx, "purge login attempts", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM login_attempts WHERE expires_at < $1`, before)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}
