package auth

import (
	"fmt"
	"testing"
	"time"
)

// TestReplayCache: a proof is accepted once while it could be accepted at
// all, the cache forgets it after, and it never holds more than its bound.
func TestReplayCache(t *testing.T) {
	now := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	c := newReplayCache(100)
	if !c.use("k", "1", now, now) || c.use("k", "1", now, now.Add(time.Second)) {
		t.Fatal("a proof was not accepted exactly once")
	}
	if !c.use("other", "1", now, now) {
		t.Fatal("the same jti from another key was refused")
	}
	later := now.Add(proofMaxAge + proofSkew + time.Second)
	if !c.use("k", "1", now, later) {
		t.Fatal("the cache did not forget a proof past its life (it would be refused as stale anyway)")
	}
	for i := range 1000 {
		c.use("k", fmt.Sprint("flood", i), later, later)
	}
	if n := c.Len(); n > 100 {
		t.Fatalf("the cache holds %d proofs; its bound is 100", n)
	}
	if c.use("k", "one more", later, later) {
		t.Fatal("a full cache accepted a proof it cannot remember")
	}
	muchLater := later.Add(2 * (proofMaxAge + proofSkew))
	if !c.use("k", "after", muchLater, muchLater) || c.Len() != 1 {
		t.Fatalf("the cache did not empty as its proofs aged: %d left", c.Len())
	}
}
