package storage

import (
	"context"
	"regexp"
	"time"
)

// The outbox: audit events waiting to be pushed to sinks (webhooks, syslog,
// files; see package events). A store opened with an EventRouter writes,
// for every audit event it appends, one outbox entry per sink the router
// names, in the same transaction as the event, and so as the change the
// event describes: an event that committed is never lost to its sinks, and
// one that was rolled back is never sent.
//
// Each sink's entries form a queue in the order they were written (Seq).
// A deliverer reads the head of the queue, pushes it, and acknowledges what
// was delivered, which removes it; what cannot be delivered is moved to the
// sink's dead letters, from which a manager may replay it to the tail of
// the queue. Several instances sharing one database take turns through a
// lease on each sink (LeaseSink), so that one of them delivers a sink at a
// time, in order.
//
// Order: entries of one sink are read in Seq order. On the embedded store
// that is commit order. On PostgreSQL, Seq is taken when the row is written
// and transactions may commit out of that order; events of one session are
// still written in order, since every write to a session holds its row
// lock until it commits.

// EventRouter names the sinks an audit event goes to, given the event with
// its Groups set; nil for none. It must be fast and free of side effects:
// backends call it inside their write transactions, and may call it again
// when a transaction is retried.
type EventRouter func(Event) []string

// OutboxEntry is one audit event waiting for one sink.
type OutboxEntry struct {
	Sink string `json:"sink"`
	// Seq orders a sink's entries; it is unique within the sink, and a
	// replayed dead letter gets a new one.
	Seq uint64 `json:"seq"`
	// Queued is when the entry was written (or replayed).
	Queued time.Time `json:"queued"`
	Event  Event     `json:"event"`
}

// DeadLetter is an outbox entry that could not be delivered.
type DeadLetter struct {
	OutboxEntry
	// Failed is when it was given up; Reason why, such as the receiver's
	// last answer.
	Failed time.Time `json:"failed"`
	Reason string    `json:"reason"`
}

// OutboxStats describes a sink's queue.
type OutboxStats struct {
	// Pending counts the entries waiting; Oldest is when the oldest of them
	// was queued (zero when none is).
	Pending int
	Oldest  time.Time
	// Dead counts the dead letters.
	Dead int
}

// Outbox holds what the sinks have yet to receive.
type Outbox interface {
	// ReadOutbox returns up to limit (see PageLimit) of the oldest entries
	// waiting for sink, in Seq order. It does not remove them.
	ReadOutbox(ctx context.Context, sink string, limit int) ([]OutboxEntry, error)
	// AckOutbox removes the entries of sink with the given Seqs, which were
	// delivered. Seqs no longer there are ignored.
	AckOutbox(ctx context.Context, sink string, seqs []uint64) error
	// DeadLetter moves the entries of sink with the given Seqs to its dead
	// letters, with when and why, in one transaction. Seqs no longer waiting
	// are ignored.
	DeadLetter(ctx context.Context, sink string, seqs []uint64, at time.Time, reason string) error
	// ListDeadLetters pages through sink's dead letters, oldest first;
	// after is the cursor from the previous page.
	ListDeadLetters(ctx context.Context, sink string, after string, limit int) (Page[DeadLetter], error)
	// ReplayDeadLetters moves the dead letters of sink with the given Seqs
	// (all of them when seqs is nil) back to the tail of its queue, queued
	// at, and returns how many it moved.
	ReplayDeadLetters(ctx context.Context, sink string, seqs []uint64, at time.Time) (int, error)
	// OutboxStats describes sink's queue and dead letters.
	OutboxStats(ctx context.Context, sink string) (OutboxStats, error)
	// LeaseSink gives holder the right to deliver sink until until, if no
	// one else holds it at now or holder already does (then it is renewed).
	// It reports whether holder holds it.
	LeaseSink(ctx context.Context, sink, holder string, now, until time.Time) (bool, error)
	// ReleaseSink gives up holder's lease of sink, if it holds it.
	ReleaseSink(ctx context.Context, sink, holder string) error
}

var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidSinkName reports whether name can name a sink: 1 to 63 lowercase
// letters, digits, '-' and '_', starting with a letter or digit.
func ValidSinkName(name string) bool { return sinkName.MatchString(name) }
