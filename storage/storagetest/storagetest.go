// Package storagetest is the conformance suite for storage backends. Every
// backend's tests call Run with a constructor; a backend that passes behaves,
// as far as Tether can tell, exactly like every other.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"tether/storage"
)

// Run runs every conformance test against stores made by newStore. Each
// test gets a new, empty store; newStore should register its cleanup with
// t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"DeviceCRUD", testDeviceCRUD},
		{"DeviceIMEIUnique", testDeviceIMEIUnique},
		{"DeviceBatch", testDeviceBatch},
		{"DeviceUpdateIMEI", testDeviceUpdateIMEI},
		{"DeviceUpdateErrors", testDeviceUpdateErrors},
		{"DeviceList", testDeviceList},
		{"DeviceConcurrentUpdates", testDeviceConcurrentUpdates},
		{"DeviceCopies", testDeviceCopies},
		{"DeviceNames", testDeviceNames},
		{"UserCRUD", testUserCRUD},
		{"UsernameUnique", testUsernameUnique},
		{"UsernameConfusable", testUsernameConfusable},
		{"UserRename", testUserRename},
		{"UserKeys", testUserKeys},
		{"UserList", testUserList},
		{"Usernames", testUsernames},
		{"APIKeys", testAPIKeys},
		{"CanceledContext", testCanceledContext},
		{"SessionCRUD", testSessionCRUD},
		{"SessionReplacesPair", testSessionReplacesPair},
		{"SessionCheckAborts", testSessionCheckAborts},
		{"SessionConcurrentRotation", testSessionConcurrentRotation},
		{"SessionUpdateUnchanged", testSessionUpdateUnchanged},
		{"RevocationWithWrites", testRevocationWithWrites},
		{"SessionList", testSessionList},
		{"Audit", testAudit},
		{"AuditInWriteTransaction", testAuditInWriteTransaction},
		{"SigningKeys", testSigningKeys},
		{"EnrollmentCodes", testEnrollmentCodes},
		{"Purges", testPurges},
		{"SessionBundle", testSessionBundle},
		{"OAuthClientCRUD", testOAuthClientCRUD},
		{"OAuthClientCopies", testOAuthClientCopies},
		{"AuthCodes", testAuthCodes},
		{"AuthCodeConcurrentRedemption", testAuthCodeConcurrentRedemption},
		{"DeviceCodes", testDeviceCodes},
		{"DeviceCodeConcurrentApproval", testDeviceCodeConcurrentApproval},
		{"DeviceCodeUserCodeRace", testDeviceCodeUserCodeRace},
		{"OAuthGrantsPurge", testOAuthGrantsPurge},
		{"ScopeFilters", testScopeFilters},
		{"ScopePaging", testScopePaging},
		{"EventGroups", testEventGroups},
		{"ScopeMove", testScopeMove},
		{"ScopeConcurrent", testScopeConcurrent},
		{"UserFactors", testUserFactors},
		{"RecoveryCodeOnce", testRecoveryCodeOnce},
		{"SessionAMR", testSessionAMR},
		{"Groups", testGroups},
		{"GroupConcurrentUpdates", testGroupConcurrentUpdates},
		{"Handover", testHandover},
		{"HandoverRace", testHandoverRace},
		{"LatestSessions", testLatestSessions},
		{"DeviceGroups", testDeviceGroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
	t.Run("Copy", func(t *testing.T) { testCopy(t, newStore) })
}

// now is a fixed, sub-second instant: backends must keep times to at least
// the microsecond.
var now = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func newDevice(imei string) storage.Device {
	yes := true
	return storage.Device{
		ID:           storage.NewID(storage.PrefixDevice),
		IMEI:         imei,
		HasIccCard:   &yes,
		IccIDs:       []string{"89445001021983048261"},
		OSAPI:        34,
		OSName:       "14",
		Manufacturer: "samsung",
		Model:        "SM-G991B",
		AppVersion:   "3.2.1",
		Status:       storage.DeviceEnrolled,
		Label:        "van 7",
		Group:        "north",
		Notes:        "charger in the glovebox; screen cracked",
		EnrolledAt:   now,
		EnrolledBy:   "apikey:test",
		UpdatedAt:    now,
	}
}

func newUser(name string, role storage.Role) storage.User {
	return storage.User{
		ID:           storage.NewID(storage.PrefixUser),
		Username:     name,
		Role:         role,
		FirstName:    "Ada",
		LastName:     "Lovelace",
		Email:        name + "@example.com",
		Features:     []string{"scan"},
		Profile:      []byte(`{"dealers":[{"id":1}]}`),
		PasswordHash: "$argon2id$v=19$m=16,t=1,p=1$c2FsdA$aGFzaA",
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

func mustCreateDevice(t *testing.T, s storage.Store, d storage.Device) storage.Device {
	t.Helper()
	if err := s.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("CreateDevice(%s): %v", d.IMEI, err)
	}
	return d
}

func mustCreateUser(t *testing.T, s storage.Store, u storage.User) storage.User {
	t.Helper()
	got, err := s.CreateUser(context.Background(), u)
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", u.Username, err)
	}
	return got
}

// wantConflict fails unless err is a *ConflictError on field.
func wantConflict(t *testing.T, err error, field string) {
	t.Helper()
	var ce *storage.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("got error %v; want a *storage.ConflictError", err)
	}
	if ce.Field != field {
		t.Fatalf("conflict on field %q; want %q", ce.Field, field)
	}
}

func wantNotFound(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got error %v; want storage.ErrNotFound", err)
	}
}

// sameDevice compares devices, with times compared as instants.
func sameDevice(t *testing.T, got, want storage.Device) {
	t.Helper()
	g, w := got, want
	for _, p := range []struct{ a, b *time.Time }{
		{&g.EnrolledAt, &w.EnrolledAt}, {&g.UpdatedAt, &w.UpdatedAt},
		{&g.LastSeenAt, &w.LastSeenAt}, {&g.StatusChangedAt, &w.StatusChangedAt},
	} {
		if !p.a.Equal(*p.b) {
			t.Fatalf("time: got %v; want %v", *p.a, *p.b)
		}
		*p.a, *p.b = time.Time{}, time.Time{}
	}
	if fmt.Sprintf("%+v", deref(g)) != fmt.Sprintf("%+v", deref(w)) {
		t.Fatalf("device:\n got %+v\nwant %+v", deref(g), deref(w))
	}
}

// deref replaces the pointer in d by its value, so %+v compares contents.
func deref(d storage.Device) any {
	type flat struct {
		storage.Device
		HasIccCard any
	}
	f := flat{Device: d}
	f.Device.HasIccCard = nil
	if d.HasIccCard != nil {
		f.HasIccCard = *d.HasIccCard
	}
	return f
}

func testDeviceCRUD(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := mustCreateDevice(t, s, newDevice("490154203237518"))

	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatalf("GetDevice: %v", err)
	}
	sameDevice(t, got, d)

	got, err = s.GetDeviceByIMEI(ctx, d.IMEI)
	if err != nil {
		t.Fatalf("GetDeviceByIMEI: %v", err)
	}
	sameDevice(t, got, d)

	_, err = s.GetDevice(ctx, "dev_missing")
	wantNotFound(t, err)
	_, err = s.GetDeviceByIMEI(ctx, "356938035643809")
	wantNotFound(t, err)
	_, err = s.UpdateDevice(ctx, "dev_missing", func(d storage.Device) (storage.Device, error) { return d, nil })
	wantNotFound(t, err)

	later := now.Add(time.Hour)
	updated, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Status = storage.DeviceSuspended
		d.StatusReason = "lost"
		d.StatusChangedAt = later
		d.AssignedUsers = []string{"usr_a", "usr_b"}
		d.UpdatedAt = later
		return d, nil
	})
	if err != nil {
		t.Fatalf("UpdateDevice: %v", err)
	}
	if updated.Status != storage.DeviceSuspended || updated.StatusReason != "lost" {
		t.Fatalf("UpdateDevice returned %+v; want the suspended device", updated)
	}
	got, err = s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatalf("GetDevice after update: %v", err)
	}
	sameDevice(t, got, updated)

	// A second create with the same ID is a conflict on the ID.
	dup := newDevice("356938035643809")
	dup.ID = d.ID
	wantConflict(t, s.CreateDevice(ctx, dup), "id")
	_, err = s.GetDeviceByIMEI(ctx, dup.IMEI)
	wantNotFound(t, err)
}

func testDeviceIMEIUnique(t *testing.T, s storage.Store) {
	ctx := context.Background()
	first := mustCreateDevice(t, s, newDevice("490154203237518"))
	second := newDevice("490154203237518")
	wantConflict(t, s.CreateDevice(ctx, second), "imei")

	// Nothing of the rejected device was written.
	_, err := s.GetDevice(ctx, second.ID)
	wantNotFound(t, err)
	got, err := s.GetDeviceByIMEI(ctx, first.IMEI)
	if err != nil || got.ID != first.ID {
		t.Fatalf("GetDeviceByIMEI = %v, %v; want the first device %s", got.ID, err, first.ID)
	}
}

func testDeviceBatch(t *testing.T, s storage.Store) {
	ctx := context.Background()
	existing := mustCreateDevice(t, s, newDevice("490154203237518"))
	ev := storage.Event{ID: storage.NewID(storage.PrefixEvent), Time: now, Action: "device.import", Outcome: "success"}

	// One taken IMEI (in the store, or twice in the batch) and nothing is written.
	for _, batch := range [][]storage.Device{
		{newDevice("356938035643809"), newDevice(existing.IMEI)},
		{newDevice("352099001761481"), newDevice("352099001761481")},
	} {
		wantConflict(t, s.CreateDevices(ctx, batch, storage.WithEvents(ev)), "imei")
		for _, d := range batch {
			if _, err := s.GetDevice(ctx, d.ID); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a refused batch left device %s", d.IMEI)
			}
		}
	}
	page, err := s.ListEvents(ctx, storage.EventFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("a refused batch wrote %d events", len(page.Items))
	}

	batch := []storage.Device{newDevice("356938035643809"), newDevice("352099001761481"), newDevice("012345678901237")}
	if err := s.CreateDevices(ctx, batch, storage.WithEvents(ev)); err != nil {
		t.Fatalf("CreateDevices: %v", err)
	}
	for _, d := range batch {
		if got, err := s.GetDeviceByIMEI(ctx, d.IMEI); err != nil || got.ID != d.ID {
			t.Fatalf("batch device %s: %v, %v", d.IMEI, got.ID, err)
		}
	}
	if err := s.CreateDevices(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

func testDeviceUpdateIMEI(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := mustCreateDevice(t, s, newDevice("490154203237518"))
	b := mustCreateDevice(t, s, newDevice("356938035643809"))

	// Moving a onto b's IMEI is refused and changes nothing.
	_, err := s.UpdateDevice(ctx, a.ID, func(d storage.Device) (storage.Device, error) {
		d.IMEI = b.IMEI
		d.Label = "changed"
		return d, nil
	})
	wantConflict(t, err, "imei")
	got, err := s.GetDevice(ctx, a.ID)
	if err != nil || got.IMEI != a.IMEI || got.Label != a.Label {
		t.Fatalf("after refused update: %+v, %v; want it unchanged", got, err)
	}

	// Moving a to a free IMEI frees the old one.
	const free = "352099001761481"
	if _, err := s.UpdateDevice(ctx, a.ID, func(d storage.Device) (storage.Device, error) {
		d.IMEI = free
		return d, nil
	}); err != nil {
		t.Fatalf("UpdateDevice to a free IMEI: %v", err)
	}
	if got, err := s.GetDeviceByIMEI(ctx, free); err != nil || got.ID != a.ID {
		t.Fatalf("GetDeviceByIMEI(new) = %v, %v; want %s", got.ID, err, a.ID)
	}
	_, err = s.GetDeviceByIMEI(ctx, a.IMEI)
	wantNotFound(t, err)
	mustCreateDevice(t, s, newDevice(a.IMEI))
}

func testDeviceUpdateErrors(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := mustCreateDevice(t, s, newDevice("490154203237518"))

	boom := errors.New("boom")
	_, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.Label = "half-written"
		return d, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateDevice with failing fn: %v; want the fn's error", err)
	}
	_, err = s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
		d.ID = "dev_other"
		d.Label = "half-written"
		return d, nil
	})
	if err == nil {
		t.Fatal("UpdateDevice changing the ID succeeded; want an error")
	}
	got, err := s.GetDevice(ctx, d.ID)
	if err != nil || got.Label != d.Label {
		t.Fatalf("after failed updates: label %q, %v; want %q", got.Label, err, d.Label)
	}
	_, err = s.GetDevice(ctx, "dev_other")
	wantNotFound(t, err)
}

func testDeviceList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	imeis := []string{
		"490154203237518", "356938035643809", "352099001761481",
		"867584030000009", "359881234567899", "012345678901237",
	}
	var all []storage.Device
	for i, imei := range imeis {
		d := newDevice(imei)
		d.Label = fmt.Sprintf("Van %d", i)
		if i%2 == 1 {
			d.Group = "south"
		}
		if i == 4 {
			d.Status = storage.DeviceRetired
		}
		if i == 5 {
			d.Model = "Pixel 8"
		}
		if i%3 == 0 {
			d.AssignedUsers = []string{"usr_alice", "usr_bob"}
		}
		if i == 4 {
			d.AssignedUsers = []string{"usr_bob"}
		}
		all = append(all, mustCreateDevice(t, s, d))
	}
	slices.SortFunc(all, func(a, b storage.Device) int {
		return cmpString(a.ID, b.ID)
	})

	ids := func(ds []storage.Device) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = d.ID
		}
		return out
	}

	// Pages of two walk every device once, in ID order.
	var walked []string
	f := storage.DeviceFilter{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > len(all) {
			t.Fatal("paging does not end")
		}
		page, err := s.ListDevices(ctx, f)
		if err != nil {
			t.Fatalf("ListDevices: %v", err)
		}
		if len(page.Items) > 2 {
			t.Fatalf("page of %d; want at most 2", len(page.Items))
		}
		walked = append(walked, ids(page.Items)...)
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	if !slices.Equal(walked, ids(all)) {
		t.Fatalf("paged walk %v; want %v", walked, ids(all))
	}

	// A page that exactly fills the limit has no next cursor.
	page, err := s.ListDevices(ctx, storage.DeviceFilter{Limit: len(all)})
	if err != nil || len(page.Items) != len(all) || page.Next != "" {
		t.Fatalf("full page: %d items, next %q, %v; want %d and no next", len(page.Items), page.Next, err, len(all))
	}

	cases := []struct {
		name string
		f    storage.DeviceFilter
		want func(storage.Device) bool
	}{
		{"status", storage.DeviceFilter{Status: storage.DeviceRetired}, func(d storage.Device) bool { return d.Status == storage.DeviceRetired }},
		{"group", storage.DeviceFilter{Group: "south"}, func(d storage.Device) bool { return d.Group == "south" }},
		{"text label any case", storage.DeviceFilter{Text: "vAN 3"}, func(d storage.Device) bool { return d.Label == "Van 3" }},
		{"text imei", storage.DeviceFilter{Text: "0123456"}, func(d storage.Device) bool { return d.IMEI == "012345678901237" }},
		{"text model", storage.DeviceFilter{Text: "pixel"}, func(d storage.Device) bool { return d.Model == "Pixel 8" }},
		{"group and status", storage.DeviceFilter{Group: "south", Status: storage.DeviceEnrolled}, func(d storage.Device) bool {
			return d.Group == "south" && d.Status == storage.DeviceEnrolled
		}},
		{"no match", storage.DeviceFilter{Text: "nothing like this"}, func(storage.Device) bool { return false }},
		{"assigned user", storage.DeviceFilter{AssignedUser: "usr_alice"}, func(d storage.Device) bool { return slices.Contains(d.AssignedUsers, "usr_alice") }},
		{"assigned user and status", storage.DeviceFilter{AssignedUser: "usr_bob", Status: storage.DeviceEnrolled}, func(d storage.Device) bool {
			return slices.Contains(d.AssignedUsers, "usr_bob") && d.Status == storage.DeviceEnrolled
		}},
		{"assigned user, a prefix of one", storage.DeviceFilter{AssignedUser: "usr_al"}, func(storage.Device) bool { return false }},
		{"assigned to nobody known", storage.DeviceFilter{AssignedUser: "usr_carol"}, func(storage.Device) bool { return false }},
	}
	for _, c := range cases {
		page, err := s.ListDevices(ctx, c.f)
		if err != nil {
			t.Fatalf("%s: ListDevices: %v", c.name, err)
		}
		var want []storage.Device
		for _, d := range all {
			if c.want(d) {
				want = append(want, d)
			}
		}
		if !slices.Equal(ids(page.Items), ids(want)) || page.Next != "" {
			t.Fatalf("%s: got %v (next %q); want %v", c.name, ids(page.Items), page.Next, ids(want))
		}
	}

	// A filtered walk in pages of one.
	walked = nil
	f = storage.DeviceFilter{Group: "south", Limit: 1}
	for {
		page, err := s.ListDevices(ctx, f)
		if err != nil {
			t.Fatalf("ListDevices: %v", err)
		}
		walked = append(walked, ids(page.Items)...)
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	if len(walked) != 3 {
		t.Fatalf("filtered walk found %d devices; want 3", len(walked))
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testDeviceConcurrentUpdates(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := mustCreateDevice(t, s, newDevice("490154203237518"))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateDevice(ctx, d.ID, func(d storage.Device) (storage.Device, error) {
				d.AssignedUsers = append(d.AssignedUsers, fmt.Sprintf("usr_%02d", i))
				return d, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent UpdateDevice: %v", err)
		}
	}
	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.AssignedUsers) != n {
		t.Fatalf("after %d concurrent appends: %d users; want %d (an update was lost)", n, len(got.AssignedUsers), n)
	}
}

func testDeviceCopies(t *testing.T, s storage.Store) {
	ctx := context.Background()
	d := newDevice("490154203237518")
	mustCreateDevice(t, s, d)
	d.IccIDs[0] = "changed by caller"

	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.IccIDs[0] != "89445001021983048261" {
		t.Fatalf("store shares the caller's slice: %v", got.IccIDs)
	}
	got.IccIDs[0] = "changed again"
	*got.HasIccCard = false
	again, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.IccIDs[0] != "89445001021983048261" || !*again.HasIccCard {
		t.Fatalf("store shares its returned values: %+v", again)
	}
}

func testUserCRUD(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, newUser("Alice", storage.RoleWorker))
	if u.Key == 0 {
		t.Fatal("CreateUser left Key at 0; want a new integer key")
	}

	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.Username != "Alice" || got.Key != u.Key || string(got.Profile) != string(u.Profile) ||
		!slices.Equal(got.Features, u.Features) || got.PasswordHash != u.PasswordHash || !got.CreatedAt.Equal(now) {
		t.Fatalf("GetUser = %+v; want %+v", got, u)
	}
	for _, name := range []string{"alice", "ALICE", "Alice"} {
		got, err := s.GetUserByUsername(ctx, name)
		if err != nil || got.ID != u.ID {
			t.Fatalf("GetUserByUsername(%q) = %v, %v; want %s", name, got.ID, err, u.ID)
		}
	}
	_, err = s.GetUser(ctx, "usr_missing")
	wantNotFound(t, err)
	_, err = s.GetUserByUsername(ctx, "bob")
	wantNotFound(t, err)
	_, err = s.UpdateUser(ctx, "usr_missing", func(u storage.User) (storage.User, error) { return u, nil })
	wantNotFound(t, err)

	updated, err := s.UpdateUser(ctx, u.ID, func(u storage.User) (storage.User, error) {
		u.Disabled = true
		u.Role = storage.RoleManager
		return u, nil
	})
	if err != nil || !updated.Disabled || updated.Role != storage.RoleManager {
		t.Fatalf("UpdateUser = %+v, %v; want disabled manager", updated, err)
	}
	got, err = s.GetUser(ctx, u.ID)
	if err != nil || !got.Disabled || got.Role != storage.RoleManager {
		t.Fatalf("GetUser after update = %+v, %v", got, err)
	}

	_, err = s.UpdateUser(ctx, u.ID, func(u storage.User) (storage.User, error) {
		u.Key++
		return u, nil
	})
	if err == nil {
		t.Fatal("UpdateUser changing Key succeeded; want an error")
	}
}

func testUsernameUnique(t *testing.T, s storage.Store) {
	ctx := context.Background()
	mustCreateUser(t, s, newUser("alice", storage.RoleWorker))
	for _, name := range []string{"alice", "ALICE", "Alice", "ａｌｉｃｅ"} {
		dup := newUser(name, storage.RoleWorker)
		_, err := s.CreateUser(ctx, dup)
		wantConflict(t, err, "username")
		_, err = s.GetUser(ctx, dup.ID)
		wantNotFound(t, err)
	}
	// A refused create does not use up an integer key.
	bob := mustCreateUser(t, s, newUser("bob", storage.RoleWorker))
	if bob.Key != 2 {
		t.Fatalf("second user's key = %d; want 2", bob.Key)
	}
}

// testUsernameConfusable: a new username that looks like a taken one (by
// UTS #39 skeleton) is refused, on create and rename, also when both are
// created at once.
func testUsernameConfusable(t *testing.T, s storage.Store) {
	ctx := context.Background()
	walter := mustCreateUser(t, s, newUser("walter", storage.RoleWorker))
	mustCreateUser(t, s, newUser("Ian", storage.RoleWorker))
	mustCreateUser(t, s, newUser("m.kay", storage.RoleWorker))
	for _, name := range []string{"wаlter" /* Cyrillic а */, "WАLTER" /* Cyrillic А */, "lan", "rn.kay", "wa1ter", "walther" /* not confusable */} {
		u := newUser(name, storage.RoleWorker)
		_, err := s.CreateUser(ctx, u)
		if name == "walther" {
			if err != nil {
				t.Fatalf("%q, which looks like no one: %v", name, err)
			}
			continue
		}
		wantConflict(t, err, storage.ConfusableConflict(name).Field)
		if _, err := s.GetUser(ctx, u.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("refused look-alike %q was stored: %v", name, err)
		}
	}
	// A rename may keep its own skeleton, but not take another's.
	if _, err := s.UpdateUser(ctx, walter.ID, func(u storage.User) (storage.User, error) {
		u.Username = "rn.kay"
		return u, nil
	}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("rename to a look-alike of m.kay: %v; want a conflict", err)
	}
	if _, err := s.UpdateUser(ctx, walter.ID, func(u storage.User) (storage.User, error) {
		u.Username = "Walter"
		return u, nil
	}); err != nil {
		t.Fatalf("rename to its own look-alike: %v", err)
	}
	// Two look-alikes at once: one account.
	var wins sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for _, name := range []string{"olga", "оlga" /* Cyrillic о */, "olgа" /* Cyrillic а */, "0lga"} {
		wins.Go(func() {
			if _, err := s.CreateUser(ctx, newUser(name, storage.RoleWorker)); err == nil {
				mu.Lock()
				created++
				mu.Unlock()
			} else if !errors.Is(err, storage.ErrConflict) {
				t.Errorf("%q: %v", name, err)
			}
		})
	}
	wins.Wait()
	if created != 1 {
		t.Fatalf("%d of four look-alikes created at once; want 1", created)
	}
}

func testUserRename(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := mustCreateUser(t, s, newUser("alice", storage.RoleWorker))
	b := mustCreateUser(t, s, newUser("bob", storage.RoleWorker))
	_, err := s.UpdateUser(ctx, a.ID, func(u storage.User) (storage.User, error) {
		u.Username = "BOB"
		return u, nil
	})
	wantConflict(t, err, "username")

	// A change of case alone keeps the index entry.
	if _, err := s.UpdateUser(ctx, a.ID, func(u storage.User) (storage.User, error) {
		u.Username = "Alice"
		return u, nil
	}); err != nil {
		t.Fatalf("rename to a case variant: %v", err)
	}
	if got, err := s.GetUserByUsername(ctx, "alice"); err != nil || got.Username != "Alice" {
		t.Fatalf("after case rename: %+v, %v", got, err)
	}
	if _, err := s.UpdateUser(ctx, a.ID, func(u storage.User) (storage.User, error) {
		u.Username = "carol"
		return u, nil
	}); err != nil {
		t.Fatalf("rename: %v", err)
	}
	_, err = s.GetUserByUsername(ctx, "alice")
	wantNotFound(t, err)
	if got, err := s.GetUserByUsername(ctx, "carol"); err != nil || got.ID != a.ID {
		t.Fatalf("GetUserByUsername(carol) = %v, %v", got.ID, err)
	}
	if got, err := s.GetUserByUsername(ctx, "bob"); err != nil || got.ID != b.ID {
		t.Fatalf("GetUserByUsername(bob) = %v, %v", got.ID, err)
	}
}

func testUserKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const n = 10
	var wg sync.WaitGroup
	keys := make(chan uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := s.CreateUser(ctx, newUser(fmt.Sprintf("user%d", i), storage.RoleWorker))
			if err != nil {
				t.Errorf("CreateUser: %v", err)
				return
			}
			keys <- u.Key
		}()
	}
	wg.Wait()
	close(keys)
	seen := map[uint64]bool{}
	for k := range keys {
		if k == 0 || seen[k] {
			t.Fatalf("user key %d is zero or given twice", k)
		}
		seen[k] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct keys; want %d", len(seen), n)
	}
}

func testUserList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	mustCreateUser(t, s, newUser("worker1", storage.RoleWorker))
	mustCreateUser(t, s, newUser("worker2", storage.RoleWorker))
	boss := newUser("boss", storage.RoleManager)
	boss.LastName = "Hopper"
	mustCreateUser(t, s, boss)
	off := newUser("gone", storage.RoleWorker)
	off.Disabled = true
	mustCreateUser(t, s, off)

	yes, no := true, false
	cases := []struct {
		f    storage.UserFilter
		want int
	}{
		{storage.UserFilter{}, 4},
		{storage.UserFilter{Role: storage.RoleWorker}, 3},
		{storage.UserFilter{Role: storage.RoleManager}, 1},
		{storage.UserFilter{Disabled: &yes}, 1},
		{storage.UserFilter{Disabled: &no, Role: storage.RoleWorker}, 2},
		{storage.UserFilter{Text: "hopper"}, 1},
		{storage.UserFilter{Text: "WORKER"}, 2},
	}
	for _, c := range cases {
		page, err := s.ListUsers(ctx, c.f)
		if err != nil {
			t.Fatalf("ListUsers(%+v): %v", c.f, err)
		}
		if len(page.Items) != c.want {
			t.Fatalf("ListUsers(%+v) = %d users; want %d", c.f, len(page.Items), c.want)
		}
	}
	page, err := s.ListUsers(ctx, storage.UserFilter{Limit: 3})
	if err != nil || len(page.Items) != 3 || page.Next == "" {
		t.Fatalf("first page: %d users, next %q, %v", len(page.Items), page.Next, err)
	}
	rest, err := s.ListUsers(ctx, storage.UserFilter{Limit: 3, After: page.Next})
	if err != nil || len(rest.Items) != 1 || rest.Next != "" {
		t.Fatalf("second page: %d users, next %q, %v", len(rest.Items), rest.Next, err)
	}
}

func testAPIKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	k := storage.APIKey{
		ID: storage.NewID(storage.PrefixAPIKey), Name: "ci", Role: storage.RoleManager,
		Hash: []byte("0123456789abcdef0123456789abcdef"), Hint: "tak_abcd", CreatedAt: now,
		Scopes: []string{"north", "depot-7"},
	}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	got, err := s.GetAPIKeyByHash(ctx, k.Hash)
	if err != nil || got.ID != k.ID || got.Role != k.Role || string(got.Hash) != string(k.Hash) || !slices.Equal(got.Scopes, k.Scopes) {
		t.Fatalf("GetAPIKeyByHash = %+v, %v; want %+v", got, err, k)
	}
	_, err = s.GetAPIKeyByHash(ctx, []byte("no such hash"))
	wantNotFound(t, err)

	dup := k
	dup.ID = storage.NewID(storage.PrefixAPIKey)
	wantConflict(t, s.CreateAPIKey(ctx, dup), "hash")

	other := storage.APIKey{ID: storage.NewID(storage.PrefixAPIKey), Role: storage.RoleAdmin, Hash: []byte("another hash"), CreatedAt: now}
	if err := s.CreateAPIKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListAPIKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("ListAPIKeys = %d keys, %v; want 2", len(keys), err)
	}

	if err := s.DeleteAPIKey(ctx, k.ID); err != nil {
		t.Fatalf("DeleteAPIKey: %v", err)
	}
	_, err = s.GetAPIKeyByHash(ctx, k.Hash)
	wantNotFound(t, err)
	wantNotFound(t, s.DeleteAPIKey(ctx, k.ID))
	keys, err = s.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != other.ID {
		t.Fatalf("ListAPIKeys after delete = %+v, %v", keys, err)
	}
}

func testCanceledContext(t *testing.T, s storage.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := newDevice("490154203237518")
	if err := s.CreateDevice(ctx, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateDevice with a canceled context: %v; want context.Canceled", err)
	}
	_, err := s.GetDevice(context.Background(), d.ID)
	wantNotFound(t, err)
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping with a canceled context succeeded")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testDeviceNames(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := newDevice("490154203237518")
	b := newDevice("356938035643809")
	b.Label = ""
	mustCreateDevice(t, s, a)
	mustCreateDevice(t, s, b)
	got, err := s.DeviceNames(ctx, []string{b.ID, "dev_01NOSUCHDEVICE00000000000", a.ID, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]storage.DeviceName{a.ID: {IMEI: a.IMEI, Label: "van 7"}, b.ID: {IMEI: b.IMEI}}
	if !maps.Equal(got, want) {
		t.Fatalf("DeviceNames = %v; want %v", got, want)
	}
	if got, err := s.DeviceNames(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("DeviceNames(nil) = %v, %v", got, err)
	}
}

func testUsernames(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := mustCreateUser(t, s, newUser("Alice", storage.RoleWorker))
	b := mustCreateUser(t, s, newUser("bob", storage.RoleManager))
	got, err := s.Usernames(ctx, []string{a.ID, "usr_01NOSUCHUSER0000000000000", b.ID, a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a.ID] != "Alice" || got[b.ID] != "bob" {
		t.Fatalf("Usernames = %v; want Alice and bob only", got)
	}
	if got, err := s.Usernames(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Usernames(nil) = %v, %v", got, err)
	}
}
