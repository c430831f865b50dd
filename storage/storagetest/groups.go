package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

func sharedGroup(name string) storage.Group {
	return storage.Group{
		Name: name, Mode: storage.ModeShared, Roster: []string{"usr_roster"},
		Shifts:                 &storage.ShiftSchedule{TimeZone: "Europe/Berlin", Boundaries: []string{"06:00", "14:00", "22:00"}, Grace: 15 * time.Minute},
		SuspendUnreturnedAfter: 2 * time.Hour, UpdatedAt: now, UpdatedBy: "cli",
	}
}

// putGroup stores g as the settings of its group.
func putGroup(ctx context.Context, s storage.Store, g storage.Group) error {
	_, err := s.UpdateGroup(ctx, g.Name, func(storage.Group) (storage.Group, error) { return g, nil })
	return err
}

func testGroups(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if _, err := s.GetGroup(ctx, "rack-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetGroup of a group without settings: %v; want ErrNotFound", err)
	}
	if groups, err := s.ListGroups(ctx); err != nil || len(groups) != 0 {
		t.Fatalf("ListGroups of an empty store = %v, %v", groups, err)
	}
	// UpdateGroup creates: fn sees the bare name.
	var seen storage.Group
	created, err := s.UpdateGroup(ctx, "rack-1", func(g storage.Group) (storage.Group, error) {
		seen = g
		return sharedGroup("rack-1"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen.Name != "rack-1" || seen.Mode != "" || seen.Shifts != nil {
		t.Fatalf("fn was given %+v for a group without settings; want the bare name", seen)
	}
	sameJSON(t, "created group", created, sharedGroup("rack-1"))
	got, err := s.GetGroup(ctx, "rack-1")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "stored group", got, sharedGroup("rack-1"))
	// Values: changing what was returned changes nothing stored.
	got.Roster[0], got.Shifts.Boundaries[0] = "usr_mallory", "00:00"
	if again, _ := s.GetGroup(ctx, "rack-1"); again.Roster[0] != "usr_roster" || again.Shifts.Boundaries[0] != "06:00" {
		t.Fatalf("a returned group shares memory with the store: %+v", again)
	}

	// Refusals write nothing.
	boom := errors.New("boom")
	if _, err := s.UpdateGroup(ctx, "rack-1", func(g storage.Group) (storage.Group, error) {
		g.Mode = storage.ModePersonal
		return g, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("UpdateGroup with a failing fn: %v; want boom", err)
	}
	if _, err := s.UpdateGroup(ctx, "rack-1", func(g storage.Group) (storage.Group, error) {
		g.Name = "rack-2"
		return g, nil
	}); err == nil {
		t.Fatal("UpdateGroup renamed a group")
	}
	if _, err := s.UpdateGroup(ctx, "rack-3", func(g storage.Group) (storage.Group, error) { return g, boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if g, _ := s.GetGroup(ctx, "rack-1"); g.Mode != storage.ModeShared {
		t.Fatalf("a refused update was written: %+v", g)
	}
	if _, err := s.GetGroup(ctx, "rack-3"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused creation was written: %v", err)
	}

	// Listed in name order, in bytes.
	for _, name := range []string{"b", "Z", "a"} {
		if err := putGroup(ctx, s, storage.Group{Name: name, Mode: storage.ModePersonal}); err != nil {
			t.Fatal(err)
		}
	}
	groups, err := s.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	if want := []string{"Z", "a", "b", "rack-1"}; !slices.Equal(names, want) {
		t.Fatalf("ListGroups = %v; want %v", names, want)
	}

	// Deleting, with an event in the same transaction.
	ev := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "group.delete", Outcome: "success"}
	if err := s.DeleteGroup(ctx, "a", storage.WithEvents(ev)); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, s, "group.delete", 1)
	if err := s.DeleteGroup(ctx, "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteGroup of a group without settings: %v; want ErrNotFound", err)
	}
}

// testGroupConcurrentUpdates adds to one roster from many writers: none
// is lost.
func testGroupConcurrentUpdates(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const writers = 12
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateGroup(ctx, "rack-1", func(g storage.Group) (storage.Group, error) {
				g.Roster = append(g.Roster, fmt.Sprintf("usr_%02d", i))
				return g, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	g, err := s.GetGroup(ctx, "rack-1")
	if err != nil || len(g.Roster) != writers {
		t.Fatalf("roster after %d concurrent additions: %v, %v", writers, g.Roster, err)
	}
}

// handover is the revocation a login on a shared handset makes: every
// other user's session on it ends, each with its event.
func handover(deviceID string, next storage.Session) storage.Revocation {
	return storage.Revocation{
		DeviceID: deviceID, Except: next.ID, ExceptUser: next.UserID, Reason: "handover", At: next.CreatedAt,
		Audit: func(old storage.Session) storage.Event {
			return storage.Event{
				ID: storage.NewID(storage.PrefixEvent), Time: next.CreatedAt, Action: "device.handover", Outcome: "success",
				UserID: next.UserID, DeviceID: deviceID, SessionID: next.ID,
				Detail: map[string]string{"fromUserId": old.UserID, "fromSessionId": old.ID},
			}
		},
	}
}

// testHandover checks a revocation that spares one user, with an event
// for each session it ends, written with the new session.
func testHandover(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	other := mustCreateUser(t, s, newUser("other", storage.RoleWorker))
	next := mustCreateUser(t, s, newUser("next", storage.RoleWorker))
	d2 := mustCreateDevice(t, s, newDevice("356938035643809"))
	s1 := mustCreateSession(t, s, newSession(u.ID, d.ID))
	s2 := mustCreateSession(t, s, newSession(other.ID, d.ID))
	elsewhere := mustCreateSession(t, s, newSession(u.ID, d2.ID))
	// next's own session of another client on the handset stays.
	own := newSession(next.ID, d.ID)
	own.ClientID = "cli_app"
	own = mustCreateSession(t, s, own)

	sess := newSession(next.ID, d.ID)
	sess.CreatedAt = now.Add(time.Hour)
	var n int
	created, err := s.CreateSession(ctx, sess, nil, storage.WithRevocation(handover(d.ID, sess), &n))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("the handover revoked %d sessions; want 2", n)
	}
	for _, id := range []string{s1.ID, s2.ID} {
		got, _ := s.GetSession(ctx, id)
		if got.RevokeReason != "handover" || !got.RevokedAt.Equal(sess.CreatedAt) {
			t.Fatalf("session %s after the handover: %q at %v", id, got.RevokeReason, got.RevokedAt)
		}
	}
	for _, id := range []string{created.ID, own.ID, elsewhere.ID} {
		if got, _ := s.GetSession(ctx, id); got.Revoked() {
			t.Fatalf("session %s was revoked by a handover that spares it", id)
		}
	}
	page, err := s.ListEvents(ctx, storage.EventFilter{Action: "device.handover"})
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("handover events: %+v, %v; want 2", page.Items, err)
	}
	from := []string{page.Items[0].Detail["fromUserId"], page.Items[1].Detail["fromUserId"]}
	slices.Sort(from)
	want := []string{u.ID, other.ID}
	slices.Sort(want)
	if !slices.Equal(from, want) || page.Items[0].SessionID != created.ID {
		t.Fatalf("handover events from %v, session %s; want from %v, session %s", from, page.Items[0].SessionID, want, created.ID)
	}

	// A handover whose login is refused revokes nothing and writes no event.
	again := newSession(u.ID, d.ID)
	boom := errors.New("boom")
	if _, err := s.CreateSession(ctx, again, func(storage.User, storage.Device) error { return boom },
		storage.WithRevocation(handover(d.ID, again), nil)); !errors.Is(err, boom) {
		t.Fatalf("CreateSession with a refusing check: %v", err)
	}
	if got, _ := s.GetSession(ctx, created.ID); got.Revoked() {
		t.Fatal("a refused login still handed the handset over")
	}
	wantEvents(t, s, "device.handover", 2)
}

// testHandoverRace logs many workers in on one shared handset at once:
// exactly one session on it remains live, and every other one ended by a
// handover with its event.
func testHandoverRace(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := mustCreateDevice(t, s, newDevice("490154203237518"))
	const workers = 8
	users := make([]storage.User, workers)
	for i := range users {
		users[i] = mustCreateUser(t, s, newUser(fmt.Sprintf("w%d", i), storage.RoleWorker))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sess := newSession(u.ID, d.ID)
			_, err := s.CreateSession(ctx, sess, nil, storage.WithRevocation(handover(d.ID, sess), nil))
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.ListSessions(ctx, storage.SessionFilter{DeviceID: d.ID})
	if err != nil || len(page.Items) != workers {
		t.Fatalf("sessions on the handset: %d, %v; want %d", len(page.Items), err, workers)
	}
	live := 0
	for _, sess := range page.Items {
		switch {
		case !sess.Revoked():
			live++
		case sess.RevokeReason != "handover":
			t.Fatalf("session ended for %q; want handover", sess.RevokeReason)
		}
	}
	if live != 1 {
		t.Fatalf("%d sessions live on a shared handset after %d logins at once; want 1", live, workers)
	}
	wantEvents(t, s, "device.handover", workers-1)
}

func testLatestSessions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u, d := fixtures(t, s)
	other := mustCreateUser(t, s, newUser("other", storage.RoleWorker))
	d2 := mustCreateDevice(t, s, newDevice("356938035643809"))
	d3 := mustCreateDevice(t, s, newDevice("352099001761481"))
	first := newSession(u.ID, d.ID)
	mustCreateSession(t, s, first)
	second := newSession(other.ID, d.ID)
	second.CreatedAt = now.Add(time.Hour)
	second = mustCreateSession(t, s, second)
	// The newest ended: still the latest.
	if _, err := s.UpdateSession(ctx, second.ID, func(x storage.Session) (storage.Session, error) {
		x.RevokedAt, x.RevokeReason = now.Add(2*time.Hour), "handover"
		return x, nil
	}); err != nil {
		t.Fatal(err)
	}
	onD2 := mustCreateSession(t, s, newSession(u.ID, d2.ID))
	latest, err := s.LatestSessions(ctx, []string{d.ID, d2.ID, d3.ID, "dev_missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || latest[d.ID].ID != second.ID || !latest[d.ID].Revoked() || latest[d2.ID].ID != onD2.ID {
		t.Fatalf("LatestSessions = %+v; want the second session on %s (revoked) and the one on %s", latest, d.ID, d2.ID)
	}
	if none, err := s.LatestSessions(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("LatestSessions(nil) = %v, %v", none, err)
	}
}

func testDeviceGroups(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if groups, err := s.DeviceGroups(ctx); err != nil || len(groups) != 0 {
		t.Fatalf("DeviceGroups of an empty store = %v, %v", groups, err)
	}
	var last storage.Device
	for i, g := range []string{"b", "a", "a", "", "Z", "a b"} {
		d := newDevice(fmt.Sprintf("35%013d", i))
		d.Group = g
		last = mustCreateDevice(t, s, d)
	}
	check := func(want ...string) {
		t.Helper()
		if got, err := s.DeviceGroups(ctx); err != nil || !slices.Equal(got, want) {
			t.Fatalf("DeviceGroups = %q, %v; want %q", got, err, want)
		}
	}
	check("Z", "a", "a b", "b")
	if _, err := s.UpdateDevice(ctx, last.ID, func(d storage.Device) (storage.Device, error) {
		d.Group = "c"
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	check("Z", "a", "b", "c")
}
