package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"tether"
)

// TestHashGateBounds shows the gate lets a fixed number of hashes run, a
// fixed number wait, and turns the rest away at once with a 429.
func TestHashGateBounds(t *testing.T) {
	g := newHashGate(2, 1)
	ctx := context.Background()
	var releases []func()
	for range 2 {
		release, err := g.enter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	entered := make(chan func())
	go func() {
		release, err := g.enter(ctx) // waits: both running slots are taken
		if err != nil {
			t.Error(err)
		}
		entered <- release
	}()
	// Let the waiter queue up, then the next one is turned away.
	deadline := time.Now().Add(5 * time.Second)
	for g.depth() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := g.enter(ctx); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("enter with a full queue: %v; want too_many_attempts", err)
	}
	releases[0]()
	(<-entered)()
	releases[1]()
	if d := g.depth(); d != 0 {
		t.Fatalf("depth %d after every release; want 0", d)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for range 2 {
		release, err := g.enter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
	}
	if _, err := g.enter(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("enter with a canceled context: %v", err)
	}
}

// TestHashGateSheds: once checks are measured, a check that would wait
// more than about a second for its turn is refused at once with
// server_busy and a Retry-After of that wait, while those it would have
// queued behind keep every running slot busy; as the queue drains, checks
// are let in again.
func TestHashGateSheds(t *testing.T) {
	g := newHashGate(2, 64)
	ctx := context.Background()
	if w := g.expectedWait(); w != 0 {
		t.Fatalf("an idle gate's wait: %v", w)
	}
	g.observe(500 * time.Millisecond)
	if got := time.Duration(g.mean.Load()); got != 500*time.Millisecond {
		t.Fatalf("the first measure is the mean: %v", got)
	}
	var held []func()
	for range 2 {
		release, err := g.enter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	// Waiters hand their turn's end here as they get one, in any order.
	turns := make(chan func(), 8)
	wait := func(depth int) {
		go func() {
			release, err := g.enter(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			turns <- release
		}()
		deadline := time.Now().Add(5 * time.Second)
		for g.depth() < depth && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if g.depth() != depth {
			t.Fatalf("depth %d; want %d", g.depth(), depth)
		}
	}
	// Two run; three wait: the next would start after four more checks,
	// two at a time: a second.
	for d := 3; d <= 5; d++ {
		wait(d)
	}
	if w := g.expectedWait(); w != time.Second {
		t.Fatalf("expected wait with five ahead: %v; want 1s", w)
	}
	if err := g.shed(); err != nil {
		t.Fatalf("a wait of one second is shed: %v", err)
	}
	// One more waiter makes the next wait 1.25 s: shed.
	wait(6)
	_, err := g.enter(ctx)
	var te *tether.Error
	if !errors.Is(err, ErrServerBusy) || !errors.As(err, &te) || te.RetryAfter < time.Second {
		t.Fatalf("a check that would wait 1.25 s: %v; want server_busy with a Retry-After", err)
	}
	if d := g.depth(); d != 6 {
		t.Fatalf("the shed check took a place: depth %d", d)
	}
	// The running slots stay full while checks wait: each end of a turn
	// lets a waiter in at once.
	for _, release := range held {
		release()
		(<-turns)()
	}
	for range 2 {
		(<-turns)()
	}
	if err := g.shed(); err != nil {
		t.Fatalf("an empty gate sheds: %v", err)
	}
	if d := g.depth(); d != 0 {
		t.Fatalf("depth %d after every release", d)
	}
}
