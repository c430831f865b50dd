package storage

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The outbox: audit events waiting to be pushed to sinks (webhooks, syslog,
// files; see package events). A store writes, for every audit event it
// appends, one outbox entry per sink whose EventRoute matches it, in the
// same transaction as the event, and so as the change the event describes:
// an event that committed is never lost to its sinks, and one that was
// rolled back is never sent. The routes are kept in the store itself
// (SetEventRoutes), so that every process writing to it, a command run on
// the host as well as the server, queues the same events.
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

// EventRoute sends the audit events it matches to a sink. Empty fields
// match every event.
type EventRoute struct {
	Sink string `json:"sink"`
	// Actions are event actions, each matched exactly or, ending in ".*",
	// as a prefix: "device.*" matches "device.register".
	Actions []string `json:"actions,omitempty"`
	// Outcomes are "success" or "failure".
	Outcomes []string `json:"outcomes,omitempty"`
	// Groups keeps the events in that scope (EventInScope): an event about
	// nothing in a group matches no route with Groups.
	Groups []string `json:"groups,omitempty"`
}

// Match reports whether the route takes e, its Groups set.
func (r EventRoute) Match(e Event) bool {
	if len(r.Outcomes) > 0 && !slices.Contains(r.Outcomes, e.Outcome) {
		return false
	}
	if len(r.Groups) > 0 && !MeetsGroups(e.Groups, r.Groups) {
		return false
	}
	if len(r.Actions) == 0 {
		return true
	}
	for _, a := range r.Actions {
		if a == e.Action || strings.HasSuffix(a, ".*") && strings.HasPrefix(e.Action, a[:len(a)-1]) {
			return true
		}
	}
	return false
}

// ValidateRoutes reports what is wrong with routes: a sink name that cannot be
// (ValidSinkName), or named twice.
func ValidateRoutes(routes []EventRoute) error {
	seen := make(map[string]bool, len(routes))
	for _, r := range routes {
		if !ValidSinkName(r.Sink) {
			return fmt.Errorf("event routes: sink name %q: want 1 to 63 of a-z, 0-9, '-' and '_'", r.Sink)
		}
		if seen[r.Sink] {
			return fmt.Errorf("event routes: sink %q named twice", r.Sink)
		}
		seen[r.Sink] = true
	}
	return nil
}

// RouteEvent returns the sinks of routes that take e.
func RouteEvent(routes []EventRoute, e Event) []string {
	var sinks []string
	for _, r := range routes {
		if r.Match(e) {
			sinks = append(sinks, r.Sink)
		}
	}
	return sinks
}

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
	// SetEventRoutes replaces the routes by which the store queues the
	// events it appends from now on (ValidateRoutes must pass), and keeps
	// them for every process that opens the store later. The queues of
	// sinks no longer routed to stay as they are.
	SetEventRoutes(ctx context.Context, routes []EventRoute) error
	// EventRoutes returns the routes the store queues by.
	EventRoutes(ctx context.Context) ([]EventRoute, error)
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
	ReplayDeadLetters(ctx context.Context, sink string, seqs []uint64, at time.Time, opts ...WriteOption) (int, error)
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
