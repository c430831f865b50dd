package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"tether/internal/codec"
	"tether/storage"
)

// Every refresh, renewal and authenticated request reads its session
// bundle (the session, its user and its handset) with one statement. Under
// load most of that statement's cost is the round trip, not the rows: on
// two cores shared with the database, a bundle read cost the database
// about 113 µs of CPU and the server as much again. So the reads that
// arrive while others are in flight are gathered into one statement for
// all of them (docs/performance.md, "On PostgreSQL"): bundleReaders
// goroutines each take every read waiting, up to maxBundleBatch, and ask
// for them together. A read that finds none waiting is sent at once, so
// an idle server answers as fast as before; each read is still one
// snapshot of its session, user and handset.
const (
	// bundleReaders is how many such statements may be in flight at once.
	// One and two measured alike (refresh 3,603 → 4,563 and 4,634/s, the
	// same sitting); four gathered too few reads (3,877/s).
	bundleReaders = 2
	// maxBundleBatch is the most reads one statement carries.
	maxBundleBatch = 64
	// bundleBatchTimeout bounds one statement; each read also gives up
	// when its own context ends.
	bundleBatchTimeout = 30 * time.Second
)

// errStoreClosed answers a read the store was closed under.
var errStoreClosed = errors.New("postgres: the store is closed")

// bundleKey is what a bundle is read by: a session's ID or its family's
// hash.
type bundleKey interface{ string | []byte }

// bundleRow is a bundle as the database gives it, decoded by its reader.
type bundleRow struct {
	sess, user, dev []byte
	xmin            uint32
	newest          *string
}

// bundleRead is one read waiting for its statement.
type bundleRead[K bundleKey] struct {
	key   K
	row   bundleRow
	found bool
	err   error
	done  chan struct{}
}

// bundleReads gathers reads of session bundles by one kind of key.
type bundleReads[K bundleKey] struct {
	s *Store
	// query reads the bundles of the keys in $1 (an array), each row with
	// its key's 1-based position in the array.
	query string
	queue chan *bundleRead[K]
	stop  <-chan struct{}
}

// bundlesSQL reads the bundles whose sessions' column matches one of the
// keys in $1, an array of type typ.
func bundlesSQL(column, typ string) string {
	return `SELECT k.ord, s.data, s.xmin, u.data, d.data, (SELECT max(id) FROM signing_keys)
		FROM unnest($1::` + typ + `[]) WITH ORDINALITY AS k(key, ord)
		JOIN sessions s ON s.` + column + ` = k.key
		LEFT JOIN users u ON u.id = s.user_id
		LEFT JOIN devices d ON s.device_id <> '' AND d.id = s.device_id`
}

// newBundleReads starts the readers of one kind of key; they stop with
// stop.
func newBundleReads[K bundleKey](s *Store, query string, stop <-chan struct{}) *bundleReads[K] {
	r := &bundleReads[K]{s: s, query: query, queue: make(chan *bundleRead[K], 1024), stop: stop}
	for range bundleReaders {
		go r.serve()
	}
	return r
}

// get reads the bundle of key, with the other reads waiting beside it,
// into b (what names it in errors).
func (r *bundleReads[K]) get(ctx context.Context, key K, b *storage.SessionBundle, what string) error {
	if err := ctx.Err(); err != nil {
		return driverError("get session", err)
	}
	if !storable(key) {
		// No stored key holds it, and the database would refuse the
		// whole statement for it, failing every read beside it.
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	read := &bundleRead[K]{key: key, done: make(chan struct{})}
	select {
	case r.queue <- read:
	case <-ctx.Done():
		return driverError("get session", ctx.Err())
	case <-r.stop:
		return errStoreClosed
	}
	select {
	case <-read.done:
	case <-ctx.Done():
		return driverError("get session", ctx.Err())
	case <-r.stop:
		return errStoreClosed
	}
	switch {
	case read.err != nil:
		return read.err
	case !read.found:
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	return decodeBundle(b, read.row, what)
}

// storable reports whether a text key could be stored at all: PostgreSQL
// refuses NUL and invalid UTF-8 in text. (Session IDs reach here from
// tokens not yet verified.)
func storable[K bundleKey](key K) bool {
	str, ok := any(key).(string)
	return !ok || (utf8.ValidString(str) && !strings.ContainsRune(str, 0))
}

// serve sends the reads waiting, a statement at a time, until stop.
func (r *bundleReads[K]) serve() {
	batch := make([]*bundleRead[K], 0, maxBundleBatch)
	for {
		select {
		case first := <-r.queue:
			batch = append(batch[:0], first)
		case <-r.stop:
			return
		}
	more:
		for len(batch) < maxBundleBatch {
			select {
			case next := <-r.queue:
				batch = append(batch, next)
			default:
				break more
			}
		}
		r.send(batch)
	}
}

// send reads batch's bundles with one statement, and answers each read.
// Should the database refuse the statement, each read is tried on its
// own, so that what fails one read (a key it will not take) fails no
// other; a lost connection or a timeout fails them all, as it would have
// failed each.
func (r *bundleReads[K]) send(batch []*bundleRead[K]) {
	refused, err := r.fetch(batch)
	if len(batch) > 1 && refused {
		for _, read := range batch {
			read.row, read.found = bundleRow{}, false
			_, read.err = r.fetch([]*bundleRead[K]{read})
			close(read.done)
		}
		return
	}
	for _, read := range batch {
		read.err = err
		close(read.done)
	}
}

// fetch reads batch's bundles with one statement into its reads, and
// says whether the database refused the statement (rather than the
// connection or the time failing it).
func (r *bundleReads[K]) fetch(batch []*bundleRead[K]) (refused bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), bundleBatchTimeout)
	defer cancel()
	keys := make([]K, len(batch))
	for i, read := range batch {
		keys[i] = read.key
	}
	err = r.s.read(ctx, "get session", func(q querier) error {
		rows, err := q.Query(ctx, r.query, keys)
		if err != nil {
			var pgErr *pgconn.PgError
			refused = errors.As(err, &pgErr)
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ord int64
			var row bundleRow
			if err := rows.Scan(&ord, &row.sess, &row.xmin, &row.user, &row.dev, &row.newest); err != nil {
				return err
			}
			if ord < 1 || ord > int64(len(batch)) {
				return fmt.Errorf("bundle read: row for key %d of %d", ord, len(batch))
			}
			batch[ord-1].row, batch[ord-1].found = row, true
		}
		err = rows.Err()
		var pgErr *pgconn.PgError
		refused = errors.As(err, &pgErr)
		return err
	})
	if err != nil {
		for _, read := range batch {
			read.found = false
		}
	}
	return refused, err
}

// decodeBundle decodes a bundle's row into b (what names it in errors).
func decodeBundle(b *storage.SessionBundle, row bundleRow, what string) error {
	if err := codec.Decode(row.sess, &b.Session); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	// The transaction that wrote this version of the session: every
	// update writes a new version, and stamps it with its own.
	b.Revision = uint64(row.xmin)
	if row.newest != nil {
		b.NewestKey = *row.newest
	}
	if row.user != nil {
		if err := codec.Decode(row.user, &b.User); err != nil {
			return fmt.Errorf("decode user: %w", err)
		}
	}
	if row.dev != nil {
		var d storage.Device
		if err := codec.Decode(row.dev, &d); err != nil {
			return fmt.Errorf("decode device: %w", err)
		}
		b.Device = &d
	}
	return nil
}
