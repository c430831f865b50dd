package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether"
	"tether/auth"
	"tether/device"
	"tether/storage"
	"tether/storage/postgres"
	"tether/storage/postgres/pgtest"
)

// share makes w's phone a shared handset of group rack-1, with the given
// group settings.
func (w *world) share(g storage.Group) {
	w.t.Helper()
	g.Name = "rack-1"
	if _, err := w.store.UpdateGroup(w.ctx, g.Name, func(storage.Group) (storage.Group, error) { return g, nil }); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.store.UpdateDevice(w.ctx, w.phone.ID, func(d storage.Device) (storage.Device, error) {
		d.Group, d.Mode = g.Name, storage.ModeShared
		return d, nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) scopedUser(name string, scopes ...string) storage.User {
	w.t.Helper()
	u, err := w.users.Create(w.ctx, auth.CLI, auth.NewUser{Username: name, Password: password, Role: storage.RoleWorker, Scopes: scopes})
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}

// wantCode fails unless err carries code (and, if reason is set, that
// reason).
func wantCode(t *testing.T, err error, code tether.Code, reason string) {
	t.Helper()
	var terr *tether.Error
	if !errors.As(err, &terr) || terr.Code != code || (reason != "" && terr.Extra["reason"] != reason) {
		t.Fatalf("error %v (%+v); want %s, reason %q", err, terr, code, reason)
	}
}

func TestSharedHandover(t *testing.T) { onStores(t, testSharedHandover) }

func testSharedHandover(t *testing.T, w *world) {
	anna := w.user("anna", storage.RoleWorker)
	w.share(storage.Group{Mode: storage.ModeShared})
	first := w.mustLogin()
	w.clock.Advance(time.Minute)
	second, err := w.login("anna", payload(w.phone.IMEI))
	if err != nil {
		t.Fatalf("the next worker's login: %v", err)
	}
	// Walter learns it on his next call, whichever it is.
	_, err = w.svc.Authenticate(w.ctx, first.AccessToken)
	wantCode(t, err, tether.CodeSessionEndedByHandover, "handover")
	_, err = w.svc.Refresh(w.ctx, first.RefreshToken, w.phone.ID)
	wantCode(t, err, tether.CodeSessionEndedByHandover, "handover")
	_, err = w.svc.Renew(w.ctx, first.AccessToken, w.phone.ID)
	wantCode(t, err, tether.CodeSessionEndedByHandover, "handover")
	if _, err := w.svc.Authenticate(w.ctx, second.AccessToken); err != nil {
		t.Fatalf("the new holder's token: %v", err)
	}
	page, err := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.handover"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("handover events: %+v, %v; want 1", page.Items, err)
	}
	ev := page.Items[0]
	if ev.UserID != anna.ID || ev.Detail["fromUserId"] != w.worker.ID || ev.Detail["fromSessionId"] != first.Session.ID ||
		ev.SessionID != second.Session.ID || ev.DeviceID != w.phone.ID || !ev.Time.Equal(w.clock.Now()) ||
		ev.Detail["fromSince"] != first.Session.CreatedAt.Format(time.RFC3339) || ev.Groups[0] != "rack-1" {
		t.Fatalf("handover event %+v; want anna taking over from walter, now, in rack-1", ev)
	}
	// The same worker again replaces their own session: no handover.
	if _, err := w.login("anna", payload(w.phone.IMEI)); err != nil {
		t.Fatal(err)
	}
	if page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.handover"}); len(page.Items) != 1 {
		t.Fatalf("%d handover events after a worker logged in again; want still 1", len(page.Items))
	}
}

func TestPersonalHandsetUnchanged(t *testing.T) {
	w := newWorld(t)
	w.user("anna", storage.RoleWorker)
	first := w.mustLogin()
	if _, err := w.login("anna", payload(w.phone.IMEI)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Authenticate(w.ctx, first.AccessToken); err != nil {
		t.Fatalf("a personal handset ended the first worker's session at another's login: %v", err)
	}
}

// TestSharedPickUp: who may pick up a shared handset is the group and its
// roster; the handset's assigned users play no part.
func TestSharedPickUp(t *testing.T) {
	w := newWorld(t)
	north := w.scopedUser("nora", "north")
	w.scopedUser("rita", "rack-1")
	w.user("ulf", storage.RoleWorker) // unscoped: the whole fleet's
	if _, err := w.store.UpdateDevice(w.ctx, w.phone.ID, func(d storage.Device) (storage.Device, error) {
		d.AssignedUsers = []string{w.boss.ID}
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	w.share(storage.Group{Mode: storage.ModeShared})
	for _, name := range []string{"rita", "ulf", "walter"} {
		if _, err := w.login(name, payload(w.phone.IMEI)); err != nil {
			t.Fatalf("%s, in the group, on a shared handset assigned to another: %v", name, err)
		}
	}
	_, err := w.login("nora", payload(w.phone.IMEI))
	wantErr(t, err, auth.ErrNotInGroup)
	w.share(storage.Group{Mode: storage.ModeShared, Roster: []string{north.ID}})
	if _, err := w.login("nora", payload(w.phone.IMEI)); err != nil {
		t.Fatalf("nora, on the roster: %v", err)
	}
	// Back to personal: the assignment rules again.
	if _, err := w.store.UpdateDevice(w.ctx, w.phone.ID, func(d storage.Device) (storage.Device, error) {
		d.Mode = storage.ModePersonal
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err = w.login("ulf", payload(w.phone.IMEI))
	wantErr(t, err, auth.ErrDeviceNotAssigned)
}

// TestSharedByGroupMode: a handset without a mode of its own follows its
// group's.
func TestSharedByGroupMode(t *testing.T) {
	w := newWorld(t)
	w.user("anna", storage.RoleWorker)
	w.share(storage.Group{Mode: storage.ModeShared})
	if _, err := w.store.UpdateDevice(w.ctx, w.phone.ID, func(d storage.Device) (storage.Device, error) {
		d.Mode = storage.ModeGroup
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	first := w.mustLogin()
	if _, err := w.login("anna", payload(w.phone.IMEI)); err != nil {
		t.Fatal(err)
	}
	_, err := w.svc.Authenticate(w.ctx, first.AccessToken)
	wantCode(t, err, tether.CodeSessionEndedByHandover, "handover")
}

// TestHandoverRace: workers log in on one shared handset at the same
// instant: exactly one session remains.
func TestHandoverRace(t *testing.T) { onStores(t, testHandoverRace) }

func testHandoverRace(t *testing.T, w *world) {
	w.share(storage.Group{Mode: storage.ModeShared})
	raceLogins(t, w, []*auth.Service{w.svc})
}

// TestHandoverRaceTwoInstances: the same, the logins spread over two
// servers sharing one PostgreSQL database.
func TestHandoverRaceTwoInstances(t *testing.T) {
	url := pgtest.Schema(t)
	open := func() storage.Store {
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	w := newWorldOn(t, open())
	w.share(storage.Group{Mode: storage.ModeShared})
	second, err := auth.NewService(w.ctx, auth.DefaultConfig(), open(), auth.NewHasher(cheap), validatorFor(t), auth.WithClock(w.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	raceLogins(t, w, []*auth.Service{w.svc, second})
}

func raceLogins(t *testing.T, w *world, services []*auth.Service) {
	const workers = 8
	names := make([]string, workers)
	for i := range names {
		names[i] = fmt.Sprintf("racer%d", i)
		w.user(names[i], storage.RoleWorker)
	}
	start := make(chan struct{})
	grants := make([]auth.Grant, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			grants[i], errs[i] = services[i%len(services)].Login(w.ctx, auth.LoginRequest{Username: name, Password: password, Device: payload(w.phone.IMEI), Persistent: true})
		}()
	}
	close(start)
	wg.Wait()
	live := 0
	for i := range names {
		if errs[i] != nil {
			t.Fatalf("login of %s: %v", names[i], errs[i])
		}
		if _, err := w.svc.Authenticate(w.ctx, grants[i].AccessToken); err == nil {
			live++
		} else {
			wantCode(t, err, tether.CodeSessionEndedByHandover, "handover")
		}
	}
	page, err := w.store.ListSessions(w.ctx, storage.SessionFilter{DeviceID: w.phone.ID, LiveAt: w.clock.Now()})
	if err != nil || live != 1 || len(page.Items) != 1 {
		t.Fatalf("after %d logins at once on a shared handset: %d tokens work, %d sessions live (%v); want 1 and 1", workers, live, len(page.Items), err)
	}
	if page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.handover"}); len(page.Items) != workers-1 {
		t.Fatalf("%d handover events; want %d", len(page.Items), workers-1)
	}
}

// TestShiftEndsSession: a session on a shared handset of a group with
// shifts ends at its shift's end plus the grace, whatever its lifetimes,
// here across the night the clocks go forward in Berlin.
func TestShiftEndsSession(t *testing.T) {
	w := newWorld(t)
	w.share(storage.Group{Mode: storage.ModeShared, Shifts: &storage.ShiftSchedule{
		TimeZone: "Europe/Berlin", Boundaries: []string{"06:00", "14:00", "22:00"}, Grace: 15 * time.Minute}})
	w.clock.Advance(time.Date(2026, 3, 28, 22, 0, 0, 0, time.UTC).Sub(w.clock.Now())) // 23:00 CET
	g := w.mustLogin()
	end := time.Date(2026, 3, 29, 4, 0, 0, 0, time.UTC) // 06:00 CEST: a 7-hour night
	if !g.Session.ShiftEnd.Equal(end) || !g.Session.ExpiresAt.Equal(end.Add(15*time.Minute)) || g.RefreshExpiresAt.After(end.Add(15*time.Minute)) {
		t.Fatalf("session shift end %s, expires %s, refresh until %s; want %s, %s", g.Session.ShiftEnd, g.Session.ExpiresAt, g.RefreshExpiresAt, end, end.Add(15*time.Minute))
	}
	// Past the shift's end, within the grace: still works; its tokens never
	// outlive the deadline.
	w.clock.Advance(end.Add(5 * time.Minute).Sub(w.clock.Now()))
	r, err := w.svc.Refresh(w.ctx, g.RefreshToken, w.phone.ID)
	if err != nil {
		t.Fatalf("refresh within the grace: %v", err)
	}
	if r.AccessExpiresAt.After(end.Add(15*time.Minute)) || r.RefreshExpiresAt.After(end.Add(15*time.Minute)) {
		t.Fatalf("tokens of the grace last until %s, %s; past the deadline", r.AccessExpiresAt, r.RefreshExpiresAt)
	}
	w.clock.Advance(11 * time.Minute)
	_, err = w.svc.Refresh(w.ctx, r.RefreshToken, w.phone.ID)
	wantCode(t, err, tether.CodeSessionRevoked, "shift_over")
	_, err = w.svc.Renew(w.ctx, r.AccessToken, w.phone.ID)
	wantCode(t, err, tether.CodeSessionRevoked, "shift_over")
	if s, _ := w.store.GetSession(w.ctx, g.Session.ID); !s.Unreturned(w.clock.Now()) {
		t.Fatalf("a session cut off by its shift's deadline is not unreturned: %+v", s)
	}
}

// TestPersonalIgnoresShifts: the group's shifts are for its shared
// handsets.
func TestPersonalIgnoresShifts(t *testing.T) {
	w := newWorld(t)
	w.share(storage.Group{Shifts: &storage.ShiftSchedule{TimeZone: "UTC", Boundaries: []string{"10:00"}}})
	if _, err := w.store.UpdateDevice(w.ctx, w.phone.ID, func(d storage.Device) (storage.Device, error) {
		d.Mode = storage.ModePersonal
		return d, nil
	}); err != nil {
		t.Fatal(err)
	}
	g := w.mustLogin()
	if !g.Session.ShiftEnd.IsZero() || g.Session.ExpiresAt.Sub(w.clock.Now()) != w.svc.Config().SessionMax {
		t.Fatalf("a personal handset's session: shift end %s, expires %s", g.Session.ShiftEnd, g.Session.ExpiresAt)
	}
}

func TestEndShift(t *testing.T) {
	w := newWorld(t)
	w.share(storage.Group{Mode: storage.ModeShared, Shifts: &storage.ShiftSchedule{TimeZone: "UTC", Boundaries: []string{"14:00"}}})
	g := w.mustLogin()
	id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(5 * time.Minute)
	if err := w.svc.EndShift(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Authenticate(w.ctx, g.AccessToken)
	wantCode(t, err, tether.CodeSessionRevoked, "shift_ended")
	s, _ := w.store.GetSession(w.ctx, g.Session.ID)
	if s.RevokeReason != "shift_ended" || !s.RevokedAt.Equal(w.clock.Now()) || s.Unreturned(w.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("session after the end of its shift: %+v", s)
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "shift.end"})
	if len(page.Items) != 1 || page.Items[0].UserID != w.worker.ID || page.Items[0].DeviceID != w.phone.ID ||
		page.Items[0].Detail["shiftEnd"] != "2026-06-01T14:00:00Z" {
		t.Fatalf("shift.end events %+v", page.Items)
	}
	// Twice: the session has ended.
	err = w.svc.EndShift(w.ctx, id)
	wantCode(t, err, tether.CodeSessionRevoked, "shift_ended")
	if page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "shift.end"}); len(page.Items) != 1 {
		t.Fatalf("%d shift.end events after ending twice; want 1", len(page.Items))
	}
}

func TestRackAndShiftWatch(t *testing.T) {
	w := newWorld(t)
	svc, err := auth.NewService(w.ctx, w.svc.Config(), w.store, auth.NewHasher(cheap), validatorFor(t),
		auth.WithClock(w.clock.Now), auth.WithSuspender(w.devices))
	if err != nil {
		t.Fatal(err)
	}
	w.svc = svc
	w.share(storage.Group{Mode: storage.ModeShared, SuspendUnreturnedAfter: time.Hour,
		Shifts: &storage.ShiftSchedule{TimeZone: "UTC", Boundaries: []string{"14:00"}, Grace: 10 * time.Minute}})
	rack := func(by auth.Principal) []auth.Slot {
		t.Helper()
		slots, err := w.svc.Rack(w.ctx, by, "")
		if err != nil {
			t.Fatal(err)
		}
		return slots
	}
	state := func() (string, *auth.Holder) {
		t.Helper()
		slots := rack(auth.CLI)
		if len(slots) != 1 || slots[0].Device.ID != w.phone.ID {
			t.Fatalf("rack %+v; want the one shared handset", slots)
		}
		return slots[0].State, slots[0].Holder
	}
	if s, h := state(); s != auth.RackFree || h != nil {
		t.Fatalf("before any login: %s, %+v; want free", s, h)
	}
	w.mustLogin()
	s, h := state()
	if s != auth.RackInUse || h == nil || h.Username != "walter" || !h.Since.Equal(w.clock.Now()) ||
		!h.ShiftEnd.Equal(time.Date(2026, 6, 1, 14, 0, 0, 0, time.UTC)) || !h.Deadline.Equal(h.ShiftEnd.Add(10*time.Minute)) {
		t.Fatalf("in use: %s, %+v", s, h)
	}
	if other := rack(auth.Principal{Role: storage.RoleManager, Scopes: []string{"north"}}); len(other) != 0 {
		t.Fatalf("a manager of another group sees %+v", other)
	}
	w.clock.Advance(5*time.Hour + time.Minute) // 14:01
	if s, _ := state(); s != auth.RackOverdue {
		t.Fatalf("past the shift's end: %s; want overdue", s)
	}
	if r, err := w.svc.WatchShifts(w.ctx); err != nil || r != (auth.ShiftReport{}) {
		t.Fatalf("watch within the grace: %+v, %v; want nothing", r, err)
	}
	w.clock.Advance(10 * time.Minute) // 14:11: past the deadline
	if s, h := state(); s != auth.RackUnreturned || h.Username != "walter" {
		t.Fatalf("past the deadline: %s, %+v; want unreturned by walter", s, h)
	}
	// Watches at once note it once.
	var wg sync.WaitGroup
	reports := make([]auth.ShiftReport, 4)
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if reports[i], err = w.svc.WatchShifts(w.ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	noted := 0
	for _, r := range reports {
		noted += r.Noted
		if r.Unreturned != 1 || r.Suspended != 0 {
			t.Fatalf("watch report %+v; want 1 unreturned, none suspended yet", r)
		}
	}
	page, _ := w.store.ListEvents(w.ctx, storage.EventFilter{Action: "device.unreturned"})
	if noted != 1 || len(page.Items) != 1 || page.Items[0].UserID != w.worker.ID || page.Items[0].Detail["deadline"] != "2026-06-01T14:10:00Z" {
		t.Fatalf("noted %d times, events %+v; want once, walter's", noted, page.Items)
	}
	if w.svc.Unreturned() != 1 {
		t.Fatalf("Unreturned() = %d; want 1", w.svc.Unreturned())
	}
	// An hour past the deadline the group's setting suspends it.
	w.clock.Advance(time.Hour)
	r, err := w.svc.WatchShifts(w.ctx)
	if err != nil || r.Suspended != 1 {
		t.Fatalf("watch an hour past the deadline: %+v, %v; want the handset suspended", r, err)
	}
	d, _ := w.store.GetDevice(w.ctx, w.phone.ID)
	if d.Status != storage.DeviceSuspended || d.StatusChangedBy != auth.ShiftActor {
		t.Fatalf("handset after the watch: %s by %s", d.Status, d.StatusChangedBy)
	}
	if s, _ := state(); s != "suspended" {
		t.Fatalf("rack state of the suspended handset: %s", s)
	}
	if r, _ := w.svc.WatchShifts(w.ctx); r.Suspended != 0 || w.svc.Unreturned() != 0 {
		t.Fatalf("a second watch: %+v, gauge %d; want nothing more", r, w.svc.Unreturned())
	}
	// Reinstated, the next worker picks it up; ending the shift frees it.
	if _, err := w.devices.Reinstate(w.ctx, device.Actor{Name: "cli"}, w.phone.ID, ""); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(12 * time.Hour)
	g := w.mustLogin()
	id, err := w.svc.Authenticate(w.ctx, g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.svc.EndShift(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	if s, h := state(); s != auth.RackFree || h != nil {
		t.Fatalf("after the end of the shift: %s, %+v; want free", s, h)
	}
}
