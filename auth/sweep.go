package auth

import (
	"context"
	"time"

	"tether/storage"
)

// What the sweeper keeps: sessions and enrollment codes for a while after
// they end, so managers can still see them; audit events for
// Config.AuditRetention.
const (
	keepEndedSessions = 7 * 24 * time.Hour
	keepDeadCodes     = 7 * 24 * time.Hour
	sweepBatch        = 500
)

// SweepReport says what one sweep removed.
type SweepReport struct {
	Sessions int
	Codes    int
	Events   int
	// OAuthCodes are authorization and device codes.
	OAuthCodes int
}

// Sweep removes sessions that ended over a week ago, enrollment codes that
// expired or were revoked over a week ago, audit events older than
// Config.AuditRetention (none when it is 0), and the login throttle's
// counters, the DPoP proofs and the OAuth codes that expired. Each kind goes in batches of
// short write transactions. It also reloads the signing keys, so an
// instance sharing its store with others signs with the key another one
// rotated in, and drops retired keys past their life.
func (s *Service) Sweep(ctx context.Context) (SweepReport, error) {
	now := s.now()
	var r SweepReport
	if err := s.keys.reload(ctx); err != nil {
		return r, err
	}
	var err error
	if r.Sessions, err = s.store.PurgeSessions(ctx, now.Add(-keepEndedSessions), sweepBatch); err != nil {
		return r, err
	}
	if r.Codes, err = s.store.PurgeEnrollmentCodes(ctx, now.Add(-keepDeadCodes), sweepBatch); err != nil {
		return r, err
	}
	if ledger, ok := s.store.(storage.ProofLedger); ok {
		if _, err = ledger.PurgeProofs(ctx, now); err != nil {
			return r, err
		}
	}
	if _, err = s.throttle.counters.PurgeAttempts(ctx, now); err != nil {
		return r, err
	}
	// OAuth codes live minutes; an hour past expiry, a code presented
	// again is answered as unknown rather than as reused.
	if r.OAuthCodes, err = s.store.PurgeOAuthGrants(ctx, now.Add(-time.Hour)); err != nil {
		return r, err
	}
	if s.cfg.AuditRetention > 0 {
		if r.Events, err = s.store.PurgeEvents(ctx, now.Add(-s.cfg.AuditRetention), sweepBatch); err != nil {
			return r, err
		}
	}
	return r, nil
}

// RunSweeper sweeps every interval until ctx is done.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	runEvery(ctx, every, func() {
		start := time.Now()
		r, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("sweep failed", "error", err)
		case r.Sessions+r.Codes+r.Events > 0:
			s.log.Info("swept", "sessions", r.Sessions, "enrollment_codes", r.Codes, "audit_events", r.Events, "took", time.Since(start))
		}
	})
}

// runEvery runs job every interval until ctx is done (a job under way
// when it is done finishes first).
func runEvery(ctx context.Context, every time.Duration, job func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		job()
	}
}
