package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"tether"
	"tether/storage"
)

// The login throttle (docs/security.md, "Password guessing").
//
// Failed passwords are counted three ways: for an account from one client
// address, for an account from every address together, and for an address
// over every account. Each counter lets a number of failures through
// freely; after that each further attempt waits, twice as long after each
// failure (1 s, 2 s, 4 s, ...) up to Config.FailureWindow. A counter is
// forgotten once it has been quiet for a FailureWindow past its wait.
//
// An attempt is counted before its password is hashed, atomically with the
// check that no counter blocks it (a reservation), so guesses fired at once
// cannot all slip through before the first failure is counted. A right
// password then takes its count back; an attempt that never reached the
// hash (the queue was full, the client went away) too.
//
// The owner cannot be locked out by others: the counter per account from
// all addresses, the only one strangers can drive up together, does not
// block a login from a handset the account is assigned to (proven by the
// handset's key where it has one), and the counter per account from one
// address blocks only that address.
type throttle struct {
	counters storage.Throttles
	// Failures let through freely, per kind of counter; 0 or less turns a
	// kind off.
	pair, account, address int
	// longest is the longest wait, and how long a counter is kept quiet
	// past its wait.
	longest time.Duration
	now     func() time.Time
}

// firstDelay is the wait after the free failures; each failure doubles it.
const firstDelay = time.Second

// delay is the wait after n failures of a counter that lets free through.
func (t *throttle) delay(n, free int) time.Duration {
	if free <= 0 || n < free {
		return 0
	}
	if shift := n - free; shift < 30 {
		return min(firstDelay<<shift, t.longest)
	}
	return t.longest
}

// attempt is an attempt counted by reserve: its counters and what each
// lets through.
type attempt struct {
	keys []storage.AttemptKey
	free []int
	// checked says which counters may block the attempt; the others only
	// count it.
	checked []bool
	// pair is the index of the counter per account from this address, or
	// -1.
	pair int
	// at is when the attempt was counted, and prevLast each counter's
	// LastAt before it: taking the attempt back restores the wait the
	// counter had, rather than one that starts at the attempt.
	at       time.Time
	prevLast []time.Time
}

// reserve counts an attempt at account from address on every counter that
// is on, unless one that applies blocks it: then nothing is counted and the
// error is ErrTooManyAttempts with the longest wait. With ownHandset the
// counter of the account from all addresses counts the attempt but does
// not block it. An empty account counts the address alone.
func (t *throttle) reserve(ctx context.Context, account, address string, ownHandset bool) (*attempt, error) {
	a := &attempt{pair: -1}
	add := func(k storage.AttemptKey, free int, checked bool) {
		if free <= 0 {
			return
		}
		a.keys, a.free, a.checked = append(a.keys, k), append(a.free, free), append(a.checked, checked)
	}
	if account != "" {
		if t.pair > 0 {
			a.pair = len(a.keys)
		}
		add(storage.AttemptKey{Account: account, Address: address}, t.pair, true)
		add(storage.AttemptKey{Account: account}, t.account, !ownHandset)
	}
	add(storage.AttemptKey{Address: address}, t.address, true)
	if len(a.keys) == 0 {
		return a, nil
	}
	now := t.now()
	err := t.counters.UpdateAttempts(ctx, now, a.keys, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		var wait time.Duration
		for i, c := range cur {
			if a.checked[i] && now.Before(c.BlockedUntil) {
				wait = max(wait, c.BlockedUntil.Sub(now))
			}
		}
		if wait > 0 {
			return nil, ErrTooManyAttempts.After(wait)
		}
		a.at, a.prevLast = now, make([]time.Time, len(cur))
		for i := range cur {
			a.prevLast[i] = cur[i].LastAt
			cur[i].Failures++
			cur[i].LastAt = now
			t.settle(&cur[i], a.free[i])
		}
		return cur, nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// settle sets a counter's wait and expiry from its failures.
func (t *throttle) settle(c *storage.Attempts, free int) {
	c.BlockedUntil = time.Time{}
	end := c.LastAt
	if d := t.delay(c.Failures, free); d > 0 {
		c.BlockedUntil = c.LastAt.Add(d)
		end = c.BlockedUntil
	}
	c.ExpiresAt = end.Add(t.longest)
}

// succeeded takes back an attempt whose password was right: the account's
// failures from its address are forgotten, and the attempt is no failure
// on the other counters.
func (t *throttle) succeeded(ctx context.Context, a *attempt) error {
	return t.takeBack(ctx, a, true)
}

// abandoned takes back an attempt that never had its password checked.
func (t *throttle) abandoned(ctx context.Context, a *attempt) error {
	return t.takeBack(ctx, a, false)
}

func (t *throttle) takeBack(ctx context.Context, a *attempt, forgetPair bool) error {
	if a == nil || len(a.keys) == 0 {
		return nil
	}
	return t.counters.UpdateAttempts(ctx, t.now(), a.keys, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		for i := range cur {
			switch {
			case forgetPair && i == a.pair:
				cur[i].Failures = 0
			case cur[i].Failures > 0:
				cur[i].Failures--
				// Unless another attempt came since, the counter is as it
				// was before this one: its wait does not start again now.
				// (A right password of an account with a second factor is
				// taken back this way; the code that follows must not wait
				// for a block the password itself re-armed.)
				if cur[i].LastAt.Equal(a.at) && i < len(a.prevLast) && !a.prevLast[i].IsZero() {
					cur[i].LastAt = a.prevLast[i]
				}
				t.settle(&cur[i], a.free[i])
			}
		}
		return cur, nil
	})
}

// throttleName is the name an account is counted under: the form in which
// usernames are unique, or, for a name no account can have, the name made
// printable (it is shown to managers and stored), so that unknown names are
// counted like known ones.
func throttleName(username string) string {
	if k, err := precis.UsernameCaseMapped.String(username); err == nil {
		return truncate(k, 256)
	}
	return printableName(username)
}

// printableName is a name as a client sent it, safe to store and show: at
// most 64 bytes, invalid UTF-8 and control characters (NUL among them)
// replaced by U+FFFD.
func printableName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	for len(s) > 64 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// LockoutsFor is Lockouts as by sees them. The counters are kept by the
// name typed at sign-in, which may be no account's, and by address: they
// belong to no group, and a scoped manager sees none.
func (s *Service) LockoutsFor(ctx context.Context, by Principal, f storage.AttemptFilter) (storage.Page[storage.Attempts], error) {
	if by.Scoped() {
		return storage.Page[storage.Attempts]{Items: []storage.Attempts{}}, nil
	}
	return s.Lockouts(ctx, f)
}

// Lockouts returns one page of the throttle's counters, for managers to see
// who is being held back and from where (what a principal sees is
// LockoutsFor).
func (s *Service) Lockouts(ctx context.Context, f storage.AttemptFilter) (storage.Page[storage.Attempts], error) {
	if f.Account != "" {
		f.Account = throttleName(f.Account)
	}
	f.LiveAt = s.now()
	return s.throttle.counters.ListAttempts(ctx, f)
}

// ClearLockout forgets an account's failed logins (its own counter and
// those per address), an address's, or those of an account from one
// address, on a manager's word, and returns how many counters went. A
// scoped manager clears only the counters of a worker in their scope, who
// must be named (an account of no one in scope is not found).
func (s *Service) ClearLockout(ctx context.Context, by Principal, account, address string) (int, error) {
	if err := by.Require(storage.RoleManager, storage.RoleAdmin); err != nil {
		return 0, err
	}
	if account == "" && address == "" {
		return 0, tether.Invalid("account", "account_required", "name an account, an address, or both")
	}
	var userID string
	if by.Scoped() {
		if account == "" {
			return 0, tether.Invalid("account", "account_required", "name the worker whose failed sign-ins to forget")
		}
		u, err := s.store.GetUserByUsername(ctx, account)
		if err != nil {
			return 0, err
		}
		if _, err := userInScope(ctx, s.store, by, u.ID); err != nil {
			return 0, err
		}
		userID = u.ID
	}
	if account != "" {
		account = throttleName(account)
	}
	n, err := s.throttle.counters.ClearAttempts(ctx, account, address)
	if err != nil {
		return 0, err
	}
	ev := s.event(ctx, "throttle.clear", "success")
	by.Stamp(&ev)
	ev.Username, ev.UserID = account, userID
	ev.Detail = map[string]string{"counters": fmt.Sprint(n)}
	if address != "" {
		ev.Detail["address"] = address
	}
	s.record(ctx, ev)
	return n, nil
}

// memoryThrottles keeps the throttle's counters in memory, for a server
// whose store is its own (the embedded one). It holds at most max
// counters: when full it forgets the expired ones, then the ones not
// holding anyone back, then, if it must, an arbitrary tenth.
type memoryThrottles struct {
	mu       sync.Mutex
	counters map[storage.AttemptKey]storage.Attempts
	max      int
}

var _ storage.Throttles = (*memoryThrottles)(nil)

// NewMemoryThrottles returns counters kept in memory, at most max of them.
func NewMemoryThrottles(max int) storage.Throttles {
	return &memoryThrottles{counters: make(map[storage.AttemptKey]storage.Attempts), max: max}
}

func (m *memoryThrottles) UpdateAttempts(ctx context.Context, now time.Time, keys []storage.AttemptKey, fn func([]storage.Attempts) ([]storage.Attempts, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := make([]storage.Attempts, len(keys))
	for i, k := range keys {
		if c, ok := m.counters[k]; ok && c.Live(now) {
			cur[i] = c
		} else {
			cur[i] = storage.Attempts{AttemptKey: k}
		}
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	if len(next) != len(keys) {
		return errors.New("throttle update returned another number of counters")
	}
	for i, k := range keys {
		c := next[i]
		c.AttemptKey = k
		if c.Failures <= 0 {
			delete(m.counters, k)
			continue
		}
		if _, ok := m.counters[k]; !ok && len(m.counters) >= m.max {
			m.evict(now)
		}
		m.counters[k] = c
	}
	return nil
}

func (m *memoryThrottles) evict(now time.Time) {
	for k, c := range m.counters {
		if !c.Live(now) {
			delete(m.counters, k)
		}
	}
	for k, c := range m.counters {
		if len(m.counters) < m.max-m.max/10 {
			return
		}
		if !now.Before(c.BlockedUntil) {
			delete(m.counters, k)
		}
	}
	for k := range m.counters {
		if len(m.counters) < m.max-m.max/10 {
			return
		}
		delete(m.counters, k)
	}
}

func (m *memoryThrottles) ListAttempts(ctx context.Context, f storage.AttemptFilter) (storage.Page[storage.Attempts], error) {
	if err := ctx.Err(); err != nil {
		return storage.Page[storage.Attempts]{}, err
	}
	after, hasAfter := storage.ParseAttemptCursor(f.After)
	m.mu.Lock()
	var all []storage.Attempts
	for k, c := range m.counters {
		if f.Match(c) && (!hasAfter || after.Less(k)) {
			all = append(all, c)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b storage.Attempts) int {
		switch {
		case a.AttemptKey.Less(b.AttemptKey):
			return -1
		case b.AttemptKey.Less(a.AttemptKey):
			return 1
		}
		return 0
	})
	limit := storage.PageLimit(f.Limit)
	return storage.AttemptsPage(all[:min(len(all), limit+1)], limit), nil
}

func (m *memoryThrottles) ClearAttempts(ctx context.Context, account, address string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if account == "" && address == "" {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.counters {
		if (account == "" || k.Account == account) && (address == "" || k.Address == address) {
			delete(m.counters, k)
			n++
		}
	}
	return n, nil
}

func (m *memoryThrottles) PurgeAttempts(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, c := range m.counters {
		if c.ExpiresAt.Before(before) {
			delete(m.counters, k)
			n++
		}
	}
	return n, nil
}

// hashGate bounds how many password hashes run at once (each takes tens of
// MiB) and how many wait, so a flood of logins cannot exhaust memory; and
// it sheds load: a password check whose expected wait for a turn is over
// maxWait is refused at once (ErrServerBusy, with the wait as Retry-After)
// rather than queued behind seconds of hashing. The expected wait is the
// checks ahead of it, times the mean time of one (measured: a moving
// average of the last ones), over the checks that run at once. Throughput
// stays the machine's hashing capacity: the running slots never idle
// while checks wait.
type hashGate struct {
	run     chan struct{}
	wait    chan struct{}
	maxWait time.Duration
	// mean is the moving average of a check's time, in nanoseconds; 0
	// until one has been measured.
	mean atomic.Int64
}

// defaultMaxWait is how long a password check may expect to wait for its
// turn before it is shed: about a second of hashing.
const defaultMaxWait = time.Second

func newHashGate(running, waiting int) *hashGate {
	return &hashGate{run: make(chan struct{}, running), wait: make(chan struct{}, running+waiting), maxWait: defaultMaxWait}
}

// expectedWait is how long a check arriving now would wait for a turn.
func (g *hashGate) expectedWait() time.Duration {
	ahead := len(g.wait) - cap(g.run) + 1 // checks that start before it
	mean := g.mean.Load()
	if ahead <= 0 || mean == 0 {
		return 0
	}
	return time.Duration(int64(ahead) * mean / int64(cap(g.run)))
}

// shed returns ErrServerBusy when a check arriving now would wait longer
// than maxWait, and nil otherwise: a cheap look, before anything else is
// spent on a request that would be shed. Its Retry-After is when the
// queue is expected to have room again (the wait past maxWait, at least a
// second), not the whole wait: a client told that would come back to an
// empty queue, the hashing idle meanwhile.
func (g *hashGate) shed() error {
	if w := g.expectedWait(); w > g.maxWait {
		return ErrServerBusy.After(max(time.Second, w-g.maxWait))
	}
	return nil
}

// enter waits for a turn. It fails at once with ErrServerBusy when the
// expected wait is too long, with ErrTooManyAttempts when the queue is
// full, and with the context's error when it is done. The returned
// function ends the turn, and times it.
func (g *hashGate) enter(ctx context.Context) (func(), error) {
	if err := g.shed(); err != nil {
		return nil, err
	}
	select {
	case g.wait <- struct{}{}:
	default:
		return nil, ErrTooManyAttempts.After(time.Second)
	}
	select {
	case g.run <- struct{}{}:
		start := time.Now()
		return func() {
			g.observe(time.Since(start))
			<-g.run
			<-g.wait
		}, nil
	case <-ctx.Done():
		<-g.wait
		return nil, ctx.Err()
	}
}

// observe adds a check's time to the moving average (weight 1/8).
func (g *hashGate) observe(d time.Duration) {
	for {
		old := g.mean.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if g.mean.CompareAndSwap(old, next) {
			return
		}
	}
}

// depth returns how many hashes are running or waiting.
func (g *hashGate) depth() int { return len(g.wait) }
