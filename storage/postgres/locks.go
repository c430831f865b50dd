package postgres

import (
	"context"
	"hash/fnv"

	"tether/storage"
)

var _ storage.Locker = (*Store)(nil)

// TryLock implements storage.Locker with a session-level advisory lock,
// held on a connection of its own until unlock: the database gives it back
// when that connection ends, with the server that held it.
func (s *Store) TryLock(ctx context.Context, name string) (func(), bool, error) {
	h := fnv.New64a()
	h.Write([]byte("tether lock\x00" + name))
	key := int64(h.Sum64())
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, driverError("lock "+name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, driverError("lock "+name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		// A failed unlock ends the connection, which gives the lock back.
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, true, nil
}
