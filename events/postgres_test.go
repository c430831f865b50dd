package events_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether/events"
	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
)

// dying is a store whose instance dies rather than stops: it never gives
// its leases back.
type dying struct{ *postgres.Store }

func (dying) ReleaseSink(context.Context, string, string) error { return nil }

// TestTwoInstancesOneDelivers: two instances on one database deliver each
// event once between them, under the sink's lease; when the one holding
// it dies, the other takes over once the lease lapses, and nothing is
// lost or reordered within a session.
func TestTwoInstancesOneDelivers(t *testing.T) {
	url := pgtest.Schema(t)
	open := func() *postgres.Store {
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	r := newReceiver(t)
	cfg := webhookConfig(t, r)
	opts := fast(events.Options{})
	opts.Lease = 2 * time.Second
	oa, ob := opts, opts
	oa.Holder, ob.Holder = "instance-a", "instance-b"
	da, err := events.New(context.Background(), dying{a}, cfg, oa)
	if err != nil {
		t.Fatal(err)
	}
	db, err := events.New(context.Background(), dying{b}, cfg, ob)
	if err != nil {
		t.Fatal(err)
	}
	stopA, stopB := start(t, da), start(t, db)

	write := func(round, n int) {
		var wg sync.WaitGroup
		for i, s := range []storage.Audit{a, b} {
			wg.Go(func() {
				for j := range n {
					appendEvents(t, s, newEvent(fmt.Sprintf("r%d.%03d", round, j), fmt.Sprintf("ses_%d", i)))
				}
			})
		}
		wg.Wait()
	}
	write(1, 50)
	waitFor(t, "100 deliveries", func() bool { return len(r.events(t)) >= 100 })

	// The holder dies without a word; the other carries on.
	sa, _ := da.Status(context.Background())
	holder, other := stopA, "instance-b"
	if !sa[0].Delivering {
		holder, other = stopB, "instance-a"
	}
	holder()
	write(2, 50)
	waitFor(t, "200 deliveries after the holder died", func() bool { return len(r.events(t)) >= 200 })
	got := r.events(t)
	if len(got) != 200 {
		t.Errorf("%d deliveries, want 200", len(got))
	}
	seen := map[string]bool{}
	last := map[string]string{}
	for _, ce := range got {
		if seen[ce.ID] {
			t.Errorf("%s delivered twice", ce.ID)
		}
		seen[ce.ID] = true
		if prev := last[ce.Subject]; ce.Data.Action < prev {
			t.Errorf("session %s: %s after %s", ce.Subject, ce.Data.Action, prev)
		}
		last[ce.Subject] = ce.Data.Action
	}
	t.Logf("the survivor, %s, delivered after the holder died", other)
}
