package storage

import (
	"strings"
	"testing"
	"time"
)

func TestNewIDSortsByTime(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := newIDAt("dev_", base)
	for i := 1; i < 1000; i++ {
		id := newIDAt("dev_", base.Add(time.Duration(i)*time.Millisecond))
		if id <= prev {
			t.Fatalf("id %s made later sorts before %s", id, prev)
		}
		prev = id
	}
}

func TestNewIDMonotonic(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := newIDAt("dev_", at)
	for i := range 1000 {
		// Most in the same millisecond, some with the clock stepping back.
		when := at
		if i%100 == 99 {
			when = at.Add(-time.Second)
		}
		id := newIDAt("dev_", when)
		if id <= prev {
			t.Fatalf("id %d: %s does not sort after %s", i, id, prev)
		}
		prev = id
	}
}

func TestNewIDFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := NewID(PrefixDevice)
		if len(id) != len(PrefixDevice)+26 || !strings.HasPrefix(id, PrefixDevice) {
			t.Fatalf("id %q; want dev_ and 26 characters", id)
		}
		if strings.Trim(id[len(PrefixDevice):], crockford) != "" {
			t.Fatalf("id %q has characters outside Crockford base32", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
	}
}

func TestUsernameKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"ａｌｉｃｅ", "alice"},         // full-width forms
		{"Ame\u0301lie", "amélie"}, // combining accent vs precomposed
	} {
		if UsernameKey(tc.a) != UsernameKey(tc.b) {
			t.Errorf("UsernameKey(%q) = %q, UsernameKey(%q) = %q; want equal", tc.a, UsernameKey(tc.a), tc.b, UsernameKey(tc.b))
		}
	}
	if UsernameKey("alice") == UsernameKey("alicia") {
		t.Error("different names share a key")
	}
}
