package bolt

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"tether/storage"
)

var errEventID = errors.New("audit event without an id")

// appendEvents writes events keyed by their IDs, which sort by time.
func appendEvents(tx *bolt.Tx, events []storage.Event) error {
	if len(events) == 0 {
		return nil
	}
	b := tx.Bucket(bucketEvents)
	for _, e := range events {
		if e.ID == "" {
			return errEventID
		}
		if err := put(b, []byte(e.ID), e); err != nil {
			return err
		}
	}
	return nil
}

// AppendEvents implements storage.Audit. Appends are grouped with other
// concurrent appends into one commit (bbolt's Batch): writing an event under
// its own ID twice is harmless, so the function may be retried.
func (s *Store) AppendEvents(ctx context.Context, events ...storage.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error { return appendEvents(tx, events) })
}

// ListEvents implements storage.Audit.
func (s *Store) ListEvents(ctx context.Context, f storage.EventFilter) (storage.Page[storage.Event], error) {
	var page storage.Page[storage.Event]
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		page, err = walk(tx.Bucket(bucketEvents), f.After, f.Limit, f.NewestFirst, f.Match,
			func(e storage.Event) string { return e.ID })
		return err
	})
	return page, err
}
