package postgres

import (
	"context"
	"time"

	"tether/storage"
)

var _ storage.ProofLedger = (*Store)(nil)

// UseProof implements storage.ProofLedger: one statement, which inserts
// the proof or takes over an expired record of it, and returns a row only
// then.
func (s *Store) UseProof(ctx context.Context, key string, now, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO proofs (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE proofs.expires_at <= $3`, key, expires, now)
	if err != nil {
		return false, driverError("use proof", err)
	}
	return tag.RowsAffected() == 1, nil
}

// PurgeProofs implements storage.ProofLedger.
func (s *Store) PurgeProofs(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM proofs WHERE expires_at < $1`, before)
	if err != nil {
		return 0, driverError("purge proofs", err)
	}
	return int(tag.RowsAffected()), nil
}
