package postgres_test

import (
	"context"
	"crypto/rand"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
)

// trips counts round trips: each statement sent on its own, and each
// batch (whose statements travel together) as one.
type trips struct{ n atomic.Int64 }

func (c *trips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if ctx.Value(inBatch{}) == nil {
		c.n.Add(1)
	}
	return ctx
}
func (c *trips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *trips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return context.WithValue(ctx, inBatch{}, true)
}
func (c *trips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *trips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

type inBatch struct{}

// TestSessionUpdateRoundTrips: a refresh's or a renewal's write is one
// round trip when the session is as the caller read it, and the locked
// path (two: the locked read, then the writes and the commit) otherwise,
// with its event in either. The statements are warmed up first: pgx
// prepares each new statement once per connection.
func TestSessionUpdateRoundTrips(t *testing.T) {
	ctx := context.Background()
	var count trips
	s, err := postgres.Open(ctx, pgtest.Schema(t)+"&pool_max_conns=1", postgres.WithQueryTracer(&count))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	dev := storage.Device{ID: storage.NewID(storage.PrefixDevice), IMEI: "490154203237518", Status: storage.DeviceEnrolled, Group: "north", EnrolledAt: now, UpdatedAt: now}
	if err := s.CreateDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	hash := func() []byte { b := make([]byte, 32); rand.Read(b); return b }
	sess, err := s.CreateSession(ctx, storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: "usr_x", DeviceID: dev.ID,
		CreatedAt: now, LastUsedAt: now, IdleTimeout: time.Hour, ExpiresAt: now.Add(time.Hour), FamilyHash: hash(), RefreshHash: hash()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	touch := func(x storage.Session) (storage.Session, error) {
		x.RefreshHash, x.LastUsedAt = hash(), x.LastUsedAt.Add(time.Second)
		return x, nil
	}
	event := func() storage.WriteOption {
		return storage.WithEvents(storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "refresh", Outcome: "success", SessionID: sess.ID, DeviceID: dev.ID})
	}
	update := func(opts ...storage.WriteOption) int64 {
		t.Helper()
		before := count.n.Load()
		if _, err := s.UpdateSession(ctx, sess.ID, touch, append(opts, event())...); err != nil {
			t.Fatal(err)
		}
		return count.n.Load() - before
	}
	read := func() storage.SessionBundle {
		t.Helper()
		b, err := s.GetSessionBundle(ctx, sess.ID)
		if err != nil || b.Revision == 0 {
			t.Fatalf("bundle: revision %d, %v", b.Revision, err)
		}
		return b
	}
	for range 2 { // prepare the statements
		update(storage.Unchanged(read()))
		update()
	}
	if n := update(storage.Unchanged(read())); n != 1 {
		t.Errorf("update of the session as read: %d round trips; want 1", n)
	}
	if n := update(); n != 2 {
		t.Errorf("update without a read: %d round trips; want 2", n)
	}
	stale := read()
	update()
	if n := update(storage.Unchanged(stale)); n != 3 {
		t.Errorf("update from a stale read: %d round trips; want 3 (the refused one, then the locked path)", n)
	}
	events, err := s.ListEvents(ctx, storage.EventFilter{Action: "refresh"})
	if err != nil || len(events.Items) != 8 {
		t.Fatalf("events: %d, %v; want one per update, 8", len(events.Items), err)
	}
}

// TestPoolSize: the pool holds 16 connections (or two per CPU) unless the
// URL says otherwise.
func TestPoolSize(t *testing.T) {
	url := pgtest.Schema(t)
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Pool().Config().MaxConns, int32(max(16, 2*runtime.NumCPU())); got != want {
		t.Errorf("default pool: %d connections; want %d", got, want)
	}
	s2, err := postgres.Open(context.Background(), url+"&pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Pool().Config().MaxConns; got != 3 {
		t.Errorf("pool_max_conns=3: %d connections", got)
	}
}

// TestSessionUpdatesInPlace: a session used again and again is updated in
// place (HOT), leaving its five indexes alone: what changes at each use
// is no indexed column (ended_at holds the hour the session ends by), and
// the table leaves room on its pages for the new version.
func TestSessionUpdatesInPlace(t *testing.T) {
	ctx := context.Background()
	// One connection: the statistics it flushes are all there are.
	s, err := postgres.Open(ctx, pgtest.Schema(t)+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Mid-hour, so the uses below stay within one.
	now := time.Now().UTC().Truncate(time.Hour).Add(20 * time.Minute)
	hash := func() []byte { b := make([]byte, 32); rand.Read(b); return b }
	var ids []string
	for range 20 {
		sess, err := s.CreateSession(ctx, storage.Session{ID: storage.NewID(storage.PrefixSession), UserID: storage.NewID(storage.PrefixUser), DeviceID: "",
			CreatedAt: now, LastUsedAt: now, IdleTimeout: 24 * time.Hour, ExpiresAt: now.Add(90 * 24 * time.Hour), FamilyHash: hash(), RefreshHash: hash()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID)
	}
	const uses = 10
	for i := range uses {
		for _, id := range ids {
			if _, err := s.UpdateSession(ctx, id, func(x storage.Session) (storage.Session, error) {
				x.RefreshHash, x.LastUsedAt = hash(), now.Add(time.Duration(i+1)*time.Second)
				return x, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var updates, hot int64
	if _, err := s.Pool().Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Skipf("this PostgreSQL cannot flush its statistics on demand: %v", err)
	}
	if err := s.Pool().QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
		WHERE relid = 'sessions'::regclass`).Scan(&updates, &hot); err != nil {
		t.Fatal(err)
	}
	if updates != int64(len(ids)*uses) || hot < updates*9/10 {
		t.Fatalf("%d of %d updates of sessions in place; want at least nine in ten", hot, updates)
	}
}
