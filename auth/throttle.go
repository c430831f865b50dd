package auth

import (
	"context"
	"sync"
	"time"
)

// Throttle counts failures per key (an account, a client address) in fixed
// windows, and blocks a key that reaches the limit until its window ends.
// Its memory is bounded: past max keys it forgets expired windows first,
// then arbitrary ones.
type Throttle struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*window
}

type window struct {
	failures int
	resetAt  time.Time
}

// NewThrottle returns a Throttle allowing limit failures per window per key,
// remembering at most max keys. A limit of 0 or less disables it.
func NewThrottle(limit int, per time.Duration, max int, now func() time.Time) *Throttle {
	return &Throttle{limit: limit, window: per, max: max, now: now, entries: make(map[string]*window)}
}

// Blocked reports whether key is blocked, and for how long.
func (t *Throttle) Blocked(key string) (time.Duration, bool) {
	if t.limit <= 0 {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.entries[key]
	if !ok {
		return 0, false
	}
	now := t.now()
	if !now.Before(w.resetAt) {
		delete(t.entries, key)
		return 0, false
	}
	if w.failures >= t.limit {
		return w.resetAt.Sub(now), true
	}
	return 0, false
}

// Fail counts a failure for key.
func (t *Throttle) Fail(key string) {
	if t.limit <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	w, ok := t.entries[key]
	if !ok || !now.Before(w.resetAt) {
		if !ok && len(t.entries) >= t.max {
			t.evict(now)
		}
		w = &window{resetAt: now.Add(t.window)}
		t.entries[key] = w
	}
	w.failures++
}

// Reset forgets key's failures, as after a successful login.
func (t *Throttle) Reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// Len returns how many keys it remembers.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// evict makes room: expired windows go first; if none has, an arbitrary
// tenth of the entries (Go's map order is random).
func (t *Throttle) evict(now time.Time) {
	for k, w := range t.entries {
		if !now.Before(w.resetAt) {
			delete(t.entries, k)
		}
	}
	for k := range t.entries {
		if len(t.entries) < t.max-t.max/10 {
			break
		}
		delete(t.entries, k)
	}
}

// hashGate bounds how many password hashes run at once (each takes tens of
// MiB) and how many wait, so a flood of logins cannot exhaust memory.
type hashGate struct {
	run  chan struct{}
	wait chan struct{}
}

func newHashGate(running, waiting int) *hashGate {
	return &hashGate{run: make(chan struct{}, running), wait: make(chan struct{}, running+waiting)}
}

// enter waits for a turn. It fails at once with ErrTooManyAttempts when the
// queue is full, and with the context's error when it is done.
func (g *hashGate) enter(ctx context.Context) (func(), error) {
	select {
	case g.wait <- struct{}{}:
	default:
		return nil, ErrTooManyAttempts.After(time.Second)
	}
	select {
	case g.run <- struct{}{}:
		return func() { <-g.run; <-g.wait }, nil
	case <-ctx.Done():
		<-g.wait
		return nil, ctx.Err()
	}
}

// depth returns how many hashes are running or waiting.
func (g *hashGate) depth() int { return len(g.wait) }
