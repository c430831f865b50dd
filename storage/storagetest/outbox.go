package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

// OutboxStore is a store with an outbox.
type OutboxStore interface {
	storage.Store
	storage.Outbox
}

// NewOutboxStore opens a new, empty store, and returns with it a function
// that closes it and opens it again.
type NewOutboxStore func(t *testing.T) (s OutboxStore, reopen func() OutboxStore)

// RunOutbox runs the outbox's conformance tests against stores made by
// newStore.
func RunOutbox(t *testing.T, newStore NewOutboxStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewOutboxStore)
	}{
		{"Routes", testOutboxRoutes},
		{"RoutesKept", testOutboxRoutesKept},
		{"RolledBack", testOutboxRolledBack},
		{"AckAndDeadLetters", testOutboxAckAndDeadLetters},
		{"Lease", testOutboxLease},
		{"ConcurrentOrder", testOutboxConcurrentOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore) })
	}
}

// testRoutes send every event to "all", failures to "failures", events in
// the group north to "north", and the device actions to "devices".
var testRoutes = []storage.EventRoute{
	{Sink: "all"},
	{Sink: "failures", Outcomes: []string{"failure"}},
	{Sink: "north", Groups: []string{"north"}},
	{Sink: "devices", Actions: []string{"device.*"}},
}

// routed opens a store with testRoutes.
func routed(t *testing.T, newStore NewOutboxStore) OutboxStore {
	t.Helper()
	s, _ := newStore(t)
	if err := s.SetEventRoutes(context.Background(), testRoutes); err != nil {
		t.Fatal(err)
	}
	return s
}

func outboxEvent(action, outcome string, at time.Time) storage.Event {
	return storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: at, Action: action, Outcome: outcome, Actor: "cli"}
}

func readAll(t *testing.T, s storage.Outbox, sink string) []storage.OutboxEntry {
	t.Helper()
	got, err := s.ReadOutbox(context.Background(), sink, storage.MaxPageSize)
	if err != nil {
		t.Fatalf("ReadOutbox(%s): %v", sink, err)
	}
	return got
}

func actions(entries []storage.OutboxEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Event.Action)
	}
	return out
}

// testOutboxRoutes: events written with a change and on their own are
// queued for the sinks the router names, in order, with their groups, and
// once even when an event is written again under its ID.
func testOutboxRoutes(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s := routed(t, newStore)
	d := newDevice("490154203237518") // group north
	created := outboxEvent("device.create", "success", now)
	created.DeviceID = d.ID
	if err := s.CreateDevice(ctx, d, storage.WithEvents(created)); err != nil {
		t.Fatal(err)
	}
	refused := outboxEvent("login", "failure", now.Add(time.Second))
	plain := outboxEvent("keys.rotate", "success", now.Add(2*time.Second))
	if err := s.AppendEvents(ctx, refused, plain); err != nil {
		t.Fatal(err)
	}
	// Written again (a retried append): stored once, queued once.
	if err := s.AppendEvents(ctx, plain); err != nil {
		t.Fatal(err)
	}

	all := readAll(t, s, "all")
	if got, want := actions(all), []string{"device.create", "login", "keys.rotate"}; !slices.Equal(got, want) {
		t.Fatalf("all: %v, want %v", got, want)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("seqs not increasing: %d then %d", all[i-1].Seq, all[i].Seq)
		}
	}
	if all[0].Sink != "all" || all[0].Event.ID != created.ID || !all[0].Queued.Equal(now) {
		t.Errorf("entry: %+v", all[0])
	}
	if got := all[0].Event.Groups; !slices.Equal(got, []string{"north"}) {
		t.Errorf("queued event's groups %v, want [north] as the store set them", got)
	}
	if got := actions(readAll(t, s, "failures")); !slices.Equal(got, []string{"login"}) {
		t.Errorf("failures: %v", got)
	}
	if got := actions(readAll(t, s, "north")); !slices.Equal(got, []string{"device.create"}) {
		t.Errorf("north: %v", got)
	}
	if got := actions(readAll(t, s, "devices")); !slices.Equal(got, []string{"device.create"}) {
		t.Errorf("devices: %v", got)
	}
	if got := readAll(t, s, "nobody"); len(got) != 0 {
		t.Errorf("a sink never routed to: %v", got)
	}
	// The limit takes the oldest.
	head, err := s.ReadOutbox(ctx, "all", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(head); !slices.Equal(got, []string{"device.create", "login"}) {
		t.Errorf("head of 2: %v", got)
	}
	st, err := s.OutboxStats(ctx, "all")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 3 || st.Dead != 0 || !st.Oldest.Equal(now) {
		t.Errorf("stats %+v", st)
	}
	if st, err := s.OutboxStats(ctx, "nobody"); err != nil || st != (storage.OutboxStats{}) {
		t.Errorf("stats of a sink never routed to: %+v, %v", st, err)
	}
}

// testOutboxRolledBack: a write that fails queues nothing.
func testOutboxRolledBack(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s := routed(t, newStore)
	d := newDevice("490154203237518")
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	twin := newDevice("490154203237518")
	e := outboxEvent("device.create", "success", now)
	if err := s.CreateDevice(ctx, twin, storage.WithEvents(e)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a second IMEI: %v", err)
	}
	for _, sink := range []string{"all", "north", "devices"} {
		if got := readAll(t, s, sink); len(got) != 0 {
			t.Errorf("%s: a rolled back write's event was queued: %v", sink, actions(got))
		}
	}
}

// testOutboxRoutesKept: routes survive reopening; bad ones are refused
// and change nothing; no routes, nothing queued.
func testOutboxRoutesKept(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s, reopen := newStore(t)
	if got, err := s.EventRoutes(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a new store's routes: %v, %v", got, err)
	}
	if err := s.AppendEvents(ctx, outboxEvent("login", "success", now)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEventRoutes(ctx, testRoutes); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]storage.EventRoute{
		{{Sink: "Upper"}}, {{Sink: ""}}, {{Sink: "a\x00b"}}, {{Sink: strings.Repeat("a", 64)}},
		{{Sink: "twice"}, {Sink: "twice"}},
	} {
		if err := s.SetEventRoutes(ctx, bad); err == nil {
			t.Errorf("routes %+v accepted", bad)
		}
	}
	s = reopen()
	got, err := s.EventRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(testRoutes) {
		t.Fatalf("routes after reopening: %+v, want %+v", got, testRoutes)
	}
	// Changing what is returned changes nothing kept.
	got[0].Sink = "changed"
	if again, _ := s.EventRoutes(ctx); again[0].Sink != "all" {
		t.Error("EventRoutes returned the store's own slice")
	}
	if err := s.AppendEvents(ctx, outboxEvent("login", "success", now.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	// Only the event written after the routes were set is queued.
	if q := readAll(t, s, "all"); len(q) != 1 || !q[0].Queued.Equal(now.Add(time.Second)) {
		t.Errorf("queued: %+v", q)
	}
	if err := s.SetEventRoutes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, outboxEvent("login", "success", now.Add(2*time.Second))); err != nil {
		t.Fatal(err)
	}
	if q := readAll(t, s, "all"); len(q) != 1 {
		t.Errorf("queued with no routes: %d entries", len(q))
	}
}

// testOutboxAckAndDeadLetters: acknowledged entries leave; dead letters
// leave the queue, page, and come back at its tail when replayed.
func testOutboxAckAndDeadLetters(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s := routed(t, newStore)
	for i := range 6 {
		if err := s.AppendEvents(ctx, outboxEvent(fmt.Sprintf("a%d", i), "success", now.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	q := readAll(t, s, "all")
	seq := func(i int) uint64 { return q[i].Seq }
	// Ack a0 and a2, and a seq that is not there.
	if err := s.AckOutbox(ctx, "all", []uint64{seq(0), seq(2), seq(5) + 1000}); err != nil {
		t.Fatal(err)
	}
	// Dead-letter a1, a3 and a4; a0 is gone already and is ignored.
	failed := now.Add(time.Hour)
	if err := s.DeadLetter(ctx, "all", []uint64{seq(4), seq(1), seq(3), seq(0)}, failed, "receiver answered 400"); err != nil {
		t.Fatal(err)
	}
	if got := actions(readAll(t, s, "all")); !slices.Equal(got, []string{"a5"}) {
		t.Fatalf("queue after ack and dead letters: %v", got)
	}
	// Acknowledging a dead letter does not remove it.
	if err := s.AckOutbox(ctx, "all", []uint64{seq(1)}); err != nil {
		t.Fatal(err)
	}
	st, err := s.OutboxStats(ctx, "all")
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 1 || st.Dead != 3 || !st.Oldest.Equal(q[5].Queued) {
		t.Errorf("stats %+v", st)
	}
	// Pages of two.
	var dead []storage.DeadLetter
	after := ""
	for range 3 {
		page, err := s.ListDeadLetters(ctx, "all", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, page.Items...)
		if after = page.Next; after == "" {
			break
		}
	}
	if len(dead) != 3 || dead[0].Event.Action != "a1" || dead[1].Event.Action != "a3" || dead[2].Event.Action != "a4" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if d := dead[0]; d.Reason != "receiver answered 400" || !d.Failed.Equal(failed) || d.Sink != "all" || d.Seq != seq(1) {
		t.Errorf("dead letter %+v", d)
	}
	if _, err := s.ListDeadLetters(ctx, "all", "x", 2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a malformed cursor: %v", err)
	}
	// The other sinks keep theirs.
	if got := readAll(t, s, "failures"); len(got) != 0 {
		t.Errorf("failures: %v", actions(got))
	}
	// Replay a3, then the rest: each goes to the tail with a new seq.
	replayed := now.Add(2 * time.Hour)
	if n, err := s.ReplayDeadLetters(ctx, "all", []uint64{seq(3), seq(5)}, replayed); err != nil || n != 1 {
		t.Fatalf("replay a3 (and a5, not dead): %d, %v", n, err)
	}
	if n, err := s.ReplayDeadLetters(ctx, "all", nil, replayed); err != nil || n != 2 {
		t.Fatalf("replay all: %d, %v", n, err)
	}
	back := readAll(t, s, "all")
	if got := actions(back); !slices.Equal(got, []string{"a5", "a3", "a1", "a4"}) {
		t.Fatalf("queue after replay: %v", got)
	}
	for _, e := range back[1:] {
		if e.Seq <= seq(5) || !e.Queued.Equal(replayed) {
			t.Errorf("replayed entry %s: seq %d (last was %d), queued %v", e.Event.Action, e.Seq, seq(5), e.Queued)
		}
	}
	if st, err := s.OutboxStats(ctx, "all"); err != nil || st.Dead != 0 || st.Pending != 4 {
		t.Errorf("stats after replay %+v, %v", st, err)
	}
}

// testOutboxLease: one holder at a time; the lease lapses, is renewed by
// its holder, released only by it, and taken by one of many at once.
func testOutboxLease(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s := routed(t, newStore)
	lease := func(holder string, at time.Time) bool {
		t.Helper()
		ok, err := s.LeaseSink(ctx, "all", holder, at, at.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !lease("a", now) {
		t.Fatal("a free sink was not leased")
	}
	if lease("b", now.Add(30*time.Second)) {
		t.Fatal("b took a's lease before it lapsed")
	}
	if !lease("a", now.Add(50*time.Second)) {
		t.Fatal("a could not renew")
	}
	if lease("b", now.Add(80*time.Second)) {
		t.Fatal("b took a's renewed lease")
	}
	if err := s.ReleaseSink(ctx, "all", "b"); err != nil {
		t.Fatal(err)
	}
	if lease("b", now.Add(81*time.Second)) {
		t.Fatal("b's release of a's lease freed it")
	}
	if !lease("b", now.Add(111*time.Second)) {
		t.Fatal("b could not take a lapsed lease")
	}
	if err := s.ReleaseSink(ctx, "all", "b"); err != nil {
		t.Fatal(err)
	}
	if !lease("a", now.Add(112*time.Second)) {
		t.Fatal("a could not take a released lease")
	}
	// Many at once on a free sink: one wins.
	var wins sync.Map
	var wg sync.WaitGroup
	at := now.Add(time.Hour)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.LeaseSink(ctx, "failures", fmt.Sprintf("h%d", i), at, at.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	wins.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d holders leased one sink at once", n)
	}
}

// testOutboxConcurrentOrder: writers at once each see their own events
// queued in the order they wrote them, every one exactly once.
func testOutboxConcurrentOrder(t *testing.T, newStore NewOutboxStore) {
	ctx := context.Background()
	s := routed(t, newStore)
	const writers, each = 6, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := outboxEvent(fmt.Sprintf("w%d.%02d", w, i), "success", now)
				e.SessionID = fmt.Sprintf("ses_%d", w)
				if err := s.AppendEvents(ctx, e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	q := readAll(t, s, "all")
	if len(q) != writers*each {
		t.Fatalf("%d entries, want %d", len(q), writers*each)
	}
	last := map[string]string{}
	seen := map[string]bool{}
	for _, e := range q {
		if seen[e.Event.ID] {
			t.Errorf("event %s queued twice", e.Event.ID)
		}
		seen[e.Event.ID] = true
		w, _, _ := strings.Cut(e.Event.Action, ".")
		if prev := last[w]; prev != "" && e.Event.Action < prev {
			t.Errorf("writer %s: %s queued after %s", w, e.Event.Action, prev)
		}
		last[w] = e.Event.Action
	}
}
