package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

// RunThrottles runs the conformance tests of storage.Throttles against
// counters made by newThrottles: a store shared by servers, or the memory
// a single server keeps them in. Each test gets new, empty counters.
func RunThrottles(t *testing.T, newThrottles func(t *testing.T) storage.Throttles) {
	tests := []struct {
		name string
		fn   func(t *testing.T, th storage.Throttles)
	}{
		{"ReadModifyWrite", testAttemptsReadModifyWrite},
		{"ConcurrentUpdates", testAttemptsConcurrent},
		{"ListAndClear", testAttemptsListAndClear},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newThrottles(t)) })
	}
}

// bump adds one failure to each of keys at t, kept until t plus an hour.
func bump(th storage.Throttles, at time.Time, keys ...storage.AttemptKey) error {
	return th.UpdateAttempts(context.Background(), at, keys, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		for i := range cur {
			cur[i].Failures++
			cur[i].LastAt, cur[i].ExpiresAt = at, at.Add(time.Hour)
			cur[i].BlockedUntil = at.Add(time.Duration(cur[i].Failures) * time.Second)
		}
		return cur, nil
	})
}

func read(t *testing.T, th storage.Throttles, at time.Time, k storage.AttemptKey) storage.Attempts {
	t.Helper()
	var got storage.Attempts
	err := th.UpdateAttempts(context.Background(), at, []storage.AttemptKey{k}, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		got = cur[0]
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func testAttemptsReadModifyWrite(t *testing.T, th storage.Throttles) {
	pair := storage.AttemptKey{Account: "walter", Address: "203.0.113.9"}
	account := storage.AttemptKey{Account: "walter"}
	if got := read(t, th, now, pair); got.Failures != 0 || got.AttemptKey != pair {
		t.Fatalf("a new counter reads %+v; want zero with its key", got)
	}
	for range 3 {
		if err := bump(th, now, pair, account); err != nil {
			t.Fatal(err)
		}
	}
	got := read(t, th, now, pair)
	if got.Failures != 3 || !got.LastAt.Equal(now) || !got.BlockedUntil.Equal(now.Add(3*time.Second)) || !got.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after three failures: %+v", got)
	}
	// A failing function writes nothing.
	boom := errors.New("boom")
	err := th.UpdateAttempts(context.Background(), now, []storage.AttemptKey{pair}, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		cur[0].Failures = 99
		return cur, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the function's error: %v; want it returned", err)
	}
	if got := read(t, th, now, pair); got.Failures != 3 {
		t.Fatalf("a refused update wrote %d failures", got.Failures)
	}
	// An expired counter reads as new (and is forgotten when the update
	// writes it back with no failures).
	other := storage.AttemptKey{Address: "203.0.113.10"}
	if err := bump(th, now, other); err != nil {
		t.Fatal(err)
	}
	if got := read(t, th, now.Add(time.Hour), other); got.Failures != 0 {
		t.Fatalf("an expired counter reads %+v; want zero", got)
	}
	// No failures: forgotten.
	err = th.UpdateAttempts(context.Background(), now, []storage.AttemptKey{pair}, func(cur []storage.Attempts) ([]storage.Attempts, error) {
		cur[0].Failures = 0
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	page, err := th.ListAttempts(context.Background(), storage.AttemptFilter{Account: "walter", LiveAt: now})
	if err != nil || len(page.Items) != 1 || page.Items[0].AttemptKey != account {
		t.Fatalf("after forgetting the pair: %+v, %v; want the account's alone", page.Items, err)
	}
	// Purged once expired.
	n, err := th.PurgeAttempts(context.Background(), now.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
}

// testAttemptsConcurrent: updates of the same counters at once, as servers
// sharing a store make them, lose no count.
func testAttemptsConcurrent(t *testing.T, th storage.Throttles) {
	keys := []storage.AttemptKey{{Account: "maria", Address: "198.51.100.1"}, {Account: "maria"}, {Address: "198.51.100.1"}}
	const workers, each = 8, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				// Half take the keys in another order: no deadlock.
				ks := keys
				if w%2 == 1 {
					ks = []storage.AttemptKey{keys[2], keys[1], keys[0]}
				}
				if err := bump(th, now, ks...); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, k := range keys {
		if got := read(t, th, now, k); got.Failures != workers*each {
			t.Errorf("%+v: %d failures; want %d", k, got.Failures, workers*each)
		}
	}
}

func testAttemptsListAndClear(t *testing.T, th storage.Throttles) {
	ctx := context.Background()
	var all []storage.AttemptKey
	for _, account := range []string{"ana", "bob", "", "zoë"} {
		for _, address := range []string{"", "10.0.0.1", "10.0.0.2"} {
			if account == "" && address == "" {
				continue
			}
			all = append(all, storage.AttemptKey{Account: account, Address: address})
		}
	}
	for _, k := range all {
		if err := bump(th, now, k); err != nil {
			t.Fatal(err)
		}
	}
	// Pages of two, in (account, address) order, cursors followed to the
	// end.
	var got []storage.AttemptKey
	cursor := ""
	for range 20 {
		page, err := th.ListAttempts(ctx, storage.AttemptFilter{LiveAt: now, After: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Items {
			got = append(got, a.AttemptKey)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(sortedKeys(all)) {
		t.Fatalf("listed %v; want %v", got, sortedKeys(all))
	}
	for _, c := range []struct {
		f    storage.AttemptFilter
		want int
	}{
		{storage.AttemptFilter{Account: "bob", LiveAt: now}, 3},
		{storage.AttemptFilter{Address: "10.0.0.1", LiveAt: now}, 4},
		{storage.AttemptFilter{Account: "bob", Address: "10.0.0.2", LiveAt: now}, 1},
		{storage.AttemptFilter{LiveAt: now.Add(time.Hour)}, 0},
	} {
		page, err := th.ListAttempts(ctx, c.f)
		if err != nil || len(page.Items) != c.want {
			t.Errorf("list %+v: %d, %v; want %d", c.f, len(page.Items), err, c.want)
		}
	}
	for _, c := range []struct {
		account, address string
		want             int
	}{
		{"bob", "10.0.0.2", 1}, // the pair
		{"bob", "", 2},         // the account's own and per address
		{"", "10.0.0.1", 3},    // the address's own and per account
		{"", "", 0},            // nothing named: nothing
	} {
		if n, err := th.ClearAttempts(ctx, c.account, c.address); err != nil || n != c.want {
			t.Errorf("clear %q %q: %d, %v; want %d", c.account, c.address, n, err, c.want)
		}
	}
	page, err := th.ListAttempts(ctx, storage.AttemptFilter{LiveAt: now})
	if err != nil || len(page.Items) != len(all)-6 {
		t.Fatalf("%d counters left, %v; want %d", len(page.Items), err, len(all)-6)
	}
}

func sortedKeys(keys []storage.AttemptKey) []storage.AttemptKey {
	out := append([]storage.AttemptKey(nil), keys...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Less(out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
