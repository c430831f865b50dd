// Package postgres is the PostgreSQL storage backend, for sites that run
// several Tether instances on one database (and, through its wire
// protocol, CockroachDB). It behaves exactly like the embedded store: it
// passes the same conformance suite, storage/storagetest.
//
// Records are kept whole as JSON, as the embedded store keeps them; the
// columns beside them are the unique rules and the filters the queries
// use. Every write runs in a SERIALIZABLE transaction, retried when the
// database reports a serialization failure, so no write is ever a
// read-then-write race, across instances as within one. One write is
// built otherwise, for it is a refresh's and a renewal's and the hottest
// there is: UpdateSession (sessions.go) changes one session, which it
// reads locked (FOR UPDATE) or writes only if it is the version the caller
// read, so the row lock alone orders it with every other write of that
// session. It runs at READ COMMITTED (one statement at the database's
// default, a serialization failure there sending it the locked way),
// where SERIALIZABLE's bookkeeping failed a third of concurrent refreshes
// for conflicts they did not have, and takes one or two round trips
// instead of six; one that revokes other sessions too is an ordinary
// write.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tether/internal/codec"
	"tether/storage"
)

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Loader = (*Store)(nil)
)

// ErrSchemaTooNew is returned by Open for a database migrated by a newer
// Tether.
var ErrSchemaTooNew = errors.New("database schema was written by a newer version")

var errEventID = errors.New("audit event without an id")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock instances take to migrate one at a
// time ("tether" in ASCII).
const migrationLock = 0x746574686572

// Store is a storage.Store on a PostgreSQL database.
type Store struct {
	pool    *pgxpool.Pool
	observe TxObserver
	tracer  pgx.QueryTracer
	// routes are the event routes (outbox.go), never nil.
	routes atomic.Pointer[[]storage.EventRoute]
	// bundlesByID and bundlesByFamily gather session-bundle reads
	// (bundles.go); closing stop ends their readers.
	bundlesByID     *bundleReads[string]
	bundlesByFamily *bundleReads[[]byte]
	stop            chan struct{}
	closeOnce       sync.Once
}

// TxObserver is told how long each transaction took, and whether it wrote.
type TxObserver func(write bool, d time.Duration)

// Option configures Open.
type Option func(*Store)

// WithTxObserver sets a TxObserver, for metrics.
func WithTxObserver(f TxObserver) Option {
	return func(s *Store) { s.observe = f }
}

// WithQueryTracer sets a pgx tracer on every connection: it sees each
// statement, and each batch (pgx.BatchTracer) as one, for tracing and
// for tests that count round trips.
func WithQueryTracer(t pgx.QueryTracer) Option {
	return func(s *Store) { s.tracer = t }
}

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string), and brings its schema up to date.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password and all.
		return nil, errors.New("postgres: the connection URL is malformed")
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns()
	}
	s := &Store{}
	for _, opt := range opts {
		opt(s)
	}
	if s.tracer != nil {
		cfg.ConnConfig.Tracer = s.tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %v", err)
	}
	s.pool = pool
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d: %v", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.loadRoutes(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.stop = make(chan struct{})
	s.bundlesByID = newBundleReads[string](s, bundlesSQL("id", "text"), s.stop)
	s.bundlesByFamily = newBundleReads[[]byte](s, bundlesSQL("family_hash", "bytea"), s.stop)
	return s, nil
}

// defaultMaxConns is the pool's size unless the URL says (pool_max_conns):
// 16, or two per CPU where that is more. A request holds a connection only
// while it talks to the database, mostly waiting on it, so a pool of one
// per CPU (pgx's default) left the database idle while requests queued:
// on two cores, refreshes ran 26% of the embedded store's rate with 4
// connections, 29% with 8 and 33% with 16 (make bench-postgres,
// docs/performance.md). Every instance's pool counts against the
// database's max_connections (100 unless configured).
func defaultMaxConns() int32 {
	return int32(max(16, 2*runtime.NumCPU()))
}

// migrations returns the embedded migrations in order.
func migrations() ([]string, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []string
	for i, name := range names {
		if want := fmt.Sprintf("migrations/%04d_", i+1); !strings.HasPrefix(name, want) {
			return nil, fmt.Errorf("migration %s out of sequence: want %s…", name, want)
		}
		data, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, string(data))
	}
	return out, nil
}

// migrationSteps are the parts of migrations SQL cannot do, by the version
// they migrate to: each runs right after that version's SQL, in the same
// transaction.
var migrationSteps = map[int]func(ctx context.Context, tx pgx.Tx) error{
	4: fillSkeletons,
}

// fillSkeletons sets the username skeleton of every user.
func fillSkeletons(ctx context.Context, tx pgx.Tx) error {
	users, err := all[storage.User](ctx, tx, `SELECT data FROM users`)
	if err != nil {
		return err
	}
	for _, u := range users {
		if _, err := tx.Exec(ctx, `UPDATE users SET username_skeleton = $2 WHERE id = $1`, u.ID, storage.UsernameSkeleton(u.Username)); err != nil {
			return err
		}
	}
	return nil
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int {
	m, _ := migrations()
	return len(m)
}

// migrate applies the migrations the database lacks, all in one
// transaction, under an advisory lock so instances starting together
// migrate once.
func (s *Store) migrate(ctx context.Context) error {
	steps, err := migrations()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
			return err
		}
		if version > len(steps) {
			return fmt.Errorf("schema version %d, this build knows up to %d: %w", version, len(steps), ErrSchemaTooNew)
		}
		for ; version < len(steps); version++ {
			if _, err := tx.Exec(ctx, steps[version]); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %v", version, version+1, err)
			}
			if fill := migrationSteps[version+1]; fill != nil {
				if err := fill(ctx, tx); err != nil {
					return fmt.Errorf("migrate schema %d to %d: %v", version, version+1, err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version+1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrSchemaTooNew) {
		return fmt.Errorf("postgres: %v", err)
	}
	return err
}

// Pool is the connection pool, for operators' tools and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes every connection.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	s.pool.Close()
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return driverError("ping", s.pool.Ping(ctx))
}

// driverError turns a driver error into one that says what failed without
// wrapping the driver's types (the storage contract), keeping a canceled or
// expired context recognisable.
func driverError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("postgres: %s: %w", op, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("postgres: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("postgres: %s: %v", op, err)
}

// querier is what both the pool and a transaction can do.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// txError marks an error returned by a transaction's own function (a
// domain error such as a conflict or a refusal from an update function),
// so that it is passed through as it is.
type txError struct{ err error }

func (e txError) Error() string { return e.err.Error() }
func (e txError) Unwrap() error { return e.err }

const maxAttempts = 40

// update runs fn in a SERIALIZABLE transaction, and runs it again, from a
// fresh transaction, when the database could not serialize it with a
// concurrent one (fn may run more than once, as the storage contract
// allows). A nil return means committed.
func (s *Store) update(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return s.retrying(ctx, op, func() error {
		return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			return mark(fn(tx))
		})
	})
}

// mark wraps an error of Tether's own code (a domain error such as a
// conflict or a refusal from an update function) in txError, so that
// retrying passes it through as it is.
func mark(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || errors.As(err, &pgErr) || isDriver(err) {
		return err
	}
	return txError{err}
}

// retrying runs attempt, one whole transaction, until it commits, fails
// for a reason of its own, or fails otherwise than by a concurrent
// transaction getting there first; it reports the time to the observer.
func (s *Store) retrying(ctx context.Context, op string, attempt func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	defer func() {
		if s.observe != nil {
			s.observe(true, time.Since(start))
		}
	}()
	for n := 1; ; n++ {
		err := attempt()
		var te txError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &te):
			return te.err
		case retryable(err) && n < maxAttempts:
			// Back off a little, more each time, with jitter so the
			// transactions that collided do not collide again.
			backoff := time.Duration(rand.Int64N(int64(time.Millisecond)<<min(n, 5))) + 100*time.Microsecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			continue
		}
		return driverError(op, err)
	}
}

// pipelined runs a SERIALIZABLE transaction of one locked read and the
// writes that follow from it in two round trips, where update takes one
// per statement and two more to begin and commit: BEGIN and lock (a
// query of one row, with FOR UPDATE) go to the database in one batch; then
// write queues the writes, given the row lock read (nil when there was
// none), and they go with COMMIT in a second. It is for the hot writes (a
// session's refresh and renewal), whose writes need no answer from the
// database to go on. As with update, write may run more than once, and a
// nil return means committed.
func (s *Store) pipelined(ctx context.Context, op, lock string, args []any, write func(row []byte, b *pgx.Batch) error) error {
	return s.retrying(ctx, op, func() error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		// A connection left inside a transaction (a failed rollback) is
		// closed by Release, not handed on.
		defer conn.Release()
		var row []byte
		first := &pgx.Batch{}
		first.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
		first.Queue(lock, args...).QueryRow(func(r pgx.Row) error {
			if err := r.Scan(&row); !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return nil
		})
		if err := conn.SendBatch(ctx, first).Close(); err != nil {
			return rollback(conn.Conn(), err)
		}
		second := &pgx.Batch{}
		if err := write(row, second); err != nil {
			return rollback(conn.Conn(), mark(err))
		}
		second.Queue(`COMMIT`)
		if err := conn.SendBatch(ctx, second).Close(); err != nil {
			return rollback(conn.Conn(), err)
		}
		return nil
	})
}

// rollback ends the transaction open on conn, if one is, after err, and
// returns err.
func rollback(conn *pgx.Conn, err error) error {
	if conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, `ROLLBACK`)
	return err
}

// read runs fn, whose reads are one statement (one snapshot by itself), on
// the pool: one round trip, no transaction around it.
func (s *Store) read(ctx context.Context, op string, fn func(q querier) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	err := fn(s.pool)
	if s.observe != nil {
		s.observe(false, time.Since(start))
	}
	var pgErr *pgconn.PgError
	if err == nil || !(errors.As(err, &pgErr) || isDriver(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return driverError(op, err)
}

// view runs fn in a read-only transaction: one consistent snapshot, for
// reads of more than one statement.
func (s *Store) view(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return mark(fn(tx))
	})
	if s.observe != nil {
		s.observe(false, time.Since(start))
	}
	var te txError
	if errors.As(err, &te) {
		return te.err
	}
	return driverError(op, err)
}

// isDriver reports whether err came from the connection rather than from
// Tether's own code.
func isDriver(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// retryable reports whether a transaction failed only because another one
// got there first: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// write runs fn and then the write options in one transaction.
func (s *Store) write(ctx context.Context, op string, opts []storage.WriteOption, fn func(tx pgx.Tx) error) error {
	o := storage.ApplyOptions(opts)
	return s.update(ctx, op, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return s.applyOptions(ctx, tx, o)
	})
}

// applyOptions makes the extra writes a write method was asked for.
func (s *Store) applyOptions(ctx context.Context, tx pgx.Tx, o storage.WriteOptions) error {
	n := 0
	events := o.Events
	for _, r := range o.Revoke {
		revoked, err := revokeSessions(ctx, tx, r)
		if err != nil {
			return err
		}
		n += len(revoked)
		if r.Audit != nil {
			for _, sess := range revoked {
				events = append(events, r.Audit(sess))
			}
		}
	}
	if o.Revoked != nil {
		*o.Revoked = n
	}
	return s.appendEvents(ctx, tx, events)
}

// unique returns conflict if err is a unique violation of the named
// constraint, and err otherwise.
func unique(err error, constraint string, conflict *storage.ConflictError) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint {
		return conflict
	}
	return err
}

// getOne decodes the data column of the one row query returns into v, or
// returns ErrNotFound naming what was missing.
func getOne(ctx context.Context, q querier, v any, what string, query string, args ...any) error {
	var data []byte
	err := q.QueryRow(ctx, query, args...).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := codec.Decode(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// all decodes the data column of every row query returns.
func all[T any](ctx context.Context, q querier, query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out := []T{}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			rows.Close()
			return nil, err
		}
		var v T
		if err := codec.Decode(data, &v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// list returns one page of the records of table, in ID order from just
// after the cursor, that pass the SQL conditions where (on $2 onwards) and
// then match. It reads in chunks and looks one match further to tell
// whether there is a next page.
func list[T any](ctx context.Context, q querier, table, where string, args []any, after string, limit int, match func(T) bool, id func(T) string) (storage.Page[T], error) {
	return walk(ctx, q, table, where, args, after, limit, false, match, id)
}

// walk is list in either order: with backwards, from the greatest ID down,
// the cursor naming the ID to go on below.
func walk[T any](ctx context.Context, q querier, table, where string, args []any, after string, limit int, backwards bool, match func(T) bool, id func(T) string) (storage.Page[T], error) {
	limit = storage.PageLimit(limit)
	page := storage.Page[T]{Items: []T{}}
	query := func(cursor string) string {
		cond, order := "id > $1", "id"
		if backwards {
			cond, order = "id < $1", "id DESC"
			if cursor == "" {
				cond = "$1::text = ''" // from the greatest ID: no bound
			}
		}
		if where != "" {
			cond += " AND " + where
		}
		return "SELECT data FROM " + table + " WHERE " + cond + " ORDER BY " + order + " LIMIT " + strconv.Itoa(limit+1)
	}
	cursor := after
	for {
		recs, err := all[T](ctx, q, query(cursor), append([]any{cursor}, args...)...)
		if err != nil {
			return storage.Page[T]{}, err
		}
		for _, rec := range recs {
			if !match(rec) {
				continue
			}
			if len(page.Items) == limit {
				page.Next = id(page.Items[limit-1])
				return page, nil
			}
			page.Items = append(page.Items, rec)
		}
		if len(recs) < limit+1 {
			return page, nil
		}
		cursor = id(recs[len(recs)-1])
	}
}

// nextValue takes the next number of a counter, in the transaction: a
// transaction that rolls back gives its number back, as the embedded
// store's sequences do.
func nextValue(ctx context.Context, tx pgx.Tx, name string) (uint64, error) {
	var v int64
	err := tx.QueryRow(ctx, `UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value`, name).Scan(&v)
	return uint64(v), err
}

// raiseCounter moves a counter up to at least v.
func raiseCounter(ctx context.Context, tx pgx.Tx, name string, v uint64) error {
	_, err := tx.Exec(ctx, `UPDATE counters SET value = greatest(value, $2) WHERE name = $1`, name, int64(v))
	return err
}

// NewSchema makes a schema named name in the database at base and returns
// a URL whose connections use it, and a function that drops it: a
// throwaway store for tests and benchmarks.
func NewSchema(ctx context.Context, base, name string) (string, func() error, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, errors.New("postgres: the URL is malformed")
	}
	// One connection, not a pool: the pool's settings are not the
	// server's parameters.
	admin := *u
	aq := admin.Query()
	for k := range aq {
		if strings.HasPrefix(k, "pool_") {
			aq.Del(k)
		}
	}
	admin.RawQuery = aq.Encode()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, admin.String())
		if err != nil {
			return driverError("connect", err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return driverError("exec", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec("CREATE SCHEMA " + ident); err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), func() error { return exec("DROP SCHEMA " + ident + " CASCADE") }, nil
}
