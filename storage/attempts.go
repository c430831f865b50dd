package storage

import (
	"context"
	"encoding/base64"
	"strings"
	"time"
)

// AttemptKey names one counter of the login throttle: an account (Address
// empty), a client address (Account empty), or an account from one address
// (both set). Account is the account's name as the throttle keys it, which
// need not be a user's: unknown names are counted like known ones.
type AttemptKey struct {
	Account string `json:"account,omitempty"`
	Address string `json:"address,omitempty"`
}

// Attempts is one counter of the login throttle. What the numbers mean is
// auth's business; a store keeps them and forgets them after ExpiresAt.
type Attempts struct {
	AttemptKey
	// Failures counts the failed attempts, and the attempts under way.
	Failures int `json:"failures"`
	// LastAt is when the latest attempt was counted.
	LastAt time.Time `json:"lastAt"`
	// BlockedUntil is when the next attempt may be made; zero or past when
	// it may be made now.
	BlockedUntil time.Time `json:"blockedUntil,omitzero"`
	// ExpiresAt is when the counter is forgotten.
	ExpiresAt time.Time `json:"expiresAt"`
}

// Live reports whether the counter is still kept at t.
func (a Attempts) Live(t time.Time) bool { return a.Failures > 0 && t.Before(a.ExpiresAt) }

// AttemptFilter selects throttle counters for ListAttempts.
type AttemptFilter struct {
	// Account, when set, keeps the account's counters: its own and its
	// counters per address.
	Account string
	// Address, when set, keeps the address's counters: its own and its
	// counters per account.
	Address string
	// LiveAt keeps the counters still kept at that time.
	LiveAt time.Time
	// After is the cursor from the previous page (AttemptCursor); Limit the
	// page size (see PageLimit).
	After string
	Limit int
}

// Match reports whether a passes the filter's Account, Address and LiveAt.
func (f AttemptFilter) Match(a Attempts) bool {
	switch {
	case f.Account != "" && a.Account != f.Account:
		return false
	case f.Address != "" && a.Address != f.Address:
		return false
	}
	return a.Live(f.LiveAt)
}

// Less orders counters by account, then address: the order of a list.
func (k AttemptKey) Less(o AttemptKey) bool {
	if k.Account != o.Account {
		return k.Account < o.Account
	}
	return k.Address < o.Address
}

// AttemptCursor is the cursor of the page that follows the counter of k.
// Keys may hold any text, so the cursor is encoded to travel in a URL.
func AttemptCursor(k AttemptKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k.Account + "\x00" + k.Address))
}

// ParseAttemptCursor reads a cursor made by AttemptCursor; a malformed one
// reads as the start.
func ParseAttemptCursor(cursor string) (AttemptKey, bool) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return AttemptKey{}, false
	}
	account, address, ok := strings.Cut(string(b), "\x00")
	return AttemptKey{Account: account, Address: address}, ok
}

// AttemptsPage makes a page of counters from up to limit+1 of them, in
// list order: the one past the limit only says that a next page exists.
func AttemptsPage(items []Attempts, limit int) Page[Attempts] {
	page := Page[Attempts]{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.Next = AttemptCursor(items[limit-1].AttemptKey)
	}
	if page.Items == nil {
		page.Items = []Attempts{}
	}
	return page
}

// Throttles keeps the login throttle's counters. A store shared by several
// servers implements it, so each limit holds for all of them together, not
// once per server; a single server may keep the counters in its memory.
type Throttles interface {
	// UpdateAttempts reads the counters of keys (a counter not kept, or
	// expired at now, reads as zero with its key set), calls fn with them in
	// the order of keys, and stores what fn returns in the same order,
	// atomically with respect to every other UpdateAttempts of any of the
	// same keys. A counter returned with no failures is forgotten. fn may
	// be called more than once and must have no side effects; if it returns
	// an error nothing is written and UpdateAttempts returns that error.
	UpdateAttempts(ctx context.Context, now time.Time, keys []AttemptKey, fn func([]Attempts) ([]Attempts, error)) error
	// ListAttempts returns one page of the counters matching f, ordered by
	// account, then address.
	ListAttempts(ctx context.Context, f AttemptFilter) (Page[Attempts], error)
	// ClearAttempts forgets counters and returns how many: an account's (its
	// own and per address) when only account is set, an address's (its own
	// and per account) when only address is, the one of the pair when both
	// are.
	ClearAttempts(ctx context.Context, account, address string) (int, error)
	// PurgeAttempts forgets the counters that expired before t.
	PurgeAttempts(ctx context.Context, before time.Time) (int, error)
}
