package bolt

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"tether/storage"
)

var errEventID = errors.New("audit event without an id")

// appendEvents writes events keyed by their IDs, which sort by time, with
// their Groups set from the records as they are in tx (storage.EventGroups):
// a read of the event's device, of its user, and of the user's entries in
// devices_by_assignee (one key per handset assigned to them, none decoded).
// Each is queued for its sinks (outbox.go), once: an event whose ID is
// already written is written again but not queued again.
func (s *Store) appendEvents(tx *bolt.Tx, events []storage.Event) error {
	routes := *s.routes.Load()
	for _, e := range events {
		if e.ID == "" {
			return errEventID
		}
		e, err := eventGroups(tx, e)
		if err != nil {
			return err
		}
		// Without routes (no sink configured) there is nothing to queue,
		// and no lookup to pay for.
		queue := len(routes) > 0 && tx.Bucket(bucketEvents).Get([]byte(e.ID)) == nil
		if err := putEvent(tx, e); err != nil {
			return err
		}
		if queue {
			if err := enqueue(tx, routes, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// putEvent writes e and its entries in events_by_group.
func putEvent(tx *bolt.Tx, e storage.Event) error {
	if err := indexEvent(tx, e, true); err != nil {
		return err
	}
	return put(tx.Bucket(bucketEvents), []byte(e.ID), e)
}

// LoadEvents implements storage.Loader: events as they are, their groups
// included, in one transaction.
func (s *Store) LoadEvents(ctx context.Context, events []storage.Event) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		for _, e := range events {
			if e.ID == "" {
				return errEventID
			}
			if tx.Bucket(bucketEvents).Get([]byte(e.ID)) != nil {
				return &storage.ConflictError{Entity: "event", Field: "id", Value: e.ID}
			}
			if err := putEvent(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// AppendEvents implements storage.Audit. Appends are grouped with other
// concurrent appends into one commit (bbolt's Batch): writing an event under
// its own ID twice is harmless, so the function may be retried.
func (s *Store) AppendEvents(ctx context.Context, events ...storage.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error { return s.appendEvents(tx, events) })
}

// ListEvents implements storage.Audit. A scoped list walks only the
// events of its groups (events_by_group).
func (s *Store) ListEvents(ctx context.Context, f storage.EventFilter) (storage.Page[storage.Event], error) {
	var page storage.Page[storage.Event]
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		id := func(e storage.Event) string { return e.ID }
		if f.Groups == nil {
			page, err = walk(tx.Bucket(bucketEvents), f.After, f.Limit, f.NewestFirst, f.Match, id)
			return err
		}
		page, err = listMerged(tx.Bucket(bucketEvents), groupPrefixes(tx.Bucket(bucketEventGroup), f.Groups), f.After, f.Limit, f.NewestFirst,
			func(e storage.Event) (bool, error) { return f.Match(e), nil }, id)
		return err
	})
	return page, err
}
