package auth

import (
	"context"
	"errors"
	"testing"
	"time"
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
