package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"tether/internal/codec"
	"tether/storage"
)

var _ storage.Outbox = (*Store)(nil)

// The outbox (storage.Outbox): under bucketOutbox, one bucket per sink
// holding two buckets, the queue and the dead letters, each keyed by an
// 8-byte big-endian Seq taken from the sink's bucket sequence; leases in
// bucketSinkLeases, keyed by sink. bbolt has one writer at a time, so Seq
// order is commit order.
var (
	bucketOutbox     = []byte("outbox")
	bucketSinkLeases = []byte("sink_leases")
	keyQueue         = []byte("queue")
	keyDead          = []byte("dead")
)

// keyEventRoutes holds the routes, in bucketMeta.
var keyEventRoutes = []byte("event_routes")

// loadRoutes reads the routes kept in the file.
func (s *Store) loadRoutes() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var routes []storage.EventRoute
		if v := tx.Bucket(bucketMeta).Get(keyEventRoutes); v != nil {
			if err := codec.Decode(v, &routes); err != nil {
				return fmt.Errorf("decode event routes: %w", err)
			}
		}
		s.routes.Store(&routes)
		return nil
	})
}

// SetEventRoutes implements storage.Outbox. The new routes are used once
// they are kept, by the time it returns.
func (s *Store) SetEventRoutes(ctx context.Context, routes []storage.EventRoute) error {
	if err := storage.ValidateRoutes(routes); err != nil {
		return err
	}
	routes = slices.Clone(routes)
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := put(tx.Bucket(bucketMeta), keyEventRoutes, routes); err != nil {
			return err
		}
		tx.OnCommit(func() { s.routes.Store(&routes) })
		return nil
	})
}

// EventRoutes implements storage.Outbox.
func (s *Store) EventRoutes(ctx context.Context) ([]storage.EventRoute, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(*s.routes.Load()), nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// sinkBuckets returns sink's queue and dead letters, creating them if create
// is set; nil buckets when they do not exist and create is not set.
func sinkBuckets(tx *bolt.Tx, sink string, create bool) (sb, queue, dead *bolt.Bucket, err error) {
	root := tx.Bucket(bucketOutbox)
	if sb = root.Bucket([]byte(sink)); sb == nil {
		if !create {
			return nil, nil, nil, nil
		}
		if sb, err = root.CreateBucket([]byte(sink)); err != nil {
			return nil, nil, nil, err
		}
		if _, err = sb.CreateBucket(keyQueue); err != nil {
			return nil, nil, nil, err
		}
		if _, err = sb.CreateBucket(keyDead); err != nil {
			return nil, nil, nil, err
		}
	}
	return sb, sb.Bucket(keyQueue), sb.Bucket(keyDead), nil
}

// enqueue appends e to the queues of the sinks whose routes take it.
func enqueue(tx *bolt.Tx, routes []storage.EventRoute, e storage.Event) error {
	for _, sink := range storage.RouteEvent(routes, e) {
		sb, queue, _, err := sinkBuckets(tx, sink, true)
		if err != nil {
			return err
		}
		seq, err := sb.NextSequence()
		if err != nil {
			return err
		}
		if err := put(queue, seqKey(seq), storage.OutboxEntry{Sink: sink, Seq: seq, Queued: e.Time, Event: e}); err != nil {
			return err
		}
	}
	return nil
}

// ReadOutbox implements storage.Outbox.
func (s *Store) ReadOutbox(ctx context.Context, sink string, limit int) ([]storage.OutboxEntry, error) {
	limit = storage.PageLimit(limit)
	var out []storage.OutboxEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, queue, _, err := sinkBuckets(tx, sink, false)
		if err != nil || queue == nil {
			return err
		}
		c := queue.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var e storage.OutboxEntry
			if err := codec.Decode(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// AckOutbox implements storage.Outbox.
func (s *Store) AckOutbox(ctx context.Context, sink string, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, queue, _, err := sinkBuckets(tx, sink, false)
		if err != nil || queue == nil {
			return err
		}
		for _, seq := range seqs {
			if err := queue.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeadLetter implements storage.Outbox.
func (s *Store) DeadLetter(ctx context.Context, sink string, seqs []uint64, at time.Time, reason string) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, queue, dead, err := sinkBuckets(tx, sink, false)
		if err != nil || queue == nil {
			return err
		}
		for _, seq := range seqs {
			k := seqKey(seq)
			v := queue.Get(k)
			if v == nil {
				continue
			}
			var d storage.DeadLetter
			if err := codec.Decode(v, &d.OutboxEntry); err != nil {
				return fmt.Errorf("decode outbox entry %d: %w", seq, err)
			}
			d.Failed, d.Reason = at, reason
			if err := put(dead, k, d); err != nil {
				return err
			}
			if err := queue.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListDeadLetters implements storage.Outbox. The cursor is the last Seq
// of the previous page, in decimal.
func (s *Store) ListDeadLetters(ctx context.Context, sink string, after string, limit int) (storage.Page[storage.DeadLetter], error) {
	var page storage.Page[storage.DeadLetter]
	var from uint64
	if after != "" {
		n, err := strconv.ParseUint(after, 10, 64)
		if err != nil {
			return page, fmt.Errorf("dead letters: cursor %q: %w", after, storage.ErrNotFound)
		}
		from = n + 1
	}
	limit = storage.PageLimit(limit)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, _, dead, err := sinkBuckets(tx, sink, false)
		if err != nil || dead == nil {
			return err
		}
		c := dead.Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			if len(page.Items) == limit {
				page.Next = strconv.FormatUint(page.Items[len(page.Items)-1].Seq, 10)
				break
			}
			var d storage.DeadLetter
			if err := codec.Decode(v, &d); err != nil {
				return fmt.Errorf("decode dead letter %x: %w", k, err)
			}
			page.Items = append(page.Items, d)
		}
		return nil
	})
	return page, err
}

// ReplayDeadLetters implements storage.Outbox.
func (s *Store) ReplayDeadLetters(ctx context.Context, sink string, seqs []uint64, at time.Time, opts ...storage.WriteOption) (int, error) {
	var n int
	err := s.write(ctx, opts, func(tx *bolt.Tx) error {
		n = 0
		sb, queue, dead, err := sinkBuckets(tx, sink, false)
		if err != nil || sb == nil {
			return err
		}
		want := seqs
		if want == nil {
			err := dead.ForEach(func(k, _ []byte) error {
				want = append(want, beUint64(k))
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, old := range want {
			v := dead.Get(seqKey(old))
			if v == nil {
				continue
			}
			var d storage.DeadLetter
			if err := codec.Decode(v, &d); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", old, err)
			}
			seq, err := sb.NextSequence()
			if err != nil {
				return err
			}
			e := d.OutboxEntry
			e.Seq, e.Queued = seq, at
			if err := put(queue, seqKey(seq), e); err != nil {
				return err
			}
			if err := dead.Delete(seqKey(old)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// OutboxStats implements storage.Outbox. It counts by walking the keys,
// which is cheap next to the sink's delivery: a backlog is read in pages.
func (s *Store) OutboxStats(ctx context.Context, sink string) (storage.OutboxStats, error) {
	var st storage.OutboxStats
	err := s.view(ctx, func(tx *bolt.Tx) error {
		_, queue, dead, err := sinkBuckets(tx, sink, false)
		if err != nil || queue == nil {
			return err
		}
		st.Pending = queue.Stats().KeyN
		st.Dead = dead.Stats().KeyN
		if _, v := queue.Cursor().First(); v != nil {
			var e storage.OutboxEntry
			if err := codec.Decode(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry: %w", err)
			}
			st.Oldest = e.Queued
		}
		return nil
	})
	return st, err
}

// clearLeases forgets every sink's lease.
func clearLeases(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketSinkLeases); err != nil {
		return err
	}
	_, err := tx.CreateBucket(bucketSinkLeases)
	return err
}

type sinkLease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// LeaseSink implements storage.Outbox.
func (s *Store) LeaseSink(ctx context.Context, sink, holder string, now, until time.Time) (bool, error) {
	var held bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		held = false
		b := tx.Bucket(bucketSinkLeases)
		if v := b.Get([]byte(sink)); v != nil {
			var l sinkLease
			if err := codec.Decode(v, &l); err != nil {
				return fmt.Errorf("decode lease of %q: %w", sink, err)
			}
			if l.Holder != holder && now.Before(l.Until) {
				return nil
			}
		}
		held = true
		return put(b, []byte(sink), sinkLease{Holder: holder, Until: until})
	})
	return held, err
}

// ReleaseSink implements storage.Outbox.
func (s *Store) ReleaseSink(ctx context.Context, sink, holder string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSinkLeases)
		v := b.Get([]byte(sink))
		if v == nil {
			return nil
		}
		var l sinkLease
		if err := codec.Decode(v, &l); err != nil {
			return fmt.Errorf("decode lease of %q: %w", sink, err)
		}
		if l.Holder != holder {
			return nil
		}
		return b.Delete([]byte(sink))
	})
}
